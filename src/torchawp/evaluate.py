"""Clean and robust accuracy of a model on a dataset (eval mode, per-example worst case)."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import Attack
from .checkpoint import atomic_write, tensor_digest
from .data import ArrayDataset, to_float
from .perturb import model_mode
from .runtime import all_reduce_sum

# The evaluation protocol shared by the per-epoch evaluation of a training run and by
# ``torchawp eval``: the same batches and the same attack seed give the same numbers.
EVAL_BATCH_SIZE = 256
EVAL_SEED = 0


@torch.no_grad()
def evaluate(model: nn.Module, data, attacks: Sequence[tuple[str, Attack]] = (),
             batch_size: int = EVAL_BATCH_SIZE, max_examples: Optional[int] = None,
             generator: Optional[torch.Generator] = None, device=None, rank: int = 0,
             world_size: int = 1, clean: bool = True,
             should_stop: Optional[Callable[[], bool]] = None) -> Optional[dict[str, float]]:
    """Accuracy and mean loss, clean and under each attack, in eval mode.

    ``data`` is an :class:`ArrayDataset` or a pair ``(x, y)`` with ``x`` in [0, 1]. Returns
    ``{"clean_acc", "clean_loss", "<name>_acc", "<name>_loss", ..., "robust_acc", "n"}`` where
    ``robust_acc`` counts an example as robust only if it is classified correctly clean and
    under every attack (the per-example worst case). Accuracies are fractions in [0, 1]. The
    first ``max_examples`` images are used; under DDP each rank takes a shard and sums are
    all-reduced. Counts stay on the device until the end (one host sync). ``clean=False``
    skips the clean pass. ``should_stop`` is asked after every batch; when it says yes the
    evaluation is abandoned and None returned. The model's modes are restored afterwards.
    """
    images, labels = (data.images, data.labels) if isinstance(data, ArrayDataset) else data
    device = device or next(model.parameters()).device
    n = len(labels) if max_examples is None else min(max_examples, len(labels))
    names = (["clean"] if clean else []) + [name for name, _ in attacks]
    attack_of = dict(attacks)
    sums = torch.zeros(2 * len(names) + 2, dtype=torch.float64, device=device)
    index = torch.arange(rank, n, world_size)
    with model_mode(model, "eval"):
        for start in range(0, len(index), batch_size):
            idx = index[start:start + batch_size].to(images.device)
            x = to_float(images[idx]).to(device)
            y = labels[idx].to(device)
            robust = torch.ones_like(y, dtype=torch.bool)
            for i, name in enumerate(names):
                x_in = x if name == "clean" else attack_of[name](model, x, y, generator)
                logits = model(x_in).float()
                correct = logits.argmax(1) == y
                robust &= correct
                sums[2 * i] += correct.sum()
                sums[2 * i + 1] += F.cross_entropy(logits, y, reduction="sum")
            sums[-2] += robust.sum()
            sums[-1] += len(y)
            if should_stop is not None and should_stop():
                return None
    values = all_reduce_sum(sums).tolist()
    total = max(values[-1], 1.0)
    out = {}
    for i, name in enumerate(names):
        out[f"{name}_acc"] = values[2 * i] / total
        out[f"{name}_loss"] = values[2 * i + 1] / total
    out["robust_acc"] = values[-2] / total
    out["n"] = int(values[-1])
    return out



# ---------------------------------------------------------------------------- the full suite
ATTACK_NAMES = "fgsm, pgdK (CE, e.g. pgd20, pgd100), cwK (CW-inf margin), autoattack"
DEFAULT_ATTACKS = ("fgsm", "pgd20", "pgd100", "cw20")


def build_attack(name: str, norm: str, eps: float, step_size: float, restarts: int = 1,
                 seed: int = 0) -> Attack:
    """An evaluation attack by name (eval mode, on the given threat model): ``fgsm``,
    ``pgd<K>`` (PGD-K on CE), ``cw<K>`` (CW-inf: PGD-K on the margin loss) or ``autoattack``
    (standard AutoAttack from the reference package)."""
    from .attacks import FGSM, PGD, AutoAttack
    from .errors import ConfigError

    if name == "fgsm":
        return FGSM(norm, eps)
    if name == "autoattack":
        return AutoAttack(norm, eps, seed=seed)
    for prefix, loss in (("pgd", "ce"), ("cw", "margin")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return PGD(norm, eps, step_size, int(name[len(prefix):]), restarts=restarts,
                       loss=loss)
    raise ConfigError(f"unknown attack {name!r}; use {ATTACK_NAMES}")


@torch.no_grad()
def correct_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Optional[Attack],
                 batch_size: int = 256, generator: Optional[torch.Generator] = None,
                 state_file=None) -> torch.Tensor:
    """Per-example correctness (bool, on CPU) under ``attack`` (None: clean), eval mode.

    With ``state_file`` the mask is saved after every batch and a rerun continues where an
    interrupted one stopped (AutoAttack on a large model takes hours).
    """
    mask = torch.zeros(len(y), dtype=torch.bool)
    done = 0
    if state_file is not None and state_file.is_file():
        saved = torch.load(state_file, weights_only=True)
        if len(saved["mask"]) == len(y):
            mask, done = saved["mask"], int(saved["done"])
    device = next(model.parameters()).device
    with model_mode(model, "eval"):
        for start in range(done, len(y), batch_size):
            xb = x[start:start + batch_size].to(device)
            yb = y[start:start + batch_size].to(device)
            if attack is not None:
                xb = attack(model, xb, yb, generator)
            mask[start:start + len(yb)] = (model(xb).argmax(1) == yb).cpu()
            if state_file is not None:
                state = {"mask": mask, "done": start + len(yb)}
                atomic_write(state_file, lambda tmp: torch.save(state, tmp))
    return mask


def _open_state(state_dir: Path, fingerprint: dict) -> None:
    """Make ``state_dir`` hold results for ``fingerprint`` only (the checkpoint's and the data's
    content hashes): results saved for anything else are discarded, with a notice."""
    state_dir.mkdir(parents=True, exist_ok=True)
    stamp = state_dir / "fingerprint.json"
    saved = json.loads(stamp.read_text()) if stamp.is_file() else None
    if saved != fingerprint:
        stale = list(state_dir.glob("*.pt"))
        if stale:
            warnings.warn(f"{state_dir} held {len(stale)} saved results for another checkpoint or "
                          f"other test data; discarded them and evaluating afresh", stacklevel=3)
        for path in stale:
            path.unlink()
        text = json.dumps(fingerprint)
        atomic_write(stamp, lambda tmp: tmp.write_text(text))


def run_suite(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              attacks: Sequence[str] = DEFAULT_ATTACKS, norm: str = "linf",
              eps: float = 8 / 255, step_size: float = 2 / 255, restarts: int = 1,
              seed: int = EVAL_SEED, batch_size: int = EVAL_BATCH_SIZE, state_dir=None,
              fingerprint: Optional[dict] = None,
              log: Optional[Callable[[str], None]] = None) -> dict:
    """Clean accuracy and accuracy under each named attack, plus the per-example worst case
    over all attacks (the headline robust accuracy). Fractions in [0, 1].

    With ``state_dir`` every attack's per-example results are saved after each batch and an
    interrupted run continues where it stopped; they are keyed by the attack's settings, and
    the directory by ``fingerprint`` (default: hashes of the model's weights and of ``x, y``),
    so results of another checkpoint or other data are never reused. ``log`` receives one
    line per attack."""
    device = next(model.parameters()).device
    if state_dir is not None:
        state_dir = Path(state_dir)
        if fingerprint is None:
            fingerprint = {"weights_sha256": tensor_digest(model.state_dict())}
        fingerprint = dict(fingerprint, data_sha256=tensor_digest({"x": x, "y": y}))
        _open_state(state_dir, fingerprint)
    masks = {}
    for name in ("clean",) + tuple(attacks):
        attack = None if name == "clean" else build_attack(name, norm, eps, step_size,
                                                           restarts, seed)
        state_file = None
        if state_dir is not None:
            key = (f"{name}_{norm}_{eps:.6g}_{step_size:.6g}_r{restarts}_s{seed}_n{len(y)}"
                   f"_b{batch_size}")
            state_file = state_dir / f"{key}.pt"
        gen = torch.Generator(device).manual_seed(seed)
        start = time.perf_counter()
        masks[name] = correct_mask(model, x, y, attack, batch_size, gen, state_file)
        if log is not None:
            log(f"{name:>10}: {100 * masks[name].float().mean().item():6.2f}% of {len(y)} "
                f"({time.perf_counter() - start:.1f} s)")
    robust = torch.stack([masks[n] for n in masks]).all(0)
    fraction = lambda m: int(m.sum()) / max(len(m), 1)  # noqa: E731  (as evaluate() counts)
    return {"n": len(y), "accuracy": {n: fraction(m) for n, m in masks.items()},
            "robust_acc": fraction(robust), "masks": masks}


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("torchawp", "torch", "numpy", "pyautoattack"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def load_for_eval(path, which: str = "best", device: str = "auto",
                  data_dir: Optional[str] = None, eps: Optional[float] = None,
                  norm: Optional[str] = None):
    """A checkpoint's model (eval mode), its dataset's splits as in training, and its threat
    model ``{"norm", "eps", "step_size"}`` (``eps``/``norm`` override; the PGD step scales with
    eps)."""
    from .checkpoint import load
    from .data import load_splits
    from .runtime import resolve_device

    model = load(path, which=which, device=resolve_device(device))
    cfg = model.checkpoint_meta.get("config") or {}
    if cfg.get("channels_last"):  # as trained: NHWC weights make every convolution NHWC
        model.to(memory_format=torch.channels_last)
    data_cfg, attack_cfg = cfg.get("data", {}), cfg.get("attack", {})
    train_eps = attack_cfg.get("eps", 8 / 255)
    eps = train_eps if eps is None else eps
    step_size = attack_cfg.get("step_size", train_eps / 4) * (eps / train_eps if train_eps else 1)
    splits = load_splits(data_cfg.get("name", "digits"), data_dir or data_cfg.get("data_dir"),
                         data_cfg.get("val_size", 0), data_cfg.get("split_seed", 0),
                         data_cfg.get("train_subset"))
    threat = {"norm": norm or attack_cfg.get("norm", "linf"), "eps": eps, "step_size": step_size}
    return model, splits, threat


def evaluate_checkpoint(path, which: str = "best", attacks: Sequence[str] = DEFAULT_ATTACKS,
                        n_examples: Optional[int] = None, device: str = "auto",
                        data_dir: Optional[str] = None, batch_size: int = EVAL_BATCH_SIZE,
                        restarts: int = 1, eps: Optional[float] = None,
                        norm: Optional[str] = None, seed: int = EVAL_SEED, checks: bool = True,
                        state_dir=None, log: Optional[Callable[[str], None]] = None) -> dict:
    """Evaluate a saved checkpoint the way the field reports it.

    Test set of the checkpoint's dataset (first ``n_examples``); the threat model of its
    training config unless ``eps``/``norm`` are given (the step size scales with eps); clean
    accuracy, each attack, the per-example worst case, train robust accuracy (PGD-20 at w, eval
    mode, on the training images the run measured per epoch, ``eval.train_examples``) and the
    robust generalization gap, and the gradient-masking sanity checks. With the defaults the
    PGD-20 numbers are those the training run logged for the same checkpoint. ``state_dir``
    makes it resumable; saved results are tied to the checkpoint's SHA-256 and the data's.
    """
    from .checkpoint import resolve_checkpoint, tensor_digest

    model, splits, tm = load_for_eval(path, which, device, data_dir, eps, norm)
    norm, eps, step_size = tm["norm"], tm["eps"], tm["step_size"]
    meta = model.checkpoint_meta
    x, y = splits.test.tensors(0, n_examples)
    weights_sha = meta.get("sha256") or tensor_digest(model.state_dict())
    say = (lambda text: log(f"{which}: {text}")) if log is not None else None
    suite = run_suite(model, x, y, attacks, norm, eps, step_size, restarts, seed, batch_size,
                      state_dir, {"weights_sha256": weights_sha}, log=say)
    train_examples = ((meta.get("config") or {}).get("eval") or {}).get("train_examples")
    xt, yt = splits.train.tensors(0, train_examples or len(y))
    train = run_suite(model, xt, yt, ("pgd20",), norm, eps, step_size, restarts, seed,
                      batch_size, None)
    white_box = torch.stack([m for n, m in suite["masks"].items()
                             if n not in ("clean", "autoattack")]).all(0)
    out = {
        "checkpoint": str(resolve_checkpoint(path, which)), "which": which,
        "epoch": meta.get("epoch"), "weights_sha256": weights_sha,
        "dataset": splits.info.name, "n": suite["n"], "n_train": len(yt),
        "threat_model": {"norm": norm, "eps": eps, "step_size": step_size,
                         "restarts": restarts, "seed": seed},
        "accuracy": suite["accuracy"], "robust_acc": suite["robust_acc"],
        "train_robust_acc": train["accuracy"]["pgd20"],
        "test_pgd20_acc": suite["accuracy"].get("pgd20"),
        "versions": _versions(),
    }
    if out["test_pgd20_acc"] is not None:
        out["gap"] = out["train_robust_acc"] - out["test_pgd20_acc"]
    if checks:
        from .checks import sanity_checks
        if say is not None:
            say("sanity checks")
        out["checks"] = sanity_checks(model, x, y, norm, eps, step_size, white_box)
    else:
        out["checks"] = []
    return out


def format_table(results: Sequence[dict]) -> str:
    """Terminal table: one row per checkpoint, one column per attack, worst case, gap."""
    names = list(results[0]["accuracy"])
    cols = names + ["robust", "gap"]
    lines = [f"{'checkpoint':<16}" + "".join(f"{c:>11}" for c in cols)]
    for r in results:
        label = f"{r['which']} (epoch {r['epoch']})" if r.get("epoch") is not None else r["which"]
        values = [r["accuracy"][n] for n in names] + [r["robust_acc"], r.get("gap")]
        lines.append(f"{label:<16}" + "".join(
            f"{'-' if v is None else f'{100 * v:.2f}':>11}" for v in values))
    return "\n".join(lines)


def write_report(results: Sequence[dict], out_dir) -> tuple:
    """``eval.json`` (every number, settings, seeds, versions) and ``eval.md`` in ``out_dir``."""
    from .checks import EXPLANATIONS

    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "eval.json", out_dir / "eval.md"
    text = json.dumps(list(results), indent=2)
    atomic_write(json_path, lambda tmp: tmp.write_text(text))
    tm = results[0]["threat_model"]
    md = [f"# Robustness evaluation: {results[0]['dataset']}", "",
          f"Test set, {results[0]['n']} images; {tm['norm']} eps {tm['eps']:.4g}, PGD step "
          f"{tm['step_size']:.4g}, {tm['restarts']} restart(s), seed {tm['seed']}. Accuracy in %; "
          "*robust* is the per-example worst case over every attack; *gap* is train PGD-20 "
          f"accuracy (first {results[0].get('n_train', results[0]['n'])} training images) minus "
          "test PGD-20 accuracy (both at w, eval mode).", ""]
    names = list(results[0]["accuracy"])
    md.append("| checkpoint | " + " | ".join(names) + " | robust | gap |")
    md.append("|---" * (len(names) + 3) + "|")
    for r in results:
        gap = f"{100 * r['gap']:.2f}" if r.get("gap") is not None else "-"
        epoch = f" (epoch {r['epoch']})" if r.get("epoch") is not None else ""
        md.append(f"| {r['which']}{epoch} | "
                  + " | ".join(f"{100 * r['accuracy'][n]:.2f}" for n in names)
                  + f" | {100 * r['robust_acc']:.2f} | {gap} |")
    for r in results:
        if r["checks"]:
            md += ["", f"## Sanity checks ({r['which']})", "",
                   "| check | status | detail | what a warning means |", "|---|---|---|---|"]
            md += [f"| {c['name']} | {c['status']} | {c['detail']} | "
                   f"{EXPLANATIONS.get(c['name'], '')} |" for c in r["checks"]]
    md += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in results[0]["versions"].items())]
    md_text = "\n".join(md) + "\n"
    atomic_write(md_path, lambda tmp: tmp.write_text(md_text))
    return json_path, md_path
