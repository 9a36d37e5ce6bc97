"""Models by name: ``create_model(name, num_classes, in_channels, image_size, mean, std)``."""

from . import preact_resnet, small_cnn, vgg, wide_resnet  # noqa: F401  (registration)
from .preact_resnet import PreActResNet
from .registry import MODELS, Normalize, NormalizedModel, create_model, model_from_spec, register_model
from .small_cnn import SmallCNN
from .vgg import VGG
from .wide_resnet import WideResNet

__all__ = ["MODELS", "Normalize", "NormalizedModel", "PreActResNet", "SmallCNN", "VGG",
           "WideResNet", "create_model", "model_from_spec", "register_model"]
