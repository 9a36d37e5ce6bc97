"""Training methods by name: at, trades, mart, rst, standard, each also as X-awp."""

from . import at, mart, rst, standard, trades  # noqa: F401  (registration)
from .at import at_loss
from .base import (METHODS, BNPolicy, LossOutput, Method, MethodSpec, get_method,
                   method_names, register_method)
from .mart import mart_loss
from .standard import standard_loss
from .trades import trades_loss

__all__ = ["METHODS", "BNPolicy", "LossOutput", "Method", "MethodSpec", "at_loss", "get_method",
           "mart_loss",
           "method_names", "register_method", "standard_loss", "trades_loss"]
