"""Training methods by name: at, trades, mart, rst, standard, each also as X-awp; any of them
with consistency regularisation (:func:`build_method`)."""

from . import at, mart, rst, standard, trades  # noqa: F401  (registration)
from .at import at_loss
from .base import (METHODS, BNPolicy, LossOutput, Method, MethodSpec, get_method,
                   method_names, register_method)
from .consistency import Consistency
from .mart import mart_loss
from .standard import standard_loss
from .trades import trades_loss

__all__ = ["METHODS", "BNPolicy", "Consistency", "LossOutput", "Method", "MethodSpec", "at_loss",
           "build_method", "get_method", "mart_loss", "method_names", "register_method",
           "standard_loss", "trades_loss"]


def build_method(cfg, model) -> Method:
    """The method a validated config trains with: its spec's halves
    (:meth:`MethodSpec.build`), inside the consistency term when ``consistency.weight`` asks
    for it."""
    method = get_method(cfg.method)[0].build(cfg, model)
    c = cfg.consistency
    return Consistency(method, c.weight, c.temperature) if c.weight else method
