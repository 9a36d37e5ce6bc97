"""Checkpoints: weights in safetensors, the rest loaded with ``weights_only=True``.

A run directory holds ``best.safetensors`` and ``last.safetensors`` (weights plus a JSON header:
the model's spec, the epoch, the config, the epoch's metrics and a SHA-256 of the tensors) and
``last.state.pt`` (optimizer, scheduler, RNG states: tensors and plain containers only, so loading
it runs no code; also checksummed). Every file is written to a temporary name, fsynced and
renamed, so a crash leaves the previous checkpoint intact; a file whose bytes changed after it
was written (a bit flip, a bad copy) fails its checksum at load instead of being used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..models import model_from_spec
from ..runtime import AutocastModel

FORMAT = 2  # 2: SHA-256 of the tensors in the header; epochs counted from 1


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP, ``torch.compile`` and autocast wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, AutocastModel)):
            model = model.module
        else:
            return model


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp_path)``, fsync, then rename over ``path`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary file keeps the suffix: writers such as torch.export.save warn otherwise
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp creates 0600; give the file the permissions every other file of the run gets
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_weights(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Weights (parameters and persistent buffers) to safetensors, ``meta`` as JSON header."""
    model = unwrap(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = dict(meta, format=FORMAT, model_spec=getattr(model, "spec", None) or None,
                  sha256=tensor_digest(tensors))
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp),
                                             metadata={"torchawp": json.dumps(header)}))


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of a ``.safetensors`` checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(header.get("torchawp", "{}"))
    except Exception as exc:  # truncated or corrupt file, or not safetensors at all
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                              ) from None
    expected = meta.get("sha256")
    if expected is None:
        if meta:  # torchawp's own file from before checksums (format 1)
            warnings.warn(f"checkpoint {path} has no checksum (written by torchawp 0.1); its "
                          f"integrity cannot be verified", stacklevel=2)
            if meta.get("epoch") is not None and meta.get("format", 1) < 2:
                meta["epoch"] += 1  # format 1 counted epochs from 0
    elif tensor_digest(tensors) != expected:
        raise CheckpointError(f"checkpoint {path} fails its SHA-256 check: its tensors changed "
                              f"after it was written (disk or copy corruption, or an edit); "
                              f"use another checkpoint or restore this one from a copy")
    return tensors, meta


def same_weights(a: Path, b: Path) -> bool:
    """Whether two checkpoints hold identical tensors (e.g. ``best`` when the last epoch was
    the best one)."""
    (ta, _), (tb, _) = read_weights(a), read_weights(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def load_state_dict_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights, turning a shape or key mismatch into one clear line."""
    model = unwrap(model)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        what = (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} "
                f"wrong-shape tensors" + (f" (e.g. {wrong[0]}: checkpoint "
                                          f"{tuple(state[wrong[0]].shape)}, model "
                                          f"{tuple(own[wrong[0]].shape)})" if wrong else ""))
        raise CheckpointError(f"{source} does not fit this model ({what}); it was saved from "
                              f"another architecture or number of classes")
    model.load_state_dict(state)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Training state (tensors and plain containers only) with ``torch.save``, atomically,
    wrapped with a SHA-256 of its serialised bytes (``torch.load`` checks no checksum)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    wrapped = {"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
               "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    atomic_write(path, lambda tmp: torch.save(wrapped, tmp))


def safe_torch_load(source, path: Path, what: str = "training state",
                    fix: str = "resume from another run") -> Any:
    """``torch.load(source, weights_only=True)`` on the CPU: a pickle that would run code, or a
    corrupt file, is one :class:`CheckpointError` naming ``path`` (``what`` it is, the ``fix``)."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refusing to load {path}: it holds objects beyond tensors and "
                              f"plain containers, and unpickling them could run code "
                              f"({str(exc).splitlines()[0][:120]})") from None
    except Exception as exc:
        raise CheckpointError(f"{what} {path} is corrupt, truncated or not a torch.save file "
                              f"({type(exc).__name__}); {fix}") from None


