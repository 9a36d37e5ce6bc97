"""The checkpoint suite: a saved checkpoint evaluated the way the field reports it (clean,
FGSM, PGD-K, CW-K, AutoAttack, the per-example worst case, train robust accuracy and the gap,
gradient-masking checks), resumable, with results tied to the checkpoint's content."""

from __future__ import annotations

import importlib.metadata
import json
import time
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..attacks import Threat, build_attack
from ..errors import ConfigError
from ..io.checkpoint import (atomic_write, resolve_checkpoint, same_weights, tensor_digest,
                             whiches)
from ..io.paths import beside, exclusive_lock
from ..studies.backdoor import backdoor_metrics, check_target
from .accuracy import EVAL_BATCH_SIZE, EVAL_SEED, correct_mask
from .checks import sanity_checks
from .opened import Opened, open_run
from .report import write_report

DEFAULT_ATTACKS = ("fgsm", "pgd20", "pgd100", "cw20")


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


# Run on every example even in the cascade: PGD-20 is the training table's number and the gap's;
# AutoAttack is the number the field reports, cascades internally already (a subset saved 3% of
# its time on digits) and draws its random starts per call, so a subset would change its result.
ON_EVERY_EXAMPLE = ("pgd20", "autoattack", "autoattack-plus", "autoattack-rand")


def _is_autoattack(name: str) -> bool:
    return name.startswith("autoattack")


def _cost(name: str, restarts: int) -> int:
    """Order of the cascade: cheapest first (steps x restarts)."""
    steps = "".join(c for c in name if c.isdigit())
    return (int(steps) if steps else 1) * restarts


def run_suite(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              attacks: Sequence[str] = DEFAULT_ATTACKS, threat: Threat = Threat(),
              restarts: int = 1, seed: int = EVAL_SEED, batch_size: int = EVAL_BATCH_SIZE,
              state_dir=None, fingerprint: Optional[dict] = None,
              log: Optional[Callable[[str], None]] = None, per_attack: bool = False) -> dict:
    """Clean accuracy and the per-example worst case over all named attacks (the headline
    robust accuracy), as a cascade: PGD-20 and AutoAttack, when asked for, run on every
    example (``ON_EVERY_EXAMPLE``); every other attack runs, cheapest first, only on the
    examples still correct under the white-box attacks before it, as AutoAttack does
    internally. Each example gets the random start it gets in a full run, so the worst case
    is the full suite's, example by example. ``per_attack`` runs every attack on every example
    instead and gives each one's accuracy. Fractions in [0, 1]; ``masks`` holds the per-example
    results of clean and every attack that ran on every example, ``robust`` the worst case,
    ``white_box_robust`` the worst case over all but AutoAttack.

    With ``state_dir`` every attack's per-example results are saved after each batch and an
    interrupted run continues where it stopped; they are keyed by the attack's settings (and
    in the cascade by the attacks before it), and the directory by ``fingerprint`` (default:
    hashes of the model's weights and of ``x, y``), so results of another checkpoint or other
    data are never reused. ``log`` receives one line per attack."""
    device = next(model.parameters()).device
    if state_dir is not None:
        state_dir = Path(state_dir)
        if fingerprint is None:
            fingerprint = {"weights_sha256": tensor_digest(model.state_dict())}
        fingerprint = dict(fingerprint, data_sha256=tensor_digest({"x": x, "y": y}))
        _open_state(state_dir, fingerprint)
    fraction = lambda m: int(m.sum()) / max(len(m), 1)  # noqa: E731  (as evaluate() counts)

    def measure(name: str, only=None, after=()) -> tuple[torch.Tensor, float]:
        attack = None if name == "clean" else build_attack(name, threat, restarts, seed)
        state_file = None
        if state_dir is not None:
            key = (f"{name}_{threat.norm}_{threat.eps:.6g}_{threat.step_size:.6g}_r{restarts}"
                   f"_s{seed}_n{len(y)}_b{batch_size}"
                   + (f"_after-{'-'.join(after)}" if only is not None else ""))
            state_file = state_dir / f"{key}.pt"
        gen = torch.Generator(device).manual_seed(seed)
        start = time.perf_counter()
        mask = correct_mask(model, x, y, attack, batch_size, gen, state_file, only)
        seconds = time.perf_counter() - start
        if log is not None:
            of = len(y) if only is None else int(only.sum())
            log(f"{name:>10}: {100 * fraction(mask):6.2f}% of {len(y)}" +
                ("" if only is None else f" (attacked the {of} still robust)") +
                f" ({seconds:.1f} s)")
        return mask, seconds

    masks = {"clean": measure("clean")[0]}
    everywhere = list(attacks) if per_attack else [n for n in attacks if n in ON_EVERY_EXAMPLE]
    for name in everywhere:
        if not _is_autoattack(name):  # last: the cascade must not skip what only it broke
            masks[name] = measure(name)[0]
    white_box = torch.stack(list(masks.values())).all(0)
    cascade, done = [], [n for n in everywhere if not _is_autoattack(n)]
    for name in sorted((n for n in attacks if n not in everywhere),
                       key=lambda n: _cost(n, restarts)):
        attacked = white_box.clone()
        mask, seconds = measure(name, attacked, done)
        white_box &= mask
        cascade.append({"attack": name, "attacked": int(attacked.sum()),
                        "broken": int(attacked.sum() - white_box.sum()), "seconds": seconds})
        done.append(name)
    robust = white_box.clone()
    for name in filter(_is_autoattack, everywhere):
        masks[name] = measure(name)[0]
        robust &= masks[name]
    order = ["clean", *attacks]
    return {"n": len(y), "accuracy": {n: fraction(masks[n]) for n in order if n in masks},
            "robust_acc": fraction(robust), "robust": robust, "white_box_robust": white_box,
            "masks": masks, "cascade": cascade}


