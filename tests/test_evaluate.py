import pytest
import torch
from torch import nn

from torchawp.attacks import AutoAttack, autoattack_available
from torchawp.attacks import Threat
from torchawp.evaluation.checks import sanity_checks
from torchawp.evaluation.accuracy import correct_mask
from torchawp.evaluation.suite import run_suite


class Rounding(nn.Module):
    """Quantise inputs to 8 levels: piecewise constant, so input gradients are exactly zero."""

    def forward(self, x):
        return torch.round(x * 7) / 7


class Noisy(nn.Module):
    def forward(self, x):
        return x + 0.05 * torch.randn_like(x)


def statuses(checks):
    return {c["name"]: c["status"] for c in checks}


def test_checks_pass_on_a_normal_model(digits_model, digits_test):
    x, y = digits_test
    suite = run_suite(digits_model, x, y, ("pgd20",), Threat("linf", 0.1, 0.025))
    checks = statuses(sanity_checks(digits_model, x, y, Threat("linf", 0.1, 0.025),
                                    suite["masks"]["pgd20"], max_examples=200))
    for name in ("steps", "eps", "unbounded", "gradients", "deterministic"):
        assert checks[name] == "pass", name


def test_checks_flag_a_model_with_masked_gradients(digits_model, digits_test):
    x, y = digits_test
    masked = nn.Sequential(Rounding(), digits_model).eval()
    suite = run_suite(masked, x, y, ("pgd20",), Threat("linf", 0.1, 0.025))
    assert suite["accuracy"]["pgd20"] > 0.8  # the attack is fooled: robustness looks high
    checks = statuses(sanity_checks(masked, x, y, Threat("linf", 0.1, 0.025),
                                    suite["masks"]["pgd20"], max_examples=200))
    assert checks["gradients"] == "warn" and checks["unbounded"] == "warn"


def test_deterministic_check_flags_a_randomised_model(digits_model, digits_test):
    x, y = digits_test
    noisy = nn.Sequential(Noisy(), digits_model).eval()
    from torchawp.evaluation.checks import check_deterministic
    assert check_deterministic(noisy, x)["status"] == "warn"


def test_worst_case_is_never_above_any_single_attack(digits_model, digits_test):
    x, y = digits_test
    suite = run_suite(digits_model, x, y, ("fgsm", "pgd10", "cw10"),
                      Threat("linf", 0.1, 0.025), per_attack=True)
    acc = suite["accuracy"]
    assert suite["robust_acc"] <= min(acc.values())
    assert acc["pgd10"] <= acc["fgsm"] + 0.02 and acc["clean"] > acc["pgd10"]


@pytest.mark.parametrize("restarts", [1, 2])
def test_cascade_gives_the_full_suites_worst_case_example_by_example(digits_model, digits_splits,
                                                                     tmp_path, restarts):
    x, y = digits_splits.test.tensors(0, None)
    threat = Threat("linf", 0.04, 0.01)
    attacks = ("cw20", "pgd50", "fgsm", "pgd20")
    full = run_suite(digits_model, x, y, attacks, threat, restarts, batch_size=128,
                     per_attack=True)
    cascade = run_suite(digits_model, x, y, attacks, threat, restarts, batch_size=128,
                        state_dir=tmp_path)
    assert 0.1 < full["robust_acc"] < 0.9  # a worst case with something on both sides
    assert torch.equal(cascade["robust"], full["robust"])
    assert torch.equal(cascade["white_box_robust"], full["white_box_robust"])
    # PGD-20 (the gap's number) still on every image; the rest only on what survived, cheapest
    # first, and each broke what the full suite says only it (or a later attack) breaks
    assert cascade["accuracy"] == {"clean": full["accuracy"]["clean"],
                                   "pgd20": full["accuracy"]["pgd20"]}
    assert [c["attack"] for c in cascade["cascade"]] == ["fgsm", "cw20", "pgd50"]
    survivors = full["masks"]["clean"] & full["masks"]["pgd20"]
    assert cascade["cascade"][0]["attacked"] == int(survivors.sum()) < len(y)
    attacked = sum(c["attacked"] for c in cascade["cascade"])
    assert attacked < 0.9 * 3 * len(y)
    # resumed from its state: the same result, no attack re-run
    again = run_suite(digits_model, x, y, attacks, threat, restarts, batch_size=128,
                      state_dir=tmp_path)
    assert torch.equal(again["robust"], cascade["robust"])


