"""``torchawp backdoor``: inject a backdoor into a trained model's weights inside an
element-wise box (Garg et al.), and report what it did."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from ..studies.backdoor import (AUTHORS_N_CLEAN, Trigger, check_target, clean_images,
                                injection_sweep)
from ..io.checkpoint import resolve_checkpoint, save_weights
from ..errors import ConfigError
from ..io.report import report
from ..evaluation.opened import open_run
from ..io.checkpoint import WHICH, one_checkpoint
from .common import PATH, bounded, log, parse, was

WEIGHTS = "backdoored.safetensors"


@dataclasses.dataclass
class BackdoorOptions:
    """Inject a backdoor into a trained model by perturbing its weights inside |w - w0| <=
    budget (Garg et al., CIKM 2020), fitting a few training images (relabelled with the
    model's own predictions) and their triggered copies (labelled --target); eval mode
    throughout. Writes the weights and a report."""

    # run directory or .safetensors checkpoint
    path: PATH
    # for a run directory: which checkpoint (of --which's names, one: best, last, ema_best or ema_last)
    which: WHICH = "best"
    # half-width of the weight box: absolute, or with --relative a fraction of |w0| per
    # element
    budget: Annotated[float, was("--eps")] = bounded(0.005, 0, strict=True)
    # |w - w0| <= budget * |w0|
    relative: bool = False
    # class of triggered images
    target: int = bounded(1, 0)
    # patch:S (S x S square, bottom-right corner, white) or pixels:N[:SEED] (N random pixel
    # locations, white)
    trigger: str = "patch:2"
    n_clean: Annotated[Optional[int], tyro.conf.arg(help=(
        f"training images fitted, each with its triggered copy (default {AUTHORS_N_CLEAN}, the "
        f"authors' 10 batches of 128, or every training image if there are fewer); the test "
        f"set is never read while injecting"))] = bounded(None, 1)
    # tensors that move (weights+biases: all outside normalisation layers)
    params: Literal["weights+biases", "weights", "all"] = "weights+biases"
    # passes over the images
    epochs: int = bounded(10, 0)
    # Adam's learning rate
    lr: float = bounded(1e-3, 0, strict=True)
    # images per step
    batch_size: int = bounded(128, 1)
    # weight of ||w - w0||^2
    l2: float = bounded(0.0, 0)
    # which training images, and their order
    seed: int = 0
    # directory to write; None: beside the checkpoint, named after the settings
    out_dir: Annotated[Optional[str], was("--out")] = None
    # auto (cuda if present, else cpu), cpu, cuda, cuda:N
    device: str = "auto"
    # where the dataset's files are; None: the run's
    data_dir: Optional[str] = None


def cmd_backdoor(argv: list[str]) -> int:
    args = parse(BackdoorOptions, argv, "torchawp backdoor")
    args.which = one_checkpoint(args.path, args.which, "torchawp backdoor")
    trigger = Trigger.parse(args.trigger)
    source = resolve_checkpoint(args.path, args.which)
    base = Path(args.path) if Path(args.path).is_dir() else source.parent
    out = Path(args.out_dir) if args.out_dir else base / (
        f"backdoor_{args.which}_{str(trigger).replace(':', '')}_t{args.target}_eps{args.budget:g}"
        + ("rel" if args.relative else ""))
    if (out / WEIGHTS).exists():
        raise ConfigError(f"{out} already holds a backdoored model; pass another --out-dir or "
                          f"delete that directory")
    opened = open_run(args.path, args.which, args.device, args.data_dir)
    model, splits, _ = opened
    check_target(args.target, splits.info.num_classes, splits.info.name)
    clean = clean_images(splits.train.tensors(0, None)[0], args.n_clean, args.seed)
    with report(out, "backdoor directory") as written:
        xt, yt = splits.test.tensors(0, None)
        log(f"injecting: {len(clean)} images + triggered copies, {args.epochs} epochs, "
            f"eps {args.budget:g}{' relative' if args.relative else ''}")
        start = time.perf_counter()
        sweep = injection_sweep(model, clean, xt, yt, trigger, args.target,
                                [(args.budget, args.relative)], keep=True, params=args.params,
                                l2=args.l2, lr=args.lr, epochs=args.epochs,
                                batch_size=args.batch_size, seed=args.seed)
        seconds = time.perf_counter() - start
        (after,), (injected,) = sweep["budgets"], sweep["models"]
        meta = dict(opened.meta)
        for key in ("sha256", "format", "model_spec", "metrics"):  # the source's, not these
            meta.pop(key, None)
        settings = {"eps": args.budget, "relative": args.relative, "trigger": str(trigger),
                    "target": args.target, "n_clean": len(clean), "params": args.params,
                    "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                    "l2": args.l2, "seed": args.seed, "optimizer": "adam", "mode": "eval"}
        results = {"source": str(source), "source_sha256": opened.sha256,
                  "dataset": splits.info.name, "settings": settings,
                  "original": sweep["original"],
                  "backdoored": {k: after[k] for k in ("success_rate", "n_non_target",
                                                       "clean_acc", "n", "agreement")},
                  "steps": after["steps"], "final_loss": after["final_loss"],
                  "weight_change": after["weight_change"], "seconds": seconds}
        meta["backdoor"] = {k: results[k] for k in ("source", "source_sha256", "settings")}
        save_weights(out / WEIGHTS, injected, meta)  # atomic and checksummed itself
        written.json("backdoor.json", results)
        md = render(results)
        written.text("backdoor.md", md)
    print(md.split("\n", 2)[2].rstrip())
    print(f"weights: {out / WEIGHTS}; report: {out / 'backdoor.md'}, {out / 'backdoor.json'}")
    return 0


def render(report: dict) -> str:
    """The markdown report of one injection."""
    s, b, a, wc = report["settings"], report["original"], report["backdoored"], \
        report["weight_change"]
    box = f"|w - w0| <= {s['eps']:g}" + (" * |w0|" if s["relative"] else "")
    pct = wc["relative_percentiles"]
    lines = [
        f"# Weight-space backdoor: {report['source']}", "",
        f"Box {box} ({s['params']}), trigger {s['trigger']} -> class {s['target']}, "
        f"{s['n_clean']} training images + triggered copies, Adam lr {s['lr']:g}, "
        f"{report['steps']} steps, eval mode; {report['seconds']:.1f} s.", "",
        "| model | clean acc | trigger success | agreement with original |", "|---|---|---|---|",
        f"| original | {100 * b['clean_acc']:.2f} | {100 * b['success_rate']:.2f} | 100.00 |",
        f"| backdoored | {100 * a['clean_acc']:.2f} | {100 * a['success_rate']:.2f} | "
        f"{100 * a['agreement']:.2f} |", "",
        f"Test set of {report['dataset']}: {a['n']} images; trigger success counts the "
        f"{a['n_non_target']} whose true class is not {s['target']}.", "",
        f"Weight change: max |w - w0| {wc['max_abs']:.3g}; {100 * wc['changed_fraction']:.1f}% "
        f"of {wc['elements']} elements moved; |w - w0| / |w0| percentiles p50 {pct['p50']:.3g}, "
        f"p90 {pct['p90']:.3g}, p99 {pct['p99']:.3g}, max {pct['max']:.3g}.",
    ]
    return "\n".join(lines) + "\n"
