"""AutoAttack (Croce & Hein, ICML 2020, arXiv 2003.01690), from the ``pyautoattack`` package.

``pyautoattack`` packages the authors' reference code (APGD-CE, APGD-T, FAB-T, Square with the
reference hyper-parameters); torchawp only calls it. Install with
``pip install 'torchawp[autoattack]'``.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import Attack

_NORMS = {"linf": "Linf", "l2": "L2"}


def autoattack_available() -> bool:
    try:
        import pyautoattack  # noqa: F401  (the optional autoattack extra)
    except ImportError:
        return False
    return True


class AutoAttack(Attack):
    """AutoAttack ``standard`` (APGD-CE, APGD-T, FAB-T, Square), or a ``custom`` subset.

    Args:
        norm: ``"linf"`` or ``"l2"``.
        eps: radius, pixel units.
        version: ``"standard"`` (default), ``"plus"``, ``"rand"`` (randomised defences:
            expectation over transformations) or ``"custom"`` with ``attacks``.
        attacks: for ``custom``: a subset of apgd-ce, apgd-t, fab-t, square, apgd-dlr, fab.
        seed: the attacks' seed (default 0).
        square_queries: query budget of Square (None: the reference's 5000).

    Always runs the model in eval mode. Example::

        x_adv = AutoAttack("linf", 8/255)(model, x, y)
    """

    def __init__(self, norm: str = "linf", eps: float = 8 / 255, version: str = "standard",
                 attacks=None, seed: int = 0, square_queries=None):
        super().__init__(norm, eps, "eval")
        self.version = version
        self.attacks = list(attacks) if attacks else None
        self.seed = seed
        self.square_queries = square_queries

    def perturb(self, model, x, y, generator=None, only=None):
        if only is not None:  # its random draws are its own: it just gets fewer images
            x_adv = x.clone()
            if bool(only.any()):
                x_adv[only] = self.perturb(model, x[only], y[only])
            return x_adv
        try:
            from pyautoattack import AutoAttack as ReferenceAutoAttack  # optional extra
        except ImportError:
            raise ConfigError("AutoAttack needs the optional extra: pip install "
                              "'torchawp[autoattack]' (the pyautoattack package)") from None
        runner = ReferenceAutoAttack(model, norm=_NORMS[self.norm], eps=self.eps,
                                     version=self.version, attacks=self.attacks, seed=self.seed,
                                     device=x.device)
        if self.square_queries is not None:
            runner.square.n_queries = self.square_queries
        with torch.no_grad():
            x_adv, _ = runner.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv.to(x.dtype)
