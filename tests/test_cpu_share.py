"""Several CPU jobs on one machine: measuring what other processes use, and the one-line
warning when a run would oversubscribe the cores."""

import os
import subprocess
import sys
import threading
import time
import warnings

import pytest
import torch

from torchawp import runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_busy_process_elsewhere_is_measured():
    idle = runtime.cores_busy_elsewhere(0.3)
    if idle > (os.cpu_count() or 1) - 1.2:  # one more spinner would not show: nothing is idle
        pytest.skip(f"other processes already keep {idle:.1f} cores busy; the arithmetic is "
                    f"checked by test_the_share_is_other_processes_time_over_the_window")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = runtime.cores_busy_elsewhere(0.3)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy >= idle + 0.6  # one spinning core
    # a thread of this process spinning during the window is this run's own work: not counted
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)])
    spin.start()
    try:
        own = runtime.cores_busy_elsewhere(0.3)
    finally:
        stop.set()
        spin.join()
    assert own < idle + 0.4


def test_the_share_is_other_processes_time_over_the_window(monkeypatch):
    # /proc/stat read twice 0.5 s apart on 2 cores: 80 of 100 ticks busy (1.6 cores), 0.2 s of
    # it this process's own: 1.2 cores busy elsewhere, whatever the machine does meanwhile
    ticks = iter([(1000, 5000), (1080, 5100)])
    clock, cpu = iter([10.0, 10.5]), iter([3.0, 3.2])
    monkeypatch.setattr(runtime, "_cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(runtime.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(runtime.time, "process_time", lambda: next(cpu))
    monkeypatch.setattr(runtime.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    assert runtime.cores_busy_elsewhere(0.5) == pytest.approx(1.2)


@pytest.mark.parametrize("busy, threads, warned", [(1.8, 2, True), (1.0, 1, False),
                                                    (0.1, 2, False), (None, 2, False)])
def test_a_run_that_would_oversubscribe_the_cores_says_so(monkeypatch, busy, threads, warned):
    monkeypatch.setattr(runtime, "cores_busy_elsewhere", lambda: busy)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.warn_if_cpus_are_taken(torch.device("cpu"), threads)
        runtime.warn_if_cpus_are_taken(torch.device("cuda"), threads)  # never for a GPU run
    assert len(caught) == int(warned)
    if warned:
        assert "--threads" in str(caught[0].message) and "2 cores" in str(caught[0].message)


def test_a_refusal_is_one_line_however_busy_the_machine(monkeypatch, capsys, two_epochs,
                                                       tmp_path):
    # the machine reads as busy; the config, the resume rule and the data are checked before
    # the CPUs are measured, so no warning stands before a refusal
    from .helpers import copy_run
    from .test_cli import TINY, run_cli

    monkeypatch.setattr(runtime, "cores_busy_elsewhere", lambda: 1.8)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    run = copy_run(two_epochs.run_dir, tmp_path / "run")
    bad = tmp_path / "nan.npz"
    import numpy as np

    x = np.full((60, 8, 8), np.nan, dtype=np.float32)
    np.savez(bad, x_train=x, y_train=np.arange(60) % 2, x_test=x, y_test=np.arange(60) % 2)
    for args in (["--resume", str(run), "--eps", "0.1"],
                 ["--out-dir", str(run), *TINY],
                 ["--resume", str(tmp_path / "nothing")],
                 ["--out-dir", str(tmp_path / "new"), "--dataset", "npz", "--data-dir",
                  str(bad), "--data.val-size", "10", *TINY]):
        code, _, err = run_cli(capsys, "train", *args)
        assert code == 2 and err.count("\n") == 1 and "other processes" not in err, (args, err)
        assert "NaN" in err or "npz" not in args
    # a run that starts does measure the machine, and says so
    code, _, err = run_cli(capsys, "train", "--out-dir", str(tmp_path / "ok"), *TINY,
                           "--epochs", "1", "--threads", "2")
    assert code == 0 and "other processes keep 1.8 of this machine's 2 cores busy" in err
