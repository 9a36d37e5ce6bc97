"""``torchawp transfer``: adversarial examples crafted on one model, measured on another; the
regional attack of Ozbulak et al. per region, or an ordinary attack (pgd20, fgsm ...)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

from ..attacks import build_attack, check_attack_names
from ..attacks.regional import Region
from ..config.ranges import bounded
from ..errors import ConfigError
from ..evaluation.accuracy import EVAL_SEED
from ..evaluation.opened import open_run
from ..io.checkpoint import WHICH, one_checkpoint
from ..io.paths import beside
from ..io.report import report
from ..plots import plot_transfer
from ..studies.transfer import render, transfer_report
from .common import DATA_DIR, DEVICE, log, parse, positional, was

DEFAULT_REGIONS = ("full", "centre:0.17", "centre:0.28", "centre:0.45", "frame:0.17",
                   "frame:0.28", "frame:0.45", "random:0.17", "random:0.28", "random:0.45")


# positional arguments, named in usage, help and errors
SOURCE = positional("SOURCE")
TARGET = positional("TARGET")


@dataclasses.dataclass
class TransferOptions:
    """Craft adversarial examples on SOURCE and measure how many fool TARGET: the regional
    attack (Ozbulak et al.: targeted 1/255 sign steps inside a pixel region, no eps ball, each
    image stopping once TARGET's prediction changes) for each region, or an ordinary attack on
    SOURCE's threat model."""

    # run directory or .safetensors checkpoint to attack
    source: SOURCE
    # run directory or .safetensors checkpoint to fool (trained on the same dataset)
    target: TARGET
    # checkpoint of both runs (of --which's names, one: best, last, ema_best or ema_last)
    which: WHICH = "best"
    # regional, or an evaluation attack: fgsm, pgdK, cwK
    attack: str = "regional"
    # for regional: centre:A, frame:A, random:A[:SEED] or full, A the share of the image
    # None: full and each family at 0.17, 0.28, 0.45, the paper's sizes
    regions: Optional[list[str]] = None
    # regional: most steps of 1/255
    steps: int = bounded(250, 1)
    # first N test images; None: all
    n_examples: Optional[int] = bounded(None, 1)
    # seed of the target classes / random starts
    seed: int = EVAL_SEED
    # directory for transfer.json/.md/.png; None: in SOURCE's run directory, named after
    # TARGET and the attack
    out_dir: Annotated[Optional[str], was("--out")] = None
    device: DEVICE = "auto"
    data_dir: DATA_DIR = None


def cmd_transfer(argv: list[str]) -> int:
    args = parse(TransferOptions, argv, "torchawp transfer")
    args.which = one_checkpoint(args.source, args.which, "torchawp transfer")
    regional = args.attack == "regional"
    if not regional:
        check_attack_names([args.attack])
    if args.regions is not None and not regional:
        raise ConfigError(f"--regions belongs to --attack regional (got --attack "
                          f"{args.attack})")
    regions = [Region.parse(r) for r in (args.regions or DEFAULT_REGIONS)] if regional else []
    source = open_run(args.source, args.which, args.device, args.data_dir)
    target = open_run(args.target, args.which, args.device, args.data_dir)
    if target.splits.info.name != source.splits.info.name:
        raise ConfigError(f"SOURCE was trained on {source.splits.info.name} and TARGET on "
                          f"{target.splits.info.name}; transfer needs one dataset")
    if not regional:
        build_attack(args.attack, source.threat)  # an unknown name: one line before any work
    out = beside(args.source, args.out_dir, f"transfer_{Path(args.target).stem}_{args.attack}")
    with report(out, "transfer directory") as written:
        results = transfer_report(source, target, args.n_examples, args.attack, regions,
                                  args.steps, args.seed, log, (args.source, args.target))
        written.json("transfer.json", results)
        md = render(results)
        written.text("transfer.md", md)
        if regional:
            written.file("transfer.png", lambda tmp: plot_transfer(
                results["rows"], tmp, f"{Path(args.source).name} -> {Path(args.target).name}"))
    print(md.split("\n", 2)[2].rstrip())
    print(f"report: {out / 'transfer.md'}, {out / 'transfer.json'}"
          + (f", {out / 'transfer.png'}" if regional else ""))
    return 0
