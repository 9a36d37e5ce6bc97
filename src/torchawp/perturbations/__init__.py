"""Weight perturbations: ``w <- w + v`` before the loss the optimizer steps on, ``v`` removed
after the step. One file each on :class:`WeightPerturbation`: the paper's AWP, random weight
noise of AWP's size (its control), RWP, SAM and ASAM, and the practitioners' AWP.
:data:`PERTURBATIONS` names them for the config's ``perturbation.name`` (``--perturbation``);
:func:`build` makes a run's from its config."""

from __future__ import annotations

from typing import Optional

from torch import nn

from ..errors import ConfigError
from ..plugins import import_named
from .awp import AWP
from .base import Closure, WeightPerturbation
from .noise import RandomWeightNoise
from .practitioners import PractitionersAWP
from .rwp import RWP
from .sam import ASAM, SAM

PERTURBATIONS: dict[str, type[WeightPerturbation]] = {
    cls.name: cls for cls in (AWP, RWP, SAM, ASAM, PractitionersAWP, RandomWeightNoise)}


def perturbation_class(name: str) -> type[WeightPerturbation]:
    """The class ``--perturbation NAME`` names: a built-in one, or one of your own,
    ``module.path:Class`` (a :class:`WeightPerturbation` subclass with ``from_config``)."""
    if ":" not in name:
        return PERTURBATIONS[name]
    cls, module_name, attr = import_named(name, "perturbation")
    if not (isinstance(cls, type) and issubclass(cls, WeightPerturbation)):
        raise ConfigError(f"perturbation {name}: {module_name}.{attr} is "
                          f"{'missing' if cls is None else 'a ' + type(cls).__name__}; name a "
                          f"torchawp.perturbations.WeightPerturbation subclass")
    return cls


def build(cfg, model: nn.Module) -> Optional[WeightPerturbation]:
    """The weight perturbation a validated config trains with (None for ``none``)."""
    name = cfg.perturbation.name
    return None if name == "none" else perturbation_class(name).from_config(model, cfg)


__all__ = ["ASAM", "AWP", "Closure", "PERTURBATIONS", "PractitionersAWP", "RWP",
           "RandomWeightNoise", "SAM", "WeightPerturbation", "build", "perturbation_class"]