def test_autoattack_gets_every_example_in_the_cascade_too(digits_model, digits_splits,
                                                         monkeypatch):
    """AutoAttack's number is its own: its random draws depend on the images it is given, so
    the cascade gives it all of them, after the white-box attacks; its column and the worst
    case equal --per-attack's, example by example."""
    import torchawp.evaluation.suite as suite

    given = []  # per call: how many examples the stand-in was asked to attack

    class StandIn:  # for AutoAttack (slow, an optional extra): PGD-5, recording its inputs
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, model, x, y, generator=None, only=None):
            given.append(len(x) if only is None else int(only.sum()))
            return self.inner(model, x, y, generator, only=only)

    real = suite.build_attack
    monkeypatch.setattr(suite, "build_attack", lambda name, *a: StandIn(real("pgd5", *a))
                        if name == "autoattack" else real(name, *a))
    x, y = digits_splits.test.tensors(0, None)
    threat, attacks = Threat("linf", 0.04, 0.01), ("autoattack", "fgsm", "pgd20", "cw10")
    full = run_suite(digits_model, x, y, attacks, threat, batch_size=128, per_attack=True)
    n_full = list(given)
    cascade = run_suite(digits_model, x, y, attacks, threat, batch_size=128)
    assert given[len(n_full):] == n_full and sum(n_full) == len(y)  # every example, both ways
    assert list(cascade["accuracy"]) == ["clean", "autoattack", "pgd20"]
    assert cascade["accuracy"]["autoattack"] == full["accuracy"]["autoattack"]
    assert torch.equal(cascade["robust"], full["robust"])
    assert torch.equal(cascade["white_box_robust"], full["white_box_robust"])
    assert [c["attack"] for c in cascade["cascade"]] == ["fgsm", "cw10"]


def test_the_api_refuses_to_evaluate_no_images_or_negative_counts(digits_model, digits_splits):
    from torchawp.errors import ConfigError
    from torchawp.evaluation.suite import evaluate_model

    threat = Threat("linf", 0.04, 0.01)
    with pytest.raises(ConfigError, match="no test images"):
        evaluate_model(digits_model, digits_splits, threat, "m", attacks=("fgsm",), n_examples=0,
                       checks=False)
    with pytest.raises(ValueError, match="must be >= 0"):  # not "all but the last 5"
        digits_splits.test.tensors(0, -5)


def test_interrupted_evaluation_resumes_from_its_state_file(digits_model, digits_test, tmp_path):
    x, y = digits_test
    state = tmp_path / "state.pt"

    class FailsOnSecondBatch:
        calls = 0

        def __call__(self, model, xb, yb, generator=None):
            FailsOnSecondBatch.calls += 1
            if FailsOnSecondBatch.calls == 2:
                raise KeyboardInterrupt
            return xb

    with pytest.raises(KeyboardInterrupt):
        correct_mask(digits_model, x, y, FailsOnSecondBatch(), batch_size=100, state_file=state)
    assert torch.load(state, weights_only=True)["done"] == 100
    mask = correct_mask(digits_model, x, y, FailsOnSecondBatch(), batch_size=100,
                        state_file=state)
    assert FailsOnSecondBatch.calls == 2 + 2  # batches 2 and 3 only, batch 1 not redone
    assert torch.equal(mask, correct_mask(digits_model, x, y, None))


@pytest.mark.skipif(not autoattack_available(),
                    reason="AutoAttack needs the optional extra: pip install 'torchawp[autoattack]'")
def test_autoattack_runs_on_a_tiny_model_and_stays_in_the_ball(digits_model, digits_test):
    x, y = digits_test
    x, y = x[:40], y[:40]
    aa = AutoAttack("linf", 0.1, version="custom", attacks=["apgd-ce", "apgd-t"])
    x_adv = aa(digits_model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    with torch.no_grad():
        acc_aa = (digits_model(x_adv).argmax(1) == y).float().mean().item()
        acc_clean = (digits_model(x).argmax(1) == y).float().mean().item()
    assert acc_aa < acc_clean - 0.2


@pytest.mark.parametrize("channels_last", [True, False])
def test_evaluation_keeps_the_run_memory_format(tmp_path, channels_last):
    import torchawp
    from torchawp.evaluation.opened import open_run

    from .helpers import tiny_config

    run = torchawp.train(tiny_config(tmp_path / "run", epochs=1, channels_last=channels_last))
    model, _, _ = open_run(run.run_dir, "last", "cpu")
    conv = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert conv.is_contiguous() != channels_last
