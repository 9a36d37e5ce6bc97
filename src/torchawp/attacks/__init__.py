"""Input-space attacks in [0, 1] pixel space, called as ``attack(model, x, y)``."""

from .autoattack import AutoAttack, autoattack_available
from .base import Attack, L2Ball, LinfBall, ThreatModel, attack_loss, margin_loss, threat_model
from .fgsm import FGSM
from .pgd import PGD

ATTACKS = {"pgd": PGD, "fgsm": FGSM, "autoattack": AutoAttack}

__all__ = ["ATTACKS", "Attack", "AutoAttack", "autoattack_available", "FGSM", "L2Ball", "LinfBall", "PGD", "ThreatModel",
           "attack_loss", "margin_loss", "threat_model"]
