"""Your own parts by name: ``module.path:NAME`` (a model factory, a training method)."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ConfigError


def import_named(name: str, what: str) -> tuple[Any, str, str]:
    """``(object or None, module, attribute)`` that ``module.path:NAME`` names; a module that
    does not import is one line naming ``what`` (model, method) and the fix."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {name}: cannot import {module_name} ({exc}); put its folder "
                          f"on PYTHONPATH or install it") from None
    except Exception as exc:  # the module itself fails (a syntax error, an error at import)
        raise ConfigError(f"{what} {name}: importing {module_name} failed "
                          f"({type(exc).__name__}: {exc}); fix that module") from None
    return getattr(module, attr, None), module_name, attr
