"""Checking a :class:`~torchawp.config.TrainConfig` once, at load: one function per config
group, each raising a :class:`~torchawp.errors.ConfigError` that names the field, the value and
what is allowed; then the method's defaults filled in and the settings that contradict the
method refused."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
from pathlib import Path
from typing import Any

from . import (AUGMENTS, AWP_PARAMS, BN_MODES, BN_UPDATES, CROP_PADDINGS, NORMS,
               PRECISIONS, SCHEDULES, TrainConfig)
from ..data import DATASETS
from ..errors import ConfigError
from ..methods import MethodSpec, get_method, method_names
from ..models import MODELS
from ..models.registry import import_factory
from ..perturbations import PERTURBATIONS, perturbation_class
from .ranges import check_ranges


def validate(cfg: TrainConfig) -> TrainConfig:
    """The checked and resolved copy of ``cfg`` (the caller's object is left as it was): every
    field checked, the method's defaults filled into the fields left unset (``attack.bn_mode``;
    the weight perturbation, ``awp.gamma`` and ``awp.warmup_epochs`` where it uses them, SAM's
    rho) and data paths made absolute, so what is saved and printed is what runs. Raises
    :class:`ConfigError` naming the first bad field, and refuses a weight perturbation that
    would never switch on. A config this returned, unchanged since, is known by its content and
    not checked again (``torchawp.train`` validates, then its Trainer is given the result)."""
    if getattr(cfg, "_validated", None) == dataclasses.asdict(cfg):
        return copy.deepcopy(cfg)
    cfg = copy.deepcopy(cfg)
    if ":" not in cfg.method:  # a method of your own is checked when it is imported
        _one_of("method", cfg.method, method_names())
    spec, use_awp = get_method(cfg.method)
    _check_finite(cfg)
    check_ranges(cfg)
    _check_run(cfg)
    _check_data(cfg)
    _check_attack(cfg)
    _check_awp(cfg)
    _check_perturbation(cfg)
    _check_consistency(cfg, spec)
    _check_optim(cfg)
    _fill_and_check_method(cfg, spec, use_awp)
    cfg._validated = dataclasses.asdict(cfg)  # not a field: never saved or compared
    return cfg


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {allowed} (got {value!r})")


def _one_of(name: str, value: Any, choices) -> None:
    if value not in choices:
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(
            f"{name} must be one of {', '.join(map(str, choices))} (got {value!r}){did_you_mean}"
        )


def _check_finite(group, prefix: str = "") -> None:
    """No number of the config is NaN or infinite: ``optim.lr inf`` would pass a check written
    as a lower bound and train to NaN."""
    for f in dataclasses.fields(group):
        value = getattr(group, f.name)
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{prefix}{f.name}.")
        elif isinstance(value, float):
            _check(math.isfinite(value), prefix + f.name, value, "a finite number")


def _check_run(cfg: TrainConfig) -> None:
    if ":" in cfg.model:  # your own model, module.path:factory
        import_factory(cfg.model)
    else:
        _one_of("model", cfg.model, sorted(MODELS))
    _one_of("precision", cfg.precision, PRECISIONS)
    _one_of("bn_updates", cfg.bn_updates, BN_UPDATES)
    _check(
        cfg.device == "auto" or cfg.device == "cpu" or cfg.device.startswith("cuda")
        or cfg.device == "mps",
        "device", cfg.device, "auto, cpu, cuda, cuda:N or mps",
    )


def _check_data(cfg: TrainConfig) -> None:
    d = cfg.data
    _one_of("data.name", d.name, sorted(DATASETS))
    _one_of("data.augment", d.augment, AUGMENTS)
    _one_of("data.crop_padding", d.crop_padding, CROP_PADDINGS)
    if d.extra_data == "auto" and d.train_subset is None:
        raise ConfigError("data.extra_data auto labels the training images that "
                          "data.train_subset leaves out; set data.train_subset (e.g. 150)")
    # recorded resolved, so the run directory works from any directory (eval, --resume)
    if d.data_dir is not None:
        d.data_dir = str(Path(d.data_dir).expanduser().absolute())
    if d.extra_data not in (None, "auto"):
        d.extra_data = str(Path(d.extra_data).expanduser().absolute())


def _check_attack(cfg: TrainConfig) -> None:
    a = cfg.attack
    _one_of("attack.norm", a.norm, NORMS)
    if a.bn_mode is not None:
        _one_of("attack.bn_mode", a.bn_mode, BN_MODES)


def _check_awp(cfg: TrainConfig) -> None:
    w = cfg.awp
    _one_of("awp.scale", w.scale, ("layer", "global"))
    _one_of("awp.params", w.params, AWP_PARAMS)
    _one_of("awp.ascent", w.ascent, ("exact", "last-pgd-step"))


def _check_perturbation(cfg: TrainConfig) -> None:
    p = cfg.perturbation
    if p.name is not None and ":" not in p.name:  # one of your own is checked on import
        _one_of("perturbation.name", p.name, [*PERTURBATIONS, "none"])


def _check_consistency(cfg: TrainConfig, spec: MethodSpec) -> None:
    c = cfg.consistency
    if c.weight and spec.attack_loss == "none":
        raise ConfigError(f"consistency.weight {c.weight:g} pulls together the adversarial "
                          f"outputs of two views, and {spec.name} crafts no adversarial "
                          f"examples; use it with at, trades, mart or rst")


def _check_optim(cfg: TrainConfig) -> None:
    o = cfg.optim
    _one_of("optim.schedule", o.schedule, SCHEDULES)
    _check(all(m >= 0 for m in o.milestones), "optim.milestones", o.milestones,
           "a list of epochs >= 0")
    _check(0 <= o.warmup_epochs < cfg.epochs, "optim.warmup_epochs", o.warmup_epochs,
           f"in [0, {cfg.epochs}) (the run's epochs)")
    if o.warmup_epochs and o.schedule != "cosine":
        raise ConfigError(f"optim.warmup_epochs warms up the cosine schedule; optim.schedule is "
                          f"{o.schedule}: set --optim.schedule cosine or drop the warm-up")


def _fill_and_check_method(cfg: TrainConfig, spec: MethodSpec, use_awp: bool) -> None:
    """The method's defaults, and the settings its loss, attack or data contradict."""
    a, o = cfg.attack, cfg.optim
    if o.label_smoothing and not spec.label_smoothing:
        raise ConfigError(f"optim.label_smoothing smooths a cross-entropy, and {spec.name}'s "
                          f"loss has none that takes it; drop --optim.label-smoothing")
    _check_method_args(cfg, spec)
    if a.bn_mode is None:
        a.bn_mode = spec.bn_policy(cfg.bn_updates).attack_bn_mode
    _fill_and_check_perturbation(cfg, spec, use_awp)
    if spec.needs_extra_data and not cfg.data.extra_data:
        raise ConfigError(
            f"method {spec.name} needs data.extra_data: an .npz of pseudo-labelled images (make "
            f"one with `torchawp pseudo-label`), an image store, or auto with data.train_subset "
            f"to hide most labels"
        )


