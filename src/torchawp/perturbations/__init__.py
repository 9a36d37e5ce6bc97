"""Weight perturbations: ``w <- w + v`` before the loss the optimizer steps on, ``v`` removed
after the step. One file each on :class:`WeightPerturbation`: the paper's AWP, random weight
noise of AWP's size (its control), RWP, SAM and ASAM, and the practitioners' AWP."""

from .awp import AWP
from .base import Closure, WeightPerturbation
from .noise import RandomWeightNoise
from .practitioners import PractitionersAWP
from .rwp import RWP
from .sam import SAM

__all__ = ["AWP", "Closure", "PractitionersAWP", "RWP", "RandomWeightNoise", "SAM",
           "WeightPerturbation"]
