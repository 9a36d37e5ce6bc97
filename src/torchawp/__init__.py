"""torchawp: adversarial training with Adversarial Weight Perturbation (Wu, Xia & Wang, 2020).

Quick use in your own loop::

    import torchawp
    awp = torchawp.AWP(model, gamma=0.01)
    pgd = torchawp.attacks.PGD(eps=8/255, step_size=2/255, steps=10)
    x_adv = pgd(model, x, y)
    with awp.perturbed(lambda m: F.cross_entropy(m(x_adv), y)):
        loss = F.cross_entropy(model(x_adv), y)
        optimizer.zero_grad(); loss.backward(); awp.before_step(); optimizer.step()

``torchawp.RWP``, ``SAM``, ``ASAM``, ``PractitionersAWP`` and ``RandomWeightNoise`` are used
the same way (``before_step`` is where SAM and the practitioners' AWP go back to ``w``).
"""

from . import attacks, data, methods, models, perturb, perturbations
from .attacks import FGSM, PGD
from .perturbations import ASAM, AWP, RWP, SAM, PractitionersAWP, RandomWeightNoise
from .io.checkpoint import load
from .config import TrainConfig
from .errors import CheckpointError, ConfigError, DataError, TorchAWPError
from .evaluation.accuracy import evaluate
from .models import create_model
from .training.run import train
from .training.log import RunResult
from .training.trainer import Trainer

__version__ = "0.2.0"

__all__ = ["ASAM", "AWP", "CheckpointError", "ConfigError", "DataError", "FGSM", "PGD", "RunResult",
           "TorchAWPError", "TrainConfig", "Trainer", "attacks", "create_model", "data",
           "evaluate", "load", "methods", "models", "perturb", "perturbations",
           "PractitionersAWP", "RWP", "RandomWeightNoise", "SAM", "train"]