def _versions() -> dict:
    out = {}
    for pkg in ("torchawp", "torch", "numpy", "pyautoattack"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def evaluate_checkpoint(path, which: str = "best", attacks: Sequence[str] = DEFAULT_ATTACKS,
                        n_examples: Optional[int] = None, device: str = "auto",
                        data_dir: Optional[str] = None, batch_size: int = EVAL_BATCH_SIZE,
                        restarts: int = 1, eps: Optional[float] = None,
                        norm: Optional[str] = None, seed: int = EVAL_SEED, checks: bool = True,
                        state_dir=None, log: Optional[Callable[[str], None]] = None,
                        backdoor: Optional[tuple] = None, per_attack: bool = False) -> dict:
    """Evaluate a saved checkpoint the way the field reports it.

    Test set of the checkpoint's dataset (first ``n_examples``); the threat model of its
    training config unless ``eps``/``norm`` are given (the step size scales with eps); clean
    accuracy, each attack, the per-example worst case, train robust accuracy (PGD-20 at w, eval
    mode, on the training images the run measured per epoch, ``eval.train_examples``) and the
    robust generalization gap, and the gradient-masking sanity checks. With the defaults the
    PGD-20 numbers are those the training run logged for the same checkpoint. ``state_dir``
    makes it resumable; saved results are tied to the checkpoint's SHA-256 and the data's.
    The worst case comes from a cascade (:func:`run_suite`); ``per_attack`` gives every
    attack's own accuracy too. ``backdoor`` = ``(trigger, target)`` adds the trigger's success
    rate on test images of other classes (:func:`torchawp.studies.backdoor.backdoor_metrics`).
    """
    return evaluate_opened(open_run(path, which, device, data_dir, eps, norm), attacks,
                           n_examples, batch_size, restarts, seed, checks, state_dir, log,
                           backdoor, per_attack)


def evaluate_model(model: nn.Module, splits, threat: Threat, source: str, which: str = "model",
                   *args, **kwargs) -> dict:
    """:func:`evaluate_checkpoint` for a model in hand (``model.checkpoint_meta`` optional:
    its epoch, SHA-256 and training config); the other arguments as
    :func:`evaluate_opened`'s."""
    return evaluate_opened(Opened(model, splits, threat, source, which,
                                  getattr(model, "checkpoint_meta", {})), *args, **kwargs)


def evaluate_opened(opened: Opened, attacks: Sequence[str] = DEFAULT_ATTACKS,
                    n_examples: Optional[int] = None, batch_size: int = EVAL_BATCH_SIZE,
                    restarts: int = 1, seed: int = EVAL_SEED, checks: bool = True,
                    state_dir=None, log: Optional[Callable[[str], None]] = None,
                    backdoor: Optional[tuple] = None, per_attack: bool = False) -> dict:
    """:func:`evaluate_checkpoint` for a model opened any way
    (:func:`~torchawp.evaluation.opened.open_model`)."""
    model, splits, threat = opened
    meta, source, which = opened.meta, opened.source, opened.which
    if backdoor is not None:  # before any attack runs
        check_target(backdoor[1], splits.info.num_classes, splits.info.name)
    x, y = splits.test.tensors(0, n_examples)
    if len(y) == 0:  # a robust accuracy of 0 images would print as 0.00%
        raise ConfigError(f"no test images to evaluate (n_examples {n_examples}, test set of "
                          f"{len(splits.test)}); pass n_examples >= 1")
    weights_sha = meta.get("sha256") or tensor_digest(model.state_dict())
    say = (lambda text: log(f"{which}: {text}")) if log is not None else None
    suite = run_suite(model, x, y, attacks, threat, restarts, seed, batch_size, state_dir,
                      {"weights_sha256": weights_sha}, log=say, per_attack=per_attack)
    train_examples = ((meta.get("config") or {}).get("eval") or {}).get("train_examples")
    xt, yt = splits.train.tensors(0, train_examples or len(y))
    train = run_suite(model, xt, yt, ("pgd20",), threat, restarts, seed, batch_size)
    white_box = suite["white_box_robust"]
    out = {
        "checkpoint": source, "which": which,
        "epoch": meta.get("epoch"), "weights_sha256": weights_sha,
        "dataset": splits.info.name, "n": suite["n"], "n_train": len(yt),
        "threat_model": {"norm": threat.norm, "eps": threat.eps,
                         "step_size": threat.step_size, "restarts": restarts, "seed": seed},
        "accuracy": suite["accuracy"], "robust_acc": suite["robust_acc"],
        "attacks": list(attacks), "cascade": suite["cascade"],
        "train_robust_acc": train["accuracy"]["pgd20"],
        "test_pgd20_acc": suite["accuracy"].get("pgd20"),
        "versions": _versions(),
    }
    if out["test_pgd20_acc"] is not None:
        out["gap"] = out["train_robust_acc"] - out["test_pgd20_acc"]
    if backdoor is not None:
        out["backdoor"] = dict(backdoor_metrics(model, x, y, *backdoor),
                               trigger=str(backdoor[0]), target=backdoor[1])
    if checks:
        if say is not None:
            say("sanity checks")
        out["checks"] = sanity_checks(model, x, y, threat, white_box)
    else:
        out["checks"] = []
    return out


def evaluate_run(path, which: str = "all", out_dir=None, device: str = "auto",
                 data_dir: Optional[str] = None, eps: Optional[float] = None,
                 norm: Optional[str] = None, **options) -> tuple[list[dict], tuple, dict]:
    """``torchawp eval RUN``: every checkpoint ``which`` selects
    (:func:`~torchawp.io.checkpoint.whiches`) evaluated by :func:`evaluate_opened`
    (``options``: its own) under one lock of ``out_dir/eval_state``, where each resumes, and
    reported in ``out_dir`` (``eval.json``, ``eval.md``; default: the run directory, or the
    checkpoint's folder). A pair whose last epoch was its best holds the same weights and is
    evaluated once. Returns the rows in ``which``'s order, the report's paths, and ``{last:
    best}`` for each such pair."""
    path = Path(path)
    selected = whiches(path, which)
    out_dir = beside(path, out_dir)
    files = {w: resolve_checkpoint(path, w) for w in selected}
    same = {last: best for best, last in (("best", "last"), ("ema_best", "ema_last"))
            if best in files and last in files and same_weights(files[best], files[last])}
    with exclusive_lock(out_dir / "eval_state", "evaluation state"):
        rows = {w: evaluate_opened(open_run(path, w, device, data_dir, eps, norm),
                                   state_dir=out_dir / "eval_state" / w, **options)
                for w in selected if w not in same}
        for last, best in same.items():  # one evaluation serves both rows
            rows[last] = dict(rows[best], which=last, checkpoint=str(files[last]))
        rows = [rows[w] for w in selected]
        return rows, write_report(rows, out_dir), same
