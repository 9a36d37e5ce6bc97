"""Weight perturbations: ``w <- w + v`` before the loss the optimizer steps on, ``v`` removed
after the step. One file each on :class:`WeightPerturbation`: the paper's AWP, and random
weight noise of AWP's size (its control)."""

from .awp import AWP
from .base import Closure, WeightPerturbation
from .noise import RandomWeightNoise

__all__ = ["AWP", "Closure", "RandomWeightNoise", "WeightPerturbation"]
