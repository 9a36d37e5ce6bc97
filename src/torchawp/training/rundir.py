"""A run directory: its lock, config, metrics and crash-safe checkpoints.

::

    config.yaml        the resolved config (every field)
    metrics.jsonl      one row per epoch (epochs counted from 1)
    best.safetensors   weights of the epoch with the best validation robust accuracy
    last.safetensors   weights after the last epoch (or mid-epoch, after a stop signal)
    last.state.pt      optimizer, scheduler, RNG states: resumes the run
    prev.*             the previous checkpoint, kept until the next one is complete

:class:`RunDir` knows where things are and how to write them safely; it knows nothing about
training. :func:`check_resumable` decides whether a config may continue a saved run.
"""

from __future__ import annotations

import json
import os
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from torch import nn

from ..io.checkpoint import atomic_write, load_state, read_weights, save_state, save_weights
from ..io.paths import exclusive_lock
from ..data.fingerprint import changed_data
from ..errors import CheckpointError, ConfigError

CHECKPOINT_FILES = ("state.pt", "safetensors")

# Fields that say where and how a run executes, not what it computes: a resume may change them.
RUNTIME_FIELDS = ("out_dir", "resume", "progress", "device", "threads", "keep_checkpoints")

def read_run_config(path: Path) -> dict:
    """A run's ``config.yaml`` as plain data: a mapping of every field, or one line naming the
    file."""
    from ..config.recipes import read_yaml

    data = read_yaml(path)
    if not data or not isinstance(data, dict):
        raise ConfigError(f"{path} is empty or not a mapping of fields, so the run's settings "
                          f"are lost; restore it from a copy, or start a new run")
    return data


