"""The pieces of Wang et al.'s generated-data recipe: label smoothing, the cosine schedule with
linear warm-up, SiLU WideResNets, extra_fraction (and its old name), and the shipped recipes."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from torchawp.config.resolve import validate
from torchawp.errors import ConfigError
from torchawp.methods import get_method
from torchawp.models import create_model
from torchawp.config.recipes import from_dict, load_recipe
from torchawp.training.schedules import build_scheduler


@pytest.mark.parametrize("method", ["at", "trades", "standard"])
def test_label_smoothing_smooths_the_cross_entropy_term(method):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, x_adv, y = torch.randn(8, 4), torch.randn(8, 4), torch.randint(0, 3, (8,))
    spec, _ = get_method(method)
    plain = spec.loss(model, x, x_adv, y, 1.0).loss
    smooth = spec.loss(model, x, x_adv, y, 1.0, label_smoothing=0.1).loss
    logits = model(x_adv if method == "at" else x)
    shift = F.cross_entropy(logits, y, label_smoothing=0.1) - F.cross_entropy(logits, y)
    assert torch.allclose(smooth - plain, shift, atol=1e-6) and shift.abs() > 1e-4


def test_label_smoothing_is_refused_for_mart():
    cfg = load_recipe("digits")
    cfg.method, cfg.optim.label_smoothing = "mart", 0.1
    with pytest.raises(ConfigError, match="mart's loss has none that takes it"):
        validate(cfg)


def test_cosine_warm_up_rises_linearly_then_decays_to_zero():
    cfg = load_recipe("digits")
    cfg.epochs, cfg.optim.schedule, cfg.optim.warmup_epochs, cfg.optim.lr = 20, "cosine", 2, 1.0
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = build_scheduler(opt, validate(cfg), steps_per_epoch=5)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    # 10 warm-up steps from lr / 10, reaching lr where the cosine starts
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(1.0)
    assert all(b - a == pytest.approx(0.09) for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.01


def test_warm_up_without_the_cosine_schedule_is_refused():
    cfg = load_recipe("digits")
    cfg.optim.warmup_epochs = 2
    with pytest.raises(ConfigError, match="optim.warmup_epochs warms up the cosine schedule"):
        validate(cfg)


def test_silu_wide_resnet_uses_silu_and_a_bad_activation_is_one_line():
    relu = create_model("wide_resnet", depth=10, widen_factor=1)
    silu = create_model("wide_resnet", depth=10, widen_factor=1, activation="silu")
    silu.load_state_dict(relu.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(relu.eval()(x), silu.eval()(x))
    with pytest.raises(ConfigError, match="bad model_args for wide_resnet.*activation"):
        create_model("wide_resnet", depth=10, widen_factor=1, activation="gelu")


def test_the_old_name_of_extra_fraction_is_read_with_a_notice():
    with pytest.warns(FutureWarning, match="data.unlabeled_fraction is now data.extra_fraction"):
        cfg = from_dict({"data": {"unlabeled_fraction": 0.3}})
    assert cfg.data.extra_fraction == 0.3


@pytest.mark.parametrize("name", ["cifar10_wrn28_trades_awp_gen", "cifar10_wrn28_trades_gen"])
def test_the_generated_data_recipes_hold_wang_et_al_settings(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no old names in shipped recipes
        cfg = validate(load_recipe(name))
    assert (cfg.model, cfg.model_args, cfg.beta, cfg.ema) == ("wrn28_10", {"activation": "silu"},
                                                              5.0, 0.995)
    assert (cfg.data.batch_size, cfg.data.extra_fraction) == (512, 0.7)
    o = cfg.optim
    assert (o.lr, o.nesterov, o.schedule, o.label_smoothing) == (0.2, True, "cosine", 0.1)
    assert o.warmup_epochs == pytest.approx(0.025 * cfg.epochs)
    assert cfg.method == ("trades-awp" if "awp" in name else "trades")
    if "awp" in name:
        assert cfg.awp.gamma == 0.005


def test_an_old_run_that_ignored_its_extra_data_is_not_resumed_with_it(tmp_path):
    """Before 0.3 only RST read data.extra_data; such a config (it says unlabeled_fraction)
    with another method would now mix the data in: refused, not silently changed."""
    old = {"method": "at", "data": {"extra_data": "extra.npz", "unlabeled_fraction": 0.5}}
    with pytest.raises(ConfigError, match="sets data.extra_data for method at, which torchawp "
                                          "0.2 ignored"):
        from_dict(old, source="runs/old/config.yaml")
    with pytest.warns(FutureWarning):  # RST always read it: the old name is just renamed
        cfg = from_dict({"method": "rst", "data": {"extra_data": "x.npz",
                                                   "unlabeled_fraction": 0.5}})
    assert cfg.data.extra_fraction == 0.5


def test_an_old_run_resumes_from_the_command_line_with_one_notice(tmp_path, capsys):
    import torchawp
    from torchawp.cli import main

    from .helpers import tiny_config

    run = torchawp.train(tiny_config(tmp_path / "run", epochs=1)).run_dir
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("extra_fraction:", "unlabeled_fraction:"))
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("data.unlabeled_fraction is now data.extra_fraction") == 1
    assert "extra_fraction:" in config.read_text()  # rewritten under the current name
    config.write_text(config.read_text().replace("extra_fraction:", "unlabeled_fraction:")
                      .replace("extra_data: null", "extra_data: extra.npz"))
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "which torchawp 0.2 ignored" in capsys.readouterr().err
