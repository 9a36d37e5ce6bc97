"""Model registry: ``create_model("preact_resnet18", num_classes=10)`` builds by name.

Every registered model is wrapped as ``NormalizedModel(normalize, net)``: inputs are in [0, 1]
pixel space and the model normalises them itself, so every attack works in pixel units. The
wrapper carries ``spec``, the arguments that rebuild it (stored in checkpoints).
"""

from __future__ import annotations

import difflib
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..plugins import import_named

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register ``fn(num_classes, in_channels, image_size, **kwargs) -> nn.Module``."""

    def wrap(fn):
        MODELS[name] = fn
        return fn

    return wrap


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; inputs stay in [0, 1] outside the model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class NormalizedModel(nn.Module):
    """``net(normalize(x))``, with ``spec`` describing how to rebuild it."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 spec: Optional[dict] = None):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.spec = spec or {}

    def forward(self, x):
        return self.net(self.normalize(x))


def import_factory(name: str) -> Callable[..., nn.Module]:
    """The callable ``module.path:factory`` names (your own model)."""
    factory, module_name, attr = import_named(name, "model")
    if not callable(factory):
        raise ConfigError(f"model {name}: {module_name} has no callable {attr!r}; name a "
                          f"function or class that returns an nn.Module")
    return factory


def _foreign_model(name: str, spec: dict, kwargs: dict) -> nn.Module:
    try:
        model = import_factory(name)(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name} does not take these model_args: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {name} returned a {type(model).__name__}, not an nn.Module")
    model.spec = spec  # rebuilds it from a checkpoint (torchawp.load, eval, export)
    return model


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 **kwargs) -> NormalizedModel:
    """Build a registered model with its normalisation layer, or your own.

    Args:
        name: see ``torchawp list`` (small_cnn, preact_resnet18, wide_resnet, ...), or
            ``module.path:factory``: your callable, called with ``kwargs`` only, returning an
            ``nn.Module`` that takes [0, 1] images (normalise inside it; nothing is added).
        num_classes, in_channels, image_size: the data's shape (square images).
        mean, std: per-channel input statistics (default 0 and 1: no normalisation).
        **kwargs: model-specific options (e.g. ``depth=28, widen_factor=10``).
    """
    spec = dict(name=name, num_classes=num_classes, in_channels=in_channels,
                image_size=image_size, mean=mean, std=std, kwargs=dict(kwargs))
    if ":" in name:
        return _foreign_model(name, spec, kwargs)
    if name not in MODELS:
        hint = difflib.get_close_matches(name, sorted(MODELS), n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"unknown model {name!r}{did_you_mean} (models: {', '.join(sorted(MODELS))})")
    mean = list(mean) if mean is not None else [0.0] * in_channels
    std = list(std) if std is not None else [1.0] * in_channels
    try:
        net = MODELS[name](num_classes=num_classes, in_channels=in_channels,
                           image_size=image_size, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad model_args for {name}: {exc}") from None
    return NormalizedModel(net, mean, std, dict(spec, mean=mean, std=std))


def model_from_spec(spec: dict) -> NormalizedModel:
    """Rebuild a model from its ``spec`` (as stored in a checkpoint)."""
    return create_model(spec["name"], spec["num_classes"], spec["in_channels"],
                        spec["image_size"], spec["mean"], spec["std"], **spec.get("kwargs", {}))
