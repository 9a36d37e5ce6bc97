"""One way to open a model to measure, whatever it came from: a run's checkpoint (or a
``.safetensors`` file torchawp wrote), a model torchawp never trained (a factory and its
weights), or a RobustBench entry. :func:`open_model` returns an :class:`Opened`: the model in
eval mode, its dataset's splits, its threat model, the file its weights came from and that
file's record (epoch, SHA-256, training config, RobustBench entry), which every analysis
command reads the same way."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..attacks import Threat
from ..data import Splits, changed_data, data_fingerprint, load_splits
from ..errors import CheckpointError, ConfigError, DataError
from ..io.checkpoint import (load, load_state_dict_into, read_weights, resolve_checkpoint,
                             safe_torch_load, tensor_digest, whiches)
from ..io.robustbench import checkpoint_path, load_robustbench
from ..models import NormalizedModel
from ..models.registry import import_factory
from ..runtime import resolve_device
from ..training.rundir import RunDir


@dataclasses.dataclass
class Opened:
    """A model opened to be measured.

    Attributes:
        model: in eval mode, on the device asked for (a run's memory format).
        splits: its dataset's splits as the run had them (the validation split held out).
        threat: the training threat model, or the one asked for (the PGD step scales with eps).
        source: the file the weights came from.
        which: a run's checkpoint (best, last, ema_best, ema_last, epochN), ``model`` for a
            model torchawp never trained, or the RobustBench entry's name.
        meta: the file's record: ``epoch``, ``sha256``, ``config``, ``robustbench`` (absent
            keys are unknown).
    """

    model: nn.Module
    splits: Splits
    threat: Threat
    source: str
    which: str
    meta: dict = dataclasses.field(default_factory=dict)

    def __iter__(self):
        """``model, splits, threat = opened``."""
        return iter((self.model, self.splits, self.threat))

    @property
    def epoch(self) -> Optional[int]:
        return self.meta.get("epoch")

    @property
    def sha256(self) -> Optional[str]:
        return self.meta.get("sha256")

    @property
    def config(self) -> dict:
        """The training config (a run's), as saved; {} where torchawp did not train it."""
        return self.meta.get("config") or {}



def open_run(path, which: str = "best", device: str = "auto", data_dir: Optional[str] = None,
             eps: Optional[float] = None, norm: Optional[str] = None) -> Opened:
    """A checkpoint of a run torchawp trained (``path``: the run directory, or a
    ``.safetensors`` file it wrote), with the run's data (``data_dir`` to read it elsewhere: a
    content change is refused unless ``data_dir`` is given, then said) and training threat
    model (``eps`` / ``norm`` override; the PGD step scales with eps)."""
    model = load(path, which=which, device=resolve_device(device))
    meta = model.checkpoint_meta
    cfg = meta.get("config") or {}
    if cfg.get("channels_last"):  # as trained: NHWC weights make every convolution NHWC
        model.to(memory_format=torch.channels_last)
    data_cfg, attack_cfg = cfg.get("data", {}), cfg.get("attack", {})
    trained = Threat(attack_cfg.get("norm", "linf"), attack_cfg.get("eps", 8 / 255),
                     attack_cfg.get("step_size", attack_cfg.get("eps", 8 / 255) / 4))
    threat = _asked(trained, eps, norm)
    data_cfg = dict(data_cfg, data_dir=data_dir or data_cfg.get("data_dir"))
    splits = load_splits(data_cfg.get("name", "digits"), data_cfg["data_dir"],
                         data_cfg.get("val_size", 0), data_cfg.get("split_seed", 0),
                         data_cfg.get("train_subset"), data_cfg.get("image_size"))
    changed = changed_data({k: v for k, v in (meta.get("data_sha256") or {}).items()
                            if k == "data"}, data_fingerprint(data_cfg))
    if changed and data_dir is None:
        raise DataError(f"{changed}: its accuracy would not be the run's; pass --data-dir with "
                        f"the data it was trained on")
    if changed:  # other data, chosen with --data-dir: measured, and said
        warnings.warn(f"--data-dir {data_dir} holds other data than the run trained on (its "
                      f"content fingerprint differs); the numbers are of that data",
                      stacklevel=2)
    return Opened(model, splits, threat, str(resolve_checkpoint(path, which)), which, meta)


def open_foreign(factory: str, weights, dataset: str, threat: Threat,
                 model_args: Optional[dict] = None, normalize=None,
                 data_dir: Optional[str] = None, device: str = "auto") -> Opened:
    """A model torchawp never trained: ``factory`` (``module.path:factory``, called with
    ``model_args``) with the state dict in ``weights`` (``.safetensors``, or ``.pt`` loaded
    with ``weights_only=True``); with ``normalize`` = ``(mean, std)`` it is wrapped so that it
    takes [0, 1] images."""
    model = import_factory(factory)(**(model_args or {}))
    weights = Path(weights)
    if weights.suffix == ".safetensors":
        state, _ = read_weights(weights)
    elif not weights.is_file():
        raise CheckpointError(f"weights {weights} not found")
    else:
        state = safe_torch_load(weights, weights, "weights",
                                "save model.state_dict() with torch.save")
    if isinstance(state, dict) and "state_dict" in state:  # a common checkpoint layout
        state = state["state_dict"]
    load_state_dict_into(model, state, str(weights))
    meta = {"sha256": tensor_digest(model.state_dict())}  # of the weights as given
    if normalize is not None:
        model = NormalizedModel(model, *normalize)
    model.checkpoint_meta = meta
    return Opened(model.to(resolve_device(device)).eval(), load_splits(dataset, data_dir),
                  threat, str(weights), "model", meta)


def open_robustbench(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                     model_dir: str = "models", device: str = "auto",
                     data_dir: Optional[str] = None, eps: Optional[float] = None,
                     norm: Optional[str] = None) -> Opened:
    """A RobustBench zoo entry from its checkpoint on disk (never downloaded), on its
    leaderboard's threat model unless ``eps`` / ``norm`` say otherwise."""
    model, threat = load_robustbench(name, dataset, threat_model, model_dir)
    return Opened(model.to(resolve_device(device)), load_splits(dataset, data_dir),
                  _asked(threat, eps, norm),
                  str(checkpoint_path(name, dataset, threat_model, model_dir)), name,
                  model.checkpoint_meta)


def _asked(threat: Threat, eps: Optional[float], norm: Optional[str]) -> Threat:
    threat = threat if eps is None else threat.scaled(eps)
    return threat if norm is None else Threat(norm, threat.eps, threat.step_size)


def open_model(path=None, which: str = "best", *, model: Optional[str] = None,
               weights=None, robustbench: Optional[str] = None, dataset: Optional[str] = None,
               threat_model: str = "Linf", model_dir: str = "models",
               model_args: Optional[dict[str, Any]] = None, normalize=None,
               eps: Optional[float] = None, norm: Optional[str] = None,
               step_size: Optional[float] = None, device: str = "auto",
               data_dir: Optional[str] = None) -> Opened:
    """The model the options name, one of: a run or checkpoint (``path``, ``which``), a model
    torchawp never trained (``model``, ``weights``, ``dataset``, ``eps``), a RobustBench entry
    (``robustbench``, its ``dataset``, ``threat_model``, ``model_dir``)."""
    named = [k for k, v in (("PATH", path), ("--model", model), ("--robustbench", robustbench))
             if v is not None]
    if len(named) != 1:
        raise ConfigError(f"name one model: a run directory or checkpoint (PATH), --model with "
                          f"--weights, or --robustbench NAME (got "
                          f"{', '.join(named) or 'none'})")
    if robustbench is not None:
        return open_robustbench(robustbench, dataset or "cifar10", threat_model, model_dir,
                                device, data_dir, eps, norm)
    if model is not None:
        missing = [o for o, v in (("--weights", weights), ("--dataset", dataset),
                                  ("--eps", eps)) if v is None]
        if missing:
            raise ConfigError(f"a model torchawp did not train is opened with --model, "
                              f"--weights, --dataset and --eps; missing: {', '.join(missing)}")
        threat = Threat(norm or "linf", eps, step_size if step_size is not None else eps / 4)
        return open_foreign(model, weights, dataset, threat, model_args, normalize, data_dir,
                            device)
    return open_run(path, which, device, data_dir, eps, norm)


def select_checkpoints(paths, which: str = "all",
                       kept_epochs: Optional[str] = None) -> list[tuple[str, str, str]]:
    """``(label, path, which)`` for every run directory / checkpoint of ``paths`` and every
    checkpoint ``which`` selects (:func:`~torchawp.io.checkpoint.whiches`), or with
    ``kept_epochs`` (``all``, or a comma list such as ``5,10``) the weights a run kept after
    those epochs (``keep_checkpoints``); refused in one line if the run did not keep them."""
    epochs = kept_epochs
    if kept_epochs not in (None, "all"):
        try:
            epochs = [int(e) for e in kept_epochs.split(",")]
        except ValueError:
            epochs = []
        if not epochs or min(epochs) < 1:
            raise ConfigError(f"--kept-epochs must be all or a comma list of epochs >= 1, "
                              f"such as 5,10,15 (got {kept_epochs!r})")
    out = []
    for path in paths:
        p = Path(path)
        name = p.name if p.is_dir() else p.stem
        if epochs is None:
            out += [(f"{name}:{w}" if p.is_dir() else name, path, w) for w in whiches(p, which)]
            continue
        kept = RunDir(p).kept_epochs() if p.is_dir() else []
        wanted = kept if epochs == "all" else epochs
        if not kept or set(wanted) - set(kept):
            raise ConfigError(f"--kept-epochs {kept_epochs}: {path} kept the weights of epochs "
                              f"{kept or 'none'}; train with --keep-checkpoints N to keep "
                              f"every N-th epoch")
        out += [(f"{name}:e{e}", path, f"epoch{e}") for e in wanted]
    return out
