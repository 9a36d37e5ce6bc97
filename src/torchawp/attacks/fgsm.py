"""Fast gradient sign method (Goodfellow et al., ICLR 2015, arXiv 1412.6572)."""

from __future__ import annotations

from .pgd import PGD


class FGSM(PGD):
    """One step of size ``eps`` from the clean input (no random start): the L-inf sign step, or
    for ``norm="l2"`` the normalised-gradient step (fast gradient method).

    Args:
        norm: ``"linf"`` (default) or ``"l2"``.
        eps: radius, pixel units (default 8/255).
        bn_mode: model mode while crafting (default ``"eval"``).

    Example::

        x_adv = FGSM(eps=8/255)(model, x, y)
    """

    def __init__(self, norm: str = "linf", eps: float = 8 / 255, bn_mode: str = "eval"):
        super().__init__(norm=norm, eps=eps, step_size=eps, steps=1, random_start="none",
                         restarts=1, loss="ce", bn_mode=bn_mode)
