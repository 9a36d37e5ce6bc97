"""Weight perturbations: ``w <- w + v`` before the loss the optimizer steps on, ``v`` removed
after the step. One file each on :class:`WeightPerturbation`: the paper's AWP, random weight
noise of AWP's size (its control), RWP, SAM and ASAM, and the practitioners' AWP.
:data:`PERTURBATIONS` names them for the config's ``perturbation.name`` (``--perturbation``);
:func:`build` makes a run's from its config."""

from __future__ import annotations

from typing import Optional

from torch import nn

from .awp import AWP
from .base import Closure, WeightPerturbation
from .noise import RandomWeightNoise
from .practitioners import PractitionersAWP
from .rwp import RWP
from .sam import ASAM, SAM

PERTURBATIONS: dict[str, type[WeightPerturbation]] = {
    cls.name: cls for cls in (AWP, RWP, SAM, ASAM, PractitionersAWP, RandomWeightNoise)}


def build(cfg, model: nn.Module) -> Optional[WeightPerturbation]:
    """The weight perturbation a validated config trains with (None for ``none``)."""
    name = cfg.perturbation.name
    return None if name == "none" else PERTURBATIONS[name].from_config(model, cfg)


__all__ = ["ASAM", "AWP", "Closure", "PERTURBATIONS", "PractitionersAWP", "RWP",
           "RandomWeightNoise", "SAM", "WeightPerturbation", "build"]