def _fill_and_check_perturbation(cfg: TrainConfig, spec: MethodSpec, use_awp: bool) -> None:
    """The perturbation's name (awp for an X-awp method, none otherwise), the method's gamma and
    warm-up where it uses them, SAM's rho; refused where it would never switch on."""
    p, w = cfg.perturbation, cfg.awp
    if use_awp and p.name not in (None, "awp"):
        raise ConfigError(f"{cfg.method} trains with AWP; for {p.name} instead give --method "
                          f"{spec.name} --perturbation {p.name}")
    p.name = p.name or ("awp" if use_awp else "none")
    if p.name == "none":
        if w.ascent != "exact":
            raise ConfigError(f"awp.ascent {w.ascent} is an option of AWP, and {cfg.method} "
                              f"trains without it; use --method at-awp")
        return
    kind = perturbation_class(p.name)
    title = kind.title
    alone = spec.name if use_awp else f"{cfg.method} without {title}"
    w.warmup_epochs = spec.awp_warmup if w.warmup_epochs is None else w.warmup_epochs
    if kind.uses_gamma:  # AWP's size: AWP, RWP, random noise, yours unless it says otherwise
        w.gamma = spec.awp_gamma if w.gamma is None else w.gamma
        if w.gamma == 0:
            raise ConfigError(f"awp.gamma 0 turns {title} off, so {cfg.method} would train as "
                              f"{alone}; " + (f"use --method {spec.name}, or a gamma > 0 (the "
                                              f"paper: 0.005 to 0.01)" if use_awp else
                                              "give a gamma > 0 (AWP's: 0.005 to 0.01)"))
    rho = inspect.signature(kind).parameters.get("rho")  # SAM's and ASAM's own default
    if rho is not None and p.rho is None:
        p.rho = rho.default
    if w.ascent != "exact" and (p.name != "awp" or not spec.approximate_ascent
                                or w.steps != 1):
        raise ConfigError(f"awp.ascent {w.ascent} reuses AT's PGD gradient: it needs method "
                          f"at-awp and awp.steps 1, not {cfg.method} and {w.steps}")
    if w.warmup_epochs >= cfg.epochs:
        raise ConfigError(f"awp.warmup_epochs {w.warmup_epochs} leaves no epoch of a "
                          f"{cfg.epochs}-epoch run with {title}, so {cfg.method} would train as "
                          f"{alone}; lower --awp.warmup-epochs below {cfg.epochs}, train "
                          f"longer, or " + (f"use --method {spec.name}" if use_awp else
                                            "drop --perturbation"))


def _check_method_args(cfg: TrainConfig, spec: MethodSpec) -> None:
    """Every ``method_args`` key is a keyword the method's loss takes."""
    if not cfg.method_args:
        return
    params = inspect.signature(spec.loss).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    named = [n for n, p in params.items() if p.kind is not inspect.Parameter.POSITIONAL_ONLY]
    fixed = {"model", "x", "x_adv", "y", "beta", "epoch", "forwards", "label_smoothing"}
    takes = [n for n in named if n not in fixed]
    for key in cfg.method_args:
        if key not in takes:
            hint = difflib.get_close_matches(key, takes, n=1)
            raise ConfigError(
                f"method_args.{key}: {spec.name}'s loss takes no such keyword "
                + (f"(did you mean {hint[0]}?)" if hint else
                   f"({'it takes ' + ', '.join(takes) if takes else 'it takes none'})"))
