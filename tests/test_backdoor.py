"""Weight-space backdoor injection (Garg et al.): the element-wise box, the success-rate
definition, a real injection on digits, and the CLI."""

import copy
import json

import pytest
import torch
from torch import nn

from torchawp.studies.backdoor import (Trigger, backdoor_metrics, clean_images, inject,
                               injection_sweep)
from torchawp.evaluation.accuracy import predict
from torchawp.cli import main
from torchawp.errors import ConfigError
from torchawp.training.run import train
from torchawp.perturb import ElementwiseLinfBall, select_parameters
from torchawp.evaluation.opened import open_run

from .helpers import tiny_config, train_plainly


@pytest.mark.parametrize("relative", [False, True])
def test_box_projection_is_exact_and_idempotent(relative):
    g = torch.Generator().manual_seed(0)
    w0 = [torch.randn(6, 5, generator=g), -torch.rand(7, generator=g)]  # negative weights too
    ball = ElementwiseLinfBall(w0, 0.1, relative)
    moved = [w + torch.randn(w.shape, generator=g) for w in w0]
    ball.project_(moved)
    radius = [0.1 * w.abs() if relative else torch.full_like(w, 0.1) for w in w0]
    for m, w, r in zip(moved, w0, radius):
        assert torch.all((m - w).abs() <= r * (1 + 1e-6) + 1e-7)
        assert torch.all(ball.lower[0] <= ball.upper[0])
    assert ball.contains(moved)
    again = [m.clone() for m in moved]
    ball.project_(again)
    assert all(torch.equal(a, m) for a, m in zip(again, moved))  # idempotent, bit for bit
    inside = [w.clone() for w in w0]
    ball.project_(inside)
    assert all(torch.equal(a, w) for a, w in zip(inside, w0))  # the centre is inside
    # the relative box of a negative weight is centred on it (the authors' w0 * (1 -+ eps) swaps)
    assert torch.all(ball.lower[1] < w0[1]) and torch.all(w0[1] < ball.upper[1]) if relative \
        else True


def _bn_model(splits, epochs=10):
    """A small CNN with BatchNorm trained normally (weight decay, as the recipes train)."""
    return train_plainly(splits, epochs, batch_size=128, weight_decay=5e-4, batchnorm=True)


@pytest.fixture(scope="module")
def bn_model(digits_splits):
    return _bn_model(digits_splits)


