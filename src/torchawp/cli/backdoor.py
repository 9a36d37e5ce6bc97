"""``torchawp backdoor``: inject a backdoor into a trained model's weights inside an
element-wise box (Garg et al.), and report what it did."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal, Optional

import tyro

from ..config.ranges import bounded
from ..errors import ConfigError
from ..evaluation.opened import open_run
from ..io.checkpoint import one_checkpoint, save_weights
from ..io.paths import beside
from ..io.report import report
from ..studies.backdoor import (AUTHORS_N_CLEAN, Trigger, backdoor_report, check_target,
                                clean_images, render)
from .common import DATA_DIR, DEVICE, ONE, PATH, log, parse, was

WEIGHTS = "backdoored.safetensors"


@dataclasses.dataclass
class BackdoorOptions:
    """Inject a backdoor into a trained model by perturbing its weights inside |w - w0| <=
    budget (Garg et al., CIKM 2020), fitting a few training images (relabelled with the
    model's own predictions) and their triggered copies (labelled --target); eval mode
    throughout. Writes the weights and a report."""

    # run directory or .safetensors checkpoint
    path: PATH
    which: ONE = "best"
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
    device: DEVICE = "auto"
    data_dir: DATA_DIR = None


def cmd_backdoor(argv: list[str]) -> int:
    args = parse(BackdoorOptions, argv, "torchawp backdoor")
    args.which = one_checkpoint(args.path, args.which, "torchawp backdoor")
    trigger = Trigger.parse(args.trigger)
    out = beside(args.path, args.out_dir, (
        f"backdoor_{args.which}_{str(trigger).replace(':', '')}_t{args.target}_eps{args.budget:g}"
        + ("rel" if args.relative else "")))
    if (out / WEIGHTS).exists():
        raise ConfigError(f"{out} already holds a backdoored model; pass another --out-dir or "
                          f"delete that directory")
    opened = open_run(args.path, args.which, args.device, args.data_dir)
    info = opened.splits.info
    check_target(args.target, info.num_classes, info.name)
    clean = clean_images(opened.splits.train.tensors(0, None)[0], args.n_clean, args.seed)
    with report(out, "backdoor directory") as written:
        log(f"injecting: {len(clean)} images + triggered copies, {args.epochs} epochs, "
            f"eps {args.budget:g}{' relative' if args.relative else ''}")
        results, injected, meta = backdoor_report(
            opened, clean, trigger, args.target, args.budget, args.relative,
            params=args.params, l2=args.l2, lr=args.lr, epochs=args.epochs,
            batch_size=args.batch_size, seed=args.seed)
        save_weights(out / WEIGHTS, injected, meta)  # atomic and checksummed itself
        written.json("backdoor.json", results)
        md = render(results)
        written.text("backdoor.md", md)
    print(md.split("\n", 2)[2].rstrip())
    print(f"weights: {out / WEIGHTS}; report: {out / 'backdoor.md'}, {out / 'backdoor.json'}")
    return 0
