import pytest
import torch

from torchawp.errors import ConfigError
from torchawp.models import MODELS, create_model, model_from_spec

SMALL = {"preact_resnet18": {"width": 4}, "wide_resnet": {"depth": 10, "widen_factor": 1},
         "wrn34_10": None, "wrn28_10": None, "vgg16": {}, "small_cnn": {"width": 4}}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_maps_unit_images_to_logits_and_rebuilds_from_spec(name):
    kwargs = SMALL.get(name, {})
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=3, image_size=32,
                         mean=[0.5] * 3, std=[0.25] * 3, **(kwargs or {})).eval()
    x = torch.rand(2, 3, 32, 32)
    if kwargs is None:  # the paper's full-width WRNs: check the shape of the network only
        blocks = sum(1 for m in model.modules() if type(m).__name__ == "WideBlock")
        assert (blocks, model.net.fc.in_features) == ({"wrn34_10": 15, "wrn28_10": 12}[name], 640)
        return
    out = model(x)
    assert out.shape == (2, 7)
    twin = model_from_spec(model.spec).eval()
    twin.load_state_dict(model.state_dict())
    assert torch.equal(twin(x), out)


def test_normalisation_is_inside_the_model():
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, 8, mean=[0.3], std=[0.5], width=4).eval()
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(model(x), model.net((x - 0.3) / 0.5))
    assert "normalize.mean" not in model.state_dict()  # constants, not weights


def test_unknown_model_and_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'small_cnn'"):
        create_model("small-cnn")
    with pytest.raises(ConfigError, match="model_args"):
        create_model("small_cnn", depth=3)
