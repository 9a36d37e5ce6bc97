"""Evaluation attacks by the names the command line accepts.

One table drives building, ``torchawp list`` and the help text. A name is a key of
:data:`ATTACKS`, or a key ending in ``K`` with the number of steps in its place (``pgd20``).
Adding an attack is one file and one line here.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from ..errors import ConfigError
from .autoattack import AutoAttack
from .base import Attack, Threat
from .fgsm import FGSM
from .pgd import PGD


class AttackEntry(NamedTuple):
    build: Callable[[Threat, int, int, int], Attack]  # (threat, steps, restarts, seed)
    meaning: str


ATTACKS: dict[str, AttackEntry] = {
    "fgsm": AttackEntry(lambda t, k, r, s: FGSM(t.norm, t.eps),
                        "FGSM, one step of size eps (Goodfellow et al. 2015)"),
    "pgdK": AttackEntry(lambda t, k, r, s: PGD(t.norm, t.eps, t.step_size, k, restarts=r),
                        "PGD-K on the cross-entropy, uniform random start (pgd20, pgd100)"),
    "cwK": AttackEntry(lambda t, k, r, s: PGD(t.norm, t.eps, t.step_size, k, restarts=r,
                                              loss="margin"),
                       "CW-inf: PGD-K on the margin max_{k!=y} z_k - z_y (cw20)"),
    "autoattack": AttackEntry(lambda t, k, r, s: AutoAttack(t.norm, t.eps, seed=s),
                              "standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square; "
                              "pyautoattack)"),
    "autoattack-plus": AttackEntry(
        lambda t, k, r, s: AutoAttack(t.norm, t.eps, version="plus", seed=s),
        "AutoAttack+ (restarts, untargeted FAB and Square with more queries)"),
    "autoattack-rand": AttackEntry(
        lambda t, k, r, s: AutoAttack(t.norm, t.eps, version="rand", seed=s),
        "AutoAttack for randomised defences (APGD-CE and APGD-DLR with expectation over "
        "transformations)"),
}


def attack_names() -> str:
    """The accepted names, for messages and help: ``fgsm, pgdK, cwK, autoattack``."""
    return ", ".join(ATTACKS)


def _resolve(name: str) -> tuple[AttackEntry, int]:
    """The table entry and the number of steps a name asks for; one line if it is not valid."""
    if name in ATTACKS and not name.endswith("K"):
        return ATTACKS[name], 0
    for key, entry in ATTACKS.items():
        prefix = key[:-1]
        if key.endswith("K") and name.startswith(prefix) and name[len(prefix):].isdigit():
            steps = int(name[len(prefix):])
            if steps < 1:
                raise ConfigError(f"attack {name!r} takes no step; K must be >= 1 (e.g. "
                                  f"{prefix}20)")
            return entry, steps
    raise ConfigError(f"unknown attack {name!r}; the attacks are {attack_names()} (K: the "
                      f"number of steps, e.g. pgd20)")


def check_attack_names(names) -> None:
    """Refuse, in one line and before anything runs, a name :func:`build_attack` would."""
    for name in names:
        _resolve(name)


def build_attack(name: str, threat: Threat, restarts: int = 1, seed: int = 0) -> Attack:
    """An evaluation attack (eval mode) by name on ``threat``."""
    entry, steps = _resolve(name)
    return entry.build(threat, steps, restarts, seed)