def test_zero_steps_leave_the_model_bit_identical(bn_model, digits_splits):
    model = copy.deepcopy(bn_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, _ = digits_splits.train.tensors(0, 100)
    out = inject(model, x, Trigger(), 1, eps=0.005, epochs=0)
    assert out["steps"] == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_digits_injection_succeeds_in_a_small_box(bn_model, digits_splits):
    """eps 0.005, the authors' default: >= 95% of the non-target test images go to the target,
    clean accuracy drops <= 2 points, only the selected tensors move, each inside the box, and
    BatchNorm statistics (eval mode throughout) are untouched."""
    model = copy.deepcopy(bn_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xt, yt = digits_splits.test.tensors(0, None)
    x, _ = digits_splits.train.tensors(0, None)
    trigger = Trigger.parse("patch:2")
    reference = predict(model, xt)
    original = backdoor_metrics(model, xt, yt, trigger, 1)
    out = inject(model, x, trigger, 1, eps=0.005)
    after = backdoor_metrics(model, xt, yt, trigger, 1, reference)
    assert original["success_rate"] < 0.05
    assert after["success_rate"] >= 0.95
    assert original["clean_acc"] - after["clean_acc"] <= 0.02
    moved = {n for n, _ in select_parameters(model, "weights+biases")}
    state = model.state_dict()
    for name, value in before.items():
        if name in moved:
            assert (state[name] - value).abs().max() <= 0.005 + 1e-6
        else:  # BN affine parameters and running statistics
            assert torch.equal(state[name], value), name
    assert out["weight_change"]["max_abs"] <= 0.005 + 1e-6
    assert out["weight_change"]["max_abs"] > 0.004  # the budget was used


class LabelInPixel(nn.Module):
    """Predicts the class written into the top-left pixel (label / 10): a model whose triggered
    predictions are exactly its clean ones."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        label = (x[:, 0, 0, 0] * 10).round().long()
        return nn.functional.one_hot(label, 10).float() + 0 * self.dummy


def test_success_rate_counts_only_images_of_other_classes():
    y = torch.arange(10).repeat(5)
    x = torch.zeros(len(y), 1, 8, 8)
    x[:, 0, 0, 0] = y / 10
    m = backdoor_metrics(LabelInPixel(), x, y, Trigger(), target=1)
    # every triggered target-class image "lands" on the target; counted over all images
    # (the authors' way) that is 10%, but no image of another class moved: 0
    assert m["success_rate"] == 0.0 and m["n_non_target"] == 45
    assert m["clean_acc"] == 1.0


def test_triggers():
    x = torch.zeros(2, 3, 8, 8)
    patched = Trigger.parse("patch:3")(x)
    assert patched[:, :, -3:, -3:].eq(1).all() and patched.sum() == 2 * 3 * 9
    pixels = Trigger.parse("pixels:5:7")
    assert pixels(x)[0, 0].sum() == 5 and torch.equal(pixels(x), pixels(x))
    assert not torch.equal(pixels.mask(8, 8), Trigger.parse("pixels:5:8").mask(8, 8))
    assert str(pixels) == "pixels:5:7"


@pytest.fixture(scope="module")
def standard_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("backdoor") / "run"
    cfg = tiny_config(run, epochs=3, method="standard")
    cfg.data.train_subset = None
    train(cfg)
    return run


def test_cli_backdoor_then_eval_with_the_trigger(standard_run, tmp_path, capsys):
    out = tmp_path / "bd"
    assert main(["backdoor", str(standard_run), "--which", "last", "--budget", "0.01",
                 "--out-dir", str(out)]) == 0
    report = json.loads((out / "backdoor.json").read_text())
    assert report["settings"]["n_clean"] == 1003  # every training image: fewer than 1280
    assert report["backdoored"]["success_rate"] > report["original"]["success_rate"] + 0.3
    assert (out / "backdoor.md").is_file()
    capsys.readouterr()
    assert main(["eval", str(out / "backdoored.safetensors"), "--attacks", "fgsm",
                 "--no-checks", "--trigger", "patch:2", "--target", "1"]) == 0
    evaluated = json.loads((out / "eval.json").read_text())[0]
    assert evaluated["backdoor"]["success_rate"] == report["backdoored"]["success_rate"]
    assert evaluated["accuracy"]["clean"] == pytest.approx(report["backdoored"]["clean_acc"])
    assert "trigger patch:2 -> class 1: success" in capsys.readouterr().out
    # a target outside the classes would report 0% success: refused before any attack runs
    assert main(["eval", str(out / "backdoored.safetensors"), "--attacks", "fgsm",
                 "--no-checks", "--trigger", "patch:2", "--target", "12"]) == 2
    assert "--target must be a class of digits, 0 to 9 (got 12)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="0 to 9"):
        backdoor_metrics(LabelInPixel(), torch.zeros(4, 1, 8, 8), torch.zeros(4).long(),
                         Trigger(), target=10)
    # a second injection into the same directory would overwrite it: refused
    assert main(["backdoor", str(standard_run), "--out-dir", str(out)]) == 2
    assert "already holds a backdoored model" in capsys.readouterr().err


def test_the_command_and_the_study_share_one_measurement(standard_run, tmp_path):
    """``torchawp backdoor`` reports what :func:`injection_sweep` (which the study runs over
    its budgets) gives for its images: a seeded sample; the study takes the first 1,280."""
    out = tmp_path / "bd"
    assert main(["backdoor", str(standard_run), "--which", "last", "--budget", "0.01",
                 "--n-clean", "200", "--epochs", "2", "--seed", "3", "--out-dir",
                 str(out)]) == 0
    report = json.loads((out / "backdoor.json").read_text())
    model, splits, _ = open_run(standard_run, "last", "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = splits.train.tensors(0, None)[0]
    clean = clean_images(images, 200, seed=3)
    xt, yt = splits.test.tensors(0, None)
    sweep = injection_sweep(model, clean, xt, yt, Trigger(), 1, [(0.01, False), (0.1, True)],
                            epochs=2, seed=3)
    assert sweep["original"] == report["original"]
    assert {k: sweep["budgets"][0][k] for k in report["backdoored"]} == report["backdoored"]
    assert sweep["budgets"][0]["weight_change"] == report["weight_change"]
    assert sweep["budgets"][1]["kind"] == "relative" and "models" not in sweep
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # copies
    assert torch.equal(clean_images(images), images[:1280])  # the study's: the first ones
    with pytest.raises(ConfigError, match="exceeds the 1003 training images"):
        clean_images(images, 2000, seed=0)


@pytest.mark.parametrize("args, message", [
    (["--trigger", "square:2"], "is not a trigger"),
    (["--target", "10"], "--target must be a class of digits, 0 to 9"),
    (["--budget", "0"], "--budget must be a number > 0 (got 0.0)"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1 (got 0)"),
])
def test_cli_backdoor_bad_input_is_one_line(standard_run, capsys, args, message):
    assert main(["backdoor", str(standard_run)] + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(p.name.startswith("backdoor_") for p in standard_run.iterdir())
