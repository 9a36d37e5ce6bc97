import pytest

from torchawp.config import TrainConfig
from torchawp.config.resolve import validate
from torchawp.config.recipes import from_dict
from torchawp.config.recipes import load_recipe
from torchawp.errors import ConfigError


def test_defaults_are_the_papers_cifar_protocol():
    cfg = validate(TrainConfig())
    assert (cfg.data.name, cfg.model, cfg.epochs, cfg.optim.lr, cfg.optim.milestones) == (
        "cifar10", "preact_resnet18", 200, 0.1, [100, 150])
    assert cfg.attack.eps == pytest.approx(8 / 255) and cfg.attack.step_size == pytest.approx(2 / 255)
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.data.batch_size) == (0.9, 5e-4, 128)


def test_every_shipped_recipe_validates_and_is_what_its_name_says():
    from torchawp.config.recipes import RECIPE_DIR

    names = sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))
    assert len(names) >= 25 and "digits" in names and "fashion_mnist" in names
    for name in names:
        cfg = load_recipe(name)
        if cfg.method.startswith("rst"):
            cfg.data.extra_data = "extra.npz"
        cfg = validate(cfg)
        dataset = name.split("_")[0].replace("fashion", "fashion-mnist")
        assert cfg.data.name == dataset, name
        paper = name.startswith(("cifar", "svhn"))  # the CPU recipes are the AWP default jobs
        assert cfg.method.endswith("-awp") == ("awp" in name or not paper), name
        for method in ("trades", "mart", "rst"):
            assert (method in cfg.method) == (method in name), name
        if name.startswith("cifar10_"):
            model = {"prn18": "preact_resnet18", "wrn34": "wrn34_10", "wrn28": "wrn28_10"}
            assert cfg.model == model[name.split("_")[1]], name
            assert cfg.attack.norm == ("l2" if "_l2_" in name else "linf"), name


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs"), ("beta", -1.0, "beta"), ("precision", "fp8", "precision"),
    ("device", "tpu", "device"),
])
def test_invalid_top_level_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        validate(TrainConfig(**{field: value}))


def test_unknown_nested_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'warmup_epochs'"):
        from_dict({"awp": {"warmup_epoch": 3}})


def test_rst_without_extra_data_says_how_to_make_it():
    with pytest.raises(ConfigError, match="pseudo-label"):
        validate(TrainConfig(method="rst"))


def test_training_leaves_the_callers_config_as_it_was(tmp_path):
    import copy

    import torchawp
    from torchawp.training.trainer import Trainer

    from .helpers import tiny_config

    cfg = tiny_config(tmp_path / "run", epochs=1, method="at-awp")
    cfg.awp.gamma = cfg.awp.warmup_epochs = None  # filled from the method's defaults
    cfg.data.data_dir = "relative/never-read"  # digits ignores it; resolved in the copy only
    before = copy.deepcopy(cfg)
    assert validate(cfg).awp.gamma == 0.01 and cfg == before
    trainer = Trainer(cfg)
    assert trainer.cfg.attack.bn_mode is not None and cfg == before
    torchawp.train(cfg)
    assert cfg == before


def test_a_run_is_validated_once_and_a_changed_config_again(tmp_path, monkeypatch):
    import torchawp
    from torchawp.config import resolve

    from .helpers import tiny_config

    checked = []
    real = resolve._fill_and_check_method
    monkeypatch.setattr(resolve, "_fill_and_check_method",
                        lambda cfg, *a: (checked.append(cfg.method), real(cfg, *a))[1])
    result = torchawp.train(tiny_config(tmp_path / "run", epochs=1, method="at-awp"))
    assert checked == ["at-awp"]  # torchawp.train's; its Trainer knew the result
    assert result.config.awp.gamma == 0.01 and result.config.attack.bn_mode is not None
    valid = validate(tiny_config(tmp_path / "other"))
    assert validate(valid) == valid and len(checked) == 2  # the same content: known
    valid.data.batch_size = 0  # a validated config changed afterwards is checked again
    with pytest.raises(ConfigError, match="data.batch_size must be an integer >= 1"):
        validate(valid)


@pytest.mark.parametrize("field, bad, allowed", [
    ("epochs", 0, "an integer >= 1"), ("beta", -1.0, ">= 0"),
    ("keep_checkpoints", -1, "an integer >= 0 (0 keeps none)"), ("threads", 0, ">= 1"),
    ("ema", 1.0, "a decay in (0, 1), such as 0.995, or null (no weight average)"),
    ("data.batch_size", 0, "an integer >= 1"),
    ("data.image_size", 0, "None or an integer >= 1"), ("data.val_size", -1, ">= 0"),
    ("data.crop_pad", -1, "an integer >= 0 (pixels)"),
    ("data.train_subset", 0, "None or >= 1"),
    ("data.extra_fraction", 1.0, "in (0, 1): the share of every batch drawn from "
                                 "data.extra_data"),
    ("attack.eps", 8.0, "in [0, 1] (pixel units; 8/255 = 0.0314)"),
    ("attack.step_size", -0.1, "in [0, 1] (pixel units)"), ("attack.steps", -1, "an integer >= 0"),
    ("awp.gamma", -1.0, ">= 0"), ("awp.warmup_epochs", -1, ">= 0"),
    ("perturbation.rho", 0.0, "> 0"), ("perturbation.threshold", 0.0, "> 0 (the authors' 1.7)"),
    ("consistency.weight", -1.0, ">= 0 (0: off; the authors' 1.0)"),
    ("optim.lr", 0.0, "> 0"), ("optim.momentum", 1.0, "in [0, 1)"),
    ("optim.lr_decay", 0.0, "in (0, 1]"),
    ("optim.label_smoothing", 1.0, "in [0, 1) (0.1 in Wang et al.'s recipe)"),
    ("eval.restarts", 0, "an integer >= 1"), ("eval.max_examples", 0, "None or >= 1"),
    ("eval.flatness_samples", 0, ">= 1"),
])
def test_every_range_is_declared_beside_its_default_and_said_in_one_line(field, bad, allowed):
    """One range system (config.ranges.bounded) for the config and the commands; what each
    field allows is said as the config always said it."""
    import functools

    cfg = load_recipe()
    *groups, name = field.split(".")
    setattr(functools.reduce(getattr, groups, cfg), name, bad)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert str(error.value) == f"{field} must be {allowed} (got {bad!r})"
