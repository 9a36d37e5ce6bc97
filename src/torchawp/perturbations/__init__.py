"""Weight perturbations: ``w <- w + v`` before the loss the optimizer steps on, ``v`` removed
after the step. One file each on :class:`WeightPerturbation`: the paper's AWP, random weight
noise of AWP's size (its control), SAM and ASAM."""

from .awp import AWP
from .base import Closure, WeightPerturbation
from .noise import RandomWeightNoise
from .sam import SAM

__all__ = ["AWP", "Closure", "RandomWeightNoise", "SAM", "WeightPerturbation"]
