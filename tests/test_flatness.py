import pytest
import torch
from torch import nn

from torchawp.attacks import PGD
from torchawp.weightspace.flatness import average_case_flatness, worst_case_flatness


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def rescaled(model, c):
    """Layer 1 times c, layer 2 weight divided by c: the same ReLU network function."""
    twin = mlp()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        twin[1].weight.mul_(c)
        twin[1].bias.mul_(c)
        twin[3].weight.div_(c)
    return twin


def test_relative_flatness_is_scale_invariant_and_absolute_is_not(digits_test):
    x, y = digits_test
    x, y = x[:100], y[:100]
    model = mlp()
    twin = rescaled(model, 3.0)
    assert torch.allclose(model(x), twin(x), atol=1e-5)
    attack = PGD("linf", 0.05, 0.02, steps=3)
    a = average_case_flatness(model, x, y, attack, xi=0.3, samples=3)
    b = average_case_flatness(twin, x, y, attack, xi=0.3, samples=3)
    assert b["flatness"] == pytest.approx(a["flatness"], rel=1e-3, abs=1e-5)
    a_abs = average_case_flatness(model, x, y, attack, xi=0.3, samples=3, relative=False)
    b_abs = average_case_flatness(twin, x, y, attack, xi=0.3, samples=3, relative=False)
    assert abs(a_abs["flatness"] - b_abs["flatness"]) > 0.05 * abs(a_abs["flatness"])


def test_worst_case_is_at_least_average_case_at_equal_radius(digits_model, digits_test):
    x, y = digits_test
    x, y = x[:100], y[:100]
    attack = PGD("linf", 0.05, 0.02, steps=2)
    avg = average_case_flatness(digits_model, x, y, attack, xi=0.05, samples=3, seed=1)
    worst = worst_case_flatness(digits_model, x, y, attack, xi=0.05, passes=2, restarts=3,
                                seed=1)
    # the restarts start at the same seeded samples and only keep what is worse
    assert worst["flatness"] >= avg["flatness"] - 1e-6
    assert worst["flatness"] > 0


def test_measurements_leave_weights_and_batchnorm_buffers_bit_identical(digits_model,
                                                                        digits_test):
    x, y = digits_test
    params = [p.detach().clone() for p in digits_model.parameters()]
    buffers = [b.clone() for b in digits_model.buffers()]
    average_case_flatness(digits_model, x[:50], y[:50], PGD(steps=1), samples=2)
    worst_case_flatness(digits_model, x[:50], y[:50], PGD(steps=1), passes=1, restarts=1)
    assert all(torch.equal(a, b) for a, b in zip(params, digits_model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(buffers, digits_model.buffers()))


def test_larger_radius_is_less_flat(digits_model, digits_test):
    x, y = digits_test
    small = average_case_flatness(digits_model, x[:100], y[:100], None, xi=0.05, samples=3)
    large = average_case_flatness(digits_model, x[:100], y[:100], None, xi=0.5, samples=3)
    assert large["flatness"] > small["flatness"]


def test_flatness_of_every_kept_epoch(tmp_path, capsys):
    import json

    import torchawp
    from torchawp.cli import main

    from .helpers import tiny_config

    run = torchawp.train(tiny_config(tmp_path / "run", epochs=3, keep_checkpoints=2))
    kept = sorted(p.name for p in (run.run_dir / "epochs").iterdir())
    assert kept == ["epoch_0002.safetensors", "epoch_0003.safetensors"]  # every 2nd and last
    last, _ = torchawp.io.checkpoint.read_weights(run.run_dir / "last.safetensors")
    kept3, meta = torchawp.io.checkpoint.read_weights(run.run_dir / "epochs" / kept[1])
    assert meta["epoch"] == 3 and all(torch.equal(last[k], kept3[k]) for k in last)
    code = main(["flatness", str(run.run_dir), "--kept-epochs", "all", "--kind", "average",
                 "--n-examples", "30", "--samples", "1", "--steps", "1",
                 "--out-dir", str(tmp_path / "fl")])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "fl" / "flatness.json").read_text())
    assert [(r["checkpoint"], r["epoch"]) for r in rows] == [("run:e2", 2), ("run:e3", 3)]
    assert rows[0]["average"] != rows[1]["average"]  # two different checkpoints measured
    code = main(["flatness", str(run.run_dir), "--kept-epochs", "1", "--out-dir",
                 str(tmp_path / "x")])
    assert code == 2 and "kept the weights of epochs [2, 3]" in capsys.readouterr().err


def test_long_measurements_report_progress_to_the_end(digits_model, digits_test, capsys):
    from torchawp.cli.common import Ticker
    from torchawp.weightspace.landscape import landscape_1d

    x, y = digits_test[0][:40], digits_test[1][:40]
    calls = {"average": [], "worst": [], "landscape": []}
    average_case_flatness(digits_model, x, y, None, samples=3,
                          progress=lambda d, t: calls["average"].append((d, t)))
    worst_case_flatness(digits_model, x, y, None, passes=2, restarts=2,
                        progress=lambda d, t: calls["worst"].append((d, t)))
    landscape_1d(digits_model, x, y, None, directions=2, points=3,
                 progress=lambda d, t: calls["landscape"].append((d, t)))
    assert calls["average"] == [(1, 3), (2, 3), (3, 3)]
    assert calls["worst"] == [(1, 4), (2, 4), (3, 4), (4, 4)]  # after every pass
    assert calls["landscape"] == [(i, 6) for i in range(1, 7)]
    quiet = Ticker("flatness of run", "samples", every=3600)
    for done in range(1, 6):
        quiet(done, 5)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [lines[-1]] and "5/5 samples" in lines[-1]  # only the end, within the hour