def default_run_dir(cfg) -> Path:
    """``runs/<time>_<method>_<dataset>_<model>_s<seed>`` for a run without ``out_dir``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}_{cfg.method}_{cfg.data.name}_{cfg.model}_s{cfg.seed}"
    return Path("runs") / name.replace(":", "-")  # a method or model of your own: module:name


class RunDir:
    """The files of one run, written atomically; only rank 0 of a DDP run writes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def lock(self):
        """Exclusive use of the directory for the block (see :func:`exclusive_lock`)."""
        return exclusive_lock(self.path)

    def kept(self, saved: Optional[tuple[int, int]]) -> str:
        """Which checkpoint the directory holds, said for a message: ``saved`` is the
        ``(epochs, step)`` of the newest one written, None if none was."""
        if saved is None:
            return f"no checkpoint was written yet, so {self.path} holds none"
        epochs, step = saved
        return ("the checkpoint of " + (f"step {step} of epoch {epochs + 1}" if step
                                         else f"epoch {epochs}") + f" is kept in {self.path}")

    def has_checkpoint(self) -> bool:
        return any((self.path / f"{p}.state.pt").is_file() for p in ("last", "prev"))

    def check_start(self, resume: bool) -> None:
        """Refuse a new run over an existing one, and a resume of a directory that holds no
        run (a typo would otherwise start a fresh run silently)."""
        if not resume and self.has_checkpoint():
            raise ConfigError(f"{self.path} already holds a run; continue it with "
                              f"--resume {self.path}, or choose another --out-dir")
        if resume and not (self.path / "config.yaml").is_file():
            raise ConfigError(f"--resume: {self.path} holds no torchawp run (no config.yaml); "
                              f"check the path, or drop --resume to start a new run there")

    def saved_config(self) -> Optional[dict]:
        """The run's ``config.yaml`` as plain data, or None where there is none; an empty or
        unreadable one is refused in one line naming the file (read as a recipe, an empty file
        would be the CIFAR defaults)."""
        path = self.path / "config.yaml"
        return read_run_config(path) if path.is_file() else None

    def resume_point(self, ours: dict, fingerprint: dict, validate):
        """``(checkpoint or None, notice or None)`` for resuming this run with config ``ours``
        (plain data) on data with content ``fingerprint``: the newest good checkpoint, after
        :func:`check_resumable` (the saved config read through ``validate``, so both have
        their defaults filled in) and a check that the data files are the ones it trained on."""
        from ..config.recipes import from_dict, to_dict

        checkpoint = self.newest_checkpoint() if self.has_checkpoint() else None
        done = checkpoint[0]["epoch"] if checkpoint else 0
        saved = to_dict(validate(from_dict(self.saved_config(), source=str(self.path /
                                                                          "config.yaml"))))
        notice = check_resumable(saved, ours, done)
        changed = changed_data(checkpoint[0].get("data_sha256") if checkpoint else None,
                               fingerprint)
        if changed:
            raise ConfigError(f"--resume: {changed}; a resumed run must see the same data. "
                              f"Put the original back, or start a new run")
        return checkpoint, notice

    def write_config(self, config: dict) -> None:
        text = yaml.safe_dump(config, sort_keys=False)
        atomic_write(self.path / "config.yaml", lambda tmp: tmp.write_text(text))

    def read_metrics(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_metrics(self, rows: list[dict]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write(self.path / "metrics.jsonl", lambda tmp: tmp.write_text(text))

    def remove_stale_temporaries(self) -> None:
        for stale in self.path.glob(".*.tmp*"):  # half-written by a killed process
            stale.unlink(missing_ok=True)

    def save(self, model: nn.Module, state: dict[str, Any], meta: dict[str, Any],
             is_best: bool, extra: Sequence[tuple] = ()) -> None:
        """Write ``last.*`` (and ``best.safetensors``), keeping the previous checkpoint as
        ``prev.*`` until the new one is complete, so a crash or a full disk at any moment leaves
        a good one. The training state is written last: it commits the checkpoint (a run killed
        inside its first save has no state file and starts over). ``state`` and ``meta`` carry
        the same ``epoch`` and ``step``, which pair them on resume. Each of ``extra`` =
        ``(prefix, module, meta, is_best)`` (a weight average: ``ema_``) also writes
        ``{prefix}last`` (and ``{prefix}best``); its resume copy is inside ``state``."""
        for name in CHECKPOINT_FILES:
            if (self.path / f"last.{name}").exists():
                os.replace(self.path / f"last.{name}", self.path / f"prev.{name}")
        try:
            save_weights(self.path / "last.safetensors", model, meta)
            if is_best:
                save_weights(self.path / "best.safetensors", model, meta)
            for prefix, module, module_meta, module_is_best in extra:
                save_weights(self.path / f"{prefix}last.safetensors", module, module_meta)
                if module_is_best:
                    save_weights(self.path / f"{prefix}best.safetensors", module, module_meta)
            save_state(self.path / "last.state.pt", state)
        except OSError as exc:
            raise CheckpointError(f"could not write a checkpoint to {self.path} ({exc}); the "
                                  f"previous one is intact as prev.*; free space and resume "
                                  f"with --resume {self.path}") from None

    def keep_epoch(self, model: nn.Module, meta: dict[str, Any]) -> None:
        """Keep this epoch's weights as ``epochs/epoch_NNNN.safetensors`` (checksummed)."""
        save_weights(self.path / "epochs" / f"epoch_{meta['epoch']:04d}.safetensors", model,
                     meta)

    def kept_epochs(self) -> list[int]:
        """The epochs whose weights :meth:`keep_epoch` kept, in order."""
        files = self.path.glob("epochs/epoch_*.safetensors")
        return sorted(int(p.stem.split("_")[1]) for p in files)

    def newest_checkpoint(self):
        """``(state, weights, prefix)``: the newest matching (training state, weights) pair
        among ``last.*`` and ``prev.*``.

        Pairs are matched by (epoch, step) across both prefixes, so a crash between any two
        renames or writes of :meth:`save` still leaves a usable pair. A corrupt file (truncated,
        or failing its checksum) is skipped with a warning."""
        states, weights, problems = {}, {}, []
        for prefix in ("last", "prev"):
            try:
                state = load_state(self.path / f"{prefix}.state.pt")
                states.setdefault((state["epoch"], state.get("step", 0)), state)
            except CheckpointError as exc:
                problems.append(str(exc))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # format 1 is refused below
                    tensors, meta = read_weights(self.path / f"{prefix}.safetensors")
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            if meta.get("format", 1) < 2:
                raise CheckpointError(f"{self.path} was written by torchawp 0.1 (epochs counted "
                                      f"from 0, no checksums); resume it with that version or "
                                      f"start a new run")
            weights.setdefault((meta.get("epoch"), meta.get("step", 0)), (tensors, prefix))
        common = sorted(set(states) & set(weights), reverse=True)
        if not common:
            raise CheckpointError(f"no usable checkpoint in {self.path}: "
                                  + ("; ".join(problems) or "training state and weights are "
                                     "from different steps"))
        key = common[0]
        real = [p for p in problems if "not found" not in p]
        if real or key != max(states):
            reason = real[0] if real else "the newest checkpoint is incomplete"
            warnings.warn(f"{reason}; resuming from the checkpoint after epoch {key[0]}"
                          + (f", step {key[1]} of epoch {key[0] + 1}" if key[1] else ""),
                          stacklevel=2)
        tensors, prefix = weights[key]
        return states[key], tensors, prefix


def check_resumable(saved: dict, ours: dict, epochs_done: int) -> Optional[str]:
    """Whether config ``ours`` may continue the run saved with config ``saved`` (both plain
    data, defaults filled) after ``epochs_done`` epochs.

    A resumed run is the same experiment: every field must match except the runtime ones
    (:data:`RUNTIME_FIELDS`) and ``epochs``, which may grow beyond what is done (not under a
    cosine schedule, whose length is part of every epoch's learning rate). Raises
    :class:`ConfigError` naming the first difference; returns a one-line notice when the run is
    extended, else None."""
    for key in sorted(set(saved) | set(ours)):
        if key in RUNTIME_FIELDS or key == "epochs":
            continue
        if saved.get(key) != ours.get(key):
            difference = _first_difference(key, saved.get(key), ours.get(key))
            raise ConfigError(f"--resume continues the run as it was configured, and "
                              f"{difference}; drop that option to resume, or start a new run "
                              f"in another --out-dir")
    before, after = saved.get("epochs"), ours.get("epochs")
    if after == before:
        return None
    if after <= epochs_done:
        raise ConfigError(f"epochs {after} is not beyond the {epochs_done} epochs this run has "
                          f"done; resume with --epochs greater than {epochs_done} (or without "
                          f"--epochs to finish its {before})")
    if (saved.get("optim") or {}).get("schedule") == "cosine":
        raise ConfigError(f"epochs cannot change from {before} to {after} on resume: the cosine "
                          f"learning-rate schedule anneals over the run's {before} epochs; "
                          f"start a new run with --epochs {after}")
    return f"extending the run from {before} to {after} epochs (config.yaml updated)"


def _first_difference(key: str, saved: Any, ours: Any) -> str:
    if isinstance(saved, dict) and isinstance(ours, dict):
        for sub in sorted(set(saved) | set(ours)):
            if saved.get(sub) != ours.get(sub):
                return _first_difference(f"{key}.{sub}", saved.get(sub), ours.get(sub))
    return f"{key} differs from the run's config.yaml ({saved!r} there, {ours!r} now)"
