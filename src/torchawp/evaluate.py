"""Clean and robust accuracy of a model on a dataset (eval mode, per-example worst case)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import Attack
from .data import ArrayDataset, to_float
from .runtime import all_reduce_sum


@torch.no_grad()
def evaluate(model: nn.Module, data, attacks: Sequence[tuple[str, Attack]] = (),
             batch_size: int = 256, max_examples: Optional[int] = None,
             generator: Optional[torch.Generator] = None, device=None, rank: int = 0,
             world_size: int = 1, clean: bool = True) -> dict[str, float]:
    """Accuracy and mean loss, clean and under each attack, in eval mode.

    ``data`` is an :class:`ArrayDataset` or a pair ``(x, y)`` with ``x`` in [0, 1]. Returns
    ``{"clean_acc", "clean_loss", "<name>_acc", "<name>_loss", ..., "robust_acc", "n"}`` where
    ``robust_acc`` counts an example as robust only if it is classified correctly clean and
    under every attack (the per-example worst case). Accuracies are fractions in [0, 1]. The
    first ``max_examples`` images are used; under DDP each rank takes a shard and sums are
    all-reduced. Counts stay on the device until the end (one host sync). ``clean=False``
    skips the clean pass.
    """
    images, labels = (data.images, data.labels) if isinstance(data, ArrayDataset) else data
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    n = len(labels) if max_examples is None else min(max_examples, len(labels))
    names = (["clean"] if clean else []) + [name for name, _ in attacks]
    attack_of = dict(attacks)
    sums = torch.zeros(2 * len(names) + 2, dtype=torch.float64, device=device)
    index = torch.arange(rank, n, world_size)
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
    model.train(was_training)
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
    from .checkpoint import atomic_write

    model.eval()
    mask = torch.zeros(len(y), dtype=torch.bool)
    done = 0
    if state_file is not None and state_file.is_file():
        saved = torch.load(state_file, weights_only=True)
        if len(saved["mask"]) == len(y):
            mask, done = saved["mask"], int(saved["done"])
    device = next(model.parameters()).device
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


def run_suite(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              attacks: Sequence[str] = DEFAULT_ATTACKS, norm: str = "linf",
              eps: float = 8 / 255, step_size: float = 2 / 255, restarts: int = 1,
              seed: int = 0, batch_size: int = 256, state_dir=None) -> dict:
    """Clean accuracy and accuracy under each named attack, plus the per-example worst case
    over all attacks (the headline robust accuracy). Fractions in [0, 1]."""
    from pathlib import Path

    device = next(model.parameters()).device
    masks = {}
    for name in ("clean",) + tuple(attacks):
        attack = None if name == "clean" else build_attack(name, norm, eps, step_size,
                                                           restarts, seed)
        state_file = None
        if state_dir is not None:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
            key = f"{name}_{norm}_{eps:.6g}_{step_size:.6g}_r{restarts}_s{seed}_n{len(y)}"
            state_file = Path(state_dir) / f"{key}.pt"
        gen = torch.Generator(device).manual_seed(seed)
        masks[name] = correct_mask(model, x, y, attack, batch_size, gen, state_file)
    robust = torch.stack([masks[n] for n in masks]).all(0)
    return {"n": len(y), "accuracy": {n: m.float().mean().item() for n, m in masks.items()},
            "robust_acc": robust.float().mean().item(), "masks": masks}


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
                        data_dir: Optional[str] = None, batch_size: int = 256,
                        restarts: int = 1, eps: Optional[float] = None,
                        norm: Optional[str] = None, seed: int = 0, checks: bool = True,
                        state_dir=None) -> dict:
    """Evaluate a saved checkpoint the way the field reports it.

    Test set of the checkpoint's dataset (first ``n_examples``); the threat model of its
    training config unless ``eps``/``norm`` are given (the step size scales with eps); clean
    accuracy, each attack, the per-example worst case, train robust accuracy (PGD-20 at w, eval
    mode, on as many training images) and the robust generalization gap, and the
    gradient-masking sanity checks. ``state_dir`` makes it resumable.
    """
    from .checkpoint import resolve_checkpoint

    model, splits, tm = load_for_eval(path, which, device, data_dir, eps, norm)
    norm, eps, step_size = tm["norm"], tm["eps"], tm["step_size"]
    meta = model.checkpoint_meta
    x, y = splits.test.tensors(0, n_examples)
    suite = run_suite(model, x, y, attacks, norm, eps, step_size, restarts, seed, batch_size,
                      state_dir)
    xt, yt = splits.train.tensors(0, len(y))
    train = run_suite(model, xt, yt, ("pgd20",), norm, eps, step_size, restarts, seed,
                      batch_size, None)
    white_box = torch.stack([m for n, m in suite["masks"].items()
                             if n not in ("clean", "autoattack")]).all(0)
    out = {
        "checkpoint": str(resolve_checkpoint(path, which)), "which": which,
        "epoch": meta.get("epoch"), "dataset": splits.info.name, "n": suite["n"],
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
        label = f"{r['which']} (epoch {r['epoch'] + 1})" if r.get("epoch") is not None else r["which"]
        values = [r["accuracy"][n] for n in names] + [r["robust_acc"], r.get("gap")]
        lines.append(f"{label:<16}" + "".join(
            f"{'-' if v is None else f'{100 * v:.2f}':>11}" for v in values))
    return "\n".join(lines)


def write_report(results: Sequence[dict], out_dir) -> tuple:
    """``eval.json`` (every number, settings, seeds, versions) and ``eval.md`` in ``out_dir``."""
    import json
    from pathlib import Path

    from .checkpoint import atomic_write

    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "eval.json", out_dir / "eval.md"
    text = json.dumps(list(results), indent=2)
    atomic_write(json_path, lambda tmp: tmp.write_text(text))
    tm = results[0]["threat_model"]
    md = [f"# Robustness evaluation: {results[0]['dataset']}", "",
          f"Test set, {results[0]['n']} images; {tm['norm']} eps {tm['eps']:.4g}, PGD step "
          f"{tm['step_size']:.4g}, {tm['restarts']} restart(s), seed {tm['seed']}. Accuracy in %; "
          "*robust* is the per-example worst case over every attack; *gap* is train PGD-20 "
          "accuracy minus test PGD-20 accuracy (both at w, eval mode).", ""]
    names = list(results[0]["accuracy"])
    md.append("| checkpoint | " + " | ".join(names) + " | robust | gap |")
    md.append("|---" * (len(names) + 3) + "|")
    for r in results:
        gap = f"{100 * r['gap']:.2f}" if r.get("gap") is not None else "-"
        md.append(f"| {r['which']} (epoch {(r['epoch'] or 0) + 1}) | "
                  + " | ".join(f"{100 * r['accuracy'][n]:.2f}" for n in names)
                  + f" | {100 * r['robust_acc']:.2f} | {gap} |")
    for r in results:
        if r["checks"]:
            md += ["", f"## Sanity checks ({r['which']})", "", "| check | status | detail |",
                   "|---|---|---|"]
            md += [f"| [{c['name']}](docs/checks.md#{c['name']}) | {c['status']} | {c['detail']} |"
                   for c in r["checks"]]
    md += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in results[0]["versions"].items())]
    md_text = "\n".join(md) + "\n"
    atomic_write(md_path, lambda tmp: tmp.write_text(md_text))
    return json_path, md_path
