"""Input-space attacks in [0, 1] pixel space, called as ``attack(model, x, y)``."""

from .autoattack import AutoAttack, autoattack_available
from .base import (Attack, L2Ball, LinfBall, Threat, ThreatModel, attack_loss, margin_loss,
                   threat_model)
from .fgsm import FGSM
from .pgd import PGD
from .regional import Region, Regional
from .registry import ATTACKS, attack_names, build_attack, check_attack_names

__all__ = ["ATTACKS", "Attack", "AutoAttack", "autoattack_available", "FGSM", "L2Ball",
           "LinfBall", "PGD", "Region", "Regional", "Threat", "ThreatModel", "attack_loss",
           "attack_names", "build_attack", "check_attack_names", "margin_loss", "threat_model"]
