"""The benchmark scripts run and print the ratios the README quotes (tiny sizes: timings here
mean nothing; the point is that the scripts do not rot)."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def number(pattern, text):
    match = re.search(pattern, text)
    assert match, text
    return float(match.group(1))


def test_awp_overhead_prints_ratio_and_floor():
    out = run("awp_overhead.py", "--rounds", "2", "--per-round", "1", "--steps", "2",
              "--batch-size", "16")
    assert number(r"ratio at-awp / at = ([\d.]+) \(median of 2 paired rounds", out) > 0
    assert number(r"floor for the ratio .* = ([\d.]+)", out) > 1  # a training pass costs time


def test_awp_overhead_with_proxy_times_the_whole_step_and_the_awp_part():
    out = run("awp_overhead.py", "--rounds", "2", "--per-round", "1", "--steps", "2",
              "--batch-size", "16", "--proxy")
    assert number(r"step [\d.]+ ms, ratio proxy / torchawp = ([\d.]+) \(median of 2", out) > 0
    assert number(r"AWP part alone .* torchawp ([\d.]+) ms, proxy", out) > 0
    assert number(r"AWP part alone .* ratio proxy / torchawp = ([\d.]+) \(median of 2", out) > 0


def test_memory_prints_extra_peak_of_both_awp_variants():
    out = run("memory.py", "--model", "small_cnn", "--batch-size", "4", "--steps", "1")
    assert re.search(r"torchawp AWP \+-?\d+ MiB, proxy-model AWP \+-?\d+ MiB", out), out


@pytest.mark.skipif(not (importlib.util.find_spec("art") and importlib.util.find_spec(
    "torchattacks")), reason="benchmark-only peers (ART, torchattacks) not installed")
def test_peers_prints_both_ratios():
    out = run("peers.py", "--rounds", "1")
    assert number(r"ART / torchawp = ([\d.]+)", out) > 0
    assert number(r"torchattacks / torchawp = ([\d.]+)", out) > 0


def test_gpu_check_dry_run_on_cpu_writes_its_json(tmp_path):
    import json

    import tempfile

    out = Path(tempfile.gettempdir()) / "gpu_check_tiny.json"  # a dry run's default
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device",
                           "cpu", "--tiny", "--skip-tests", "--no-compile"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert list(tmp_path.iterdir()) == []  # nothing left where it ran
    report = json.loads(out.read_text())
    assert number(r"at-awp/at = ([\d.]+)", text) > 0
    assert set(report["ratios"]) == {"at-awp", "trades-awp"}
    assert report["ratios"]["at-awp"]["step_seconds"]["at-awp (authors' proxy)"] > 0
    assert [k for k in report["epochs"]] == ["fp32", "fp32 + channels_last"]
    assert all(e["epoch_seconds"] > 0 and e["images"] == 256 for e in report["epochs"].values())
    every = report["proxy_every_model"]
    assert set(every) == {"small_cnn b64 at-awp", "small_cnn b64 trades-awp"}
    assert all(r["awp_part_seconds"]["torchawp"] > 0 and r["awp_part_seconds"]["proxy"] > 0
               and "median of 2 paired rounds" in r["proxy AWP part / torchawp AWP part"]
               for r in every.values())


def test_data_scale_dry_run_measures_and_deletes_its_store(tmp_path):
    import json

    out = tmp_path / "scale.json"
    text = run("data_scale.py", "--images", "3000", "--test-images", "1100", "--loader-batches",
               "2", "--steps", "2", "--prn18-steps", "0", "--npz-images", "2000", "--dir",
               str(tmp_path), "--json",
               str(out))
    report = json.loads(out.read_text())
    assert report["import"]["bytes_on_disk"] > 3000 * 3072
    assert all(v > 0 for v in report["loader_images_per_second"].values() if v is not None)
    assert report["training"][0]["peak_rss_anon_bytes"] > 0
    assert report["dm_npz_import"]["images"] == 2000
    assert report["dm_npz_import"]["peak_rss_anon_bytes"] > 0
    assert 0 <= report["training"][0]["wait_share"] < 1
    assert "the store was deleted" in text
    assert [p.name for p in tmp_path.iterdir()] == ["scale.json"]  # no store left behind
    # every label says what this run measured, not what the committed 4M-image run did
    assert "random rows of all 3,000 |" in text and "first 3,000 images |" in text
    assert "4M" not in text and "50,000" not in text
