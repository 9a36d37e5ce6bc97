import pytest

from torchawp.config import TrainConfig, validate
from torchawp.recipes import from_dict
from torchawp.recipes import load_recipe
from torchawp.errors import ConfigError


def test_defaults_are_the_papers_cifar_protocol():
    cfg = validate(TrainConfig())
    assert (cfg.data.name, cfg.model, cfg.epochs, cfg.optim.lr, cfg.optim.milestones) == (
        "cifar10", "preact_resnet18", 200, 0.1, [100, 150])
    assert cfg.attack.eps == pytest.approx(8 / 255) and cfg.attack.step_size == pytest.approx(2 / 255)
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.data.batch_size) == (0.9, 5e-4, 128)


def test_every_shipped_recipe_validates():
    from torchawp.recipes import RECIPE_DIR

    for path in RECIPE_DIR.glob("*.yaml"):
        cfg = load_recipe(path.stem)
        if cfg.method.startswith("rst"):
            cfg.data.extra_data = "extra.npz"
        validate(cfg)


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