def load_state(path: Path) -> dict[str, Any]:
    """Load training state with ``weights_only=True`` (a pickle that would run code is refused)
    and verify its checksum."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training state {path} not found")
    state = safe_torch_load(path, path)
    if not (isinstance(state, dict) and "payload" in state and "sha256" in state):
        return state  # format 1: no checksum
    payload = state["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != state["sha256"]:
        raise CheckpointError(f"training state {path} fails its SHA-256 check (disk or copy "
                              f"corruption); resume from the previous checkpoint or another run")
    return safe_torch_load(io.BytesIO(payload), path)


# the checkpoints a run directory holds (the last two with a weight average, --ema)
CHECKPOINTS = ("best", "last", "ema_best", "ema_last")
# what --which selects in every command: one checkpoint, or all: every one the run holds;
# both: best and last; ema: ema_best and ema_last
WHICH = Literal["all", "both", "best", "last", "ema", "ema_best", "ema_last"]


def whiches(path: str | Path, which: str) -> list[str]:
    """The checkpoints ``--which`` selects in a run directory, in :data:`CHECKPOINTS` order
    (a checkpoint file is one checkpoint, whatever ``which`` says)."""
    path = Path(path)
    if not path.is_dir():
        return [which if which in CHECKPOINTS else "best"]
    if which == "all":
        return [w for w in CHECKPOINTS if (path / f"{w}.safetensors").is_file()] or ["best"]
    return {"both": ["best", "last"], "ema": ["ema_best", "ema_last"]}.get(which, [which])


def one_checkpoint(path: str | Path, which: str, command: str) -> str:
    """The one checkpoint ``--which`` selects, for a command that reads one (``export``,
    ``backdoor``, ``concepts``, ``transfer``); a selection of several is one line."""
    selected = whiches(path, which)
    if len(selected) != 1:
        raise ConfigError(f"--which {which} selects {' and '.join(selected)}; {command} reads "
                          f"one checkpoint: pass --which {selected[0]} (or another)")
    return selected[0]


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A run directory (-> its ``best``, ``last``, ``ema_best`` (also ``ema``) or ``ema_last``
    weights, or ``epochN``: the weights kept after epoch N with ``keep_checkpoints``) or a
    ``.safetensors`` file."""
    path = Path(path)
    if path.is_dir():
        which = "ema_best" if which == "ema" else which
        name = (f"epochs/epoch_{int(which[5:]):04d}" if which.startswith("epoch")
                and which[5:].isdigit() else which)
        candidate = path / f"{name}.safetensors"
        if not candidate.is_file() and which.startswith("ema") and (path / "best.safetensors"
                                                                      ).is_file():
            raise CheckpointError(f"{path} has no {which}.safetensors: the run kept no weight "
                                  f"average; train with --ema DECAY (e.g. 0.995) to keep one")
        if not candidate.is_file():
            raise CheckpointError(f"{path} has no {which}.safetensors: not a torchawp run "
                                  f"directory, or the run has not finished an epoch")
        return candidate
    if path.suffix in (".pt", ".pth", ".pkl", ".ckpt"):
        raise CheckpointError(f"{path} is a pickle; torchawp loads weights from .safetensors "
                              f"only (convert with safetensors.torch.save_file)")
    return path


def load(path: str | Path, which: str = "best", device: str | torch.device = "cpu",
         model: Optional[nn.Module] = None) -> nn.Module:
    """Load a trained model in eval mode: ``torchawp.load("runs/my_run")``.

    Args:
        path: a run directory or a ``.safetensors`` checkpoint.
        which: ``"best"`` or ``"last"`` when ``path`` is a run directory.
        device: where to put the model.
        model: an instance to load into (needed for models built outside the registry).
    """
    file = resolve_checkpoint(path, which)
    state, meta = read_weights(file)
    if model is None:
        spec = meta.get("model_spec")
        if not spec:
            raise CheckpointError(f"{file} does not say which model it holds; pass model= "
                                  f"(an instance of the architecture) to load it into")
        model = model_from_spec(spec)
    load_state_dict_into(model, state, str(file))
    model.checkpoint_meta = meta
    return model.to(device).eval()
