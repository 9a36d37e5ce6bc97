"""``torchawp transfer``: adversarial examples crafted on one model, measured on another; the
regional attack of Ozbulak et al. per region, or an ordinary attack (pgd20, fgsm ...)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Optional

from ..attacks import build_attack, check_attack_names
from ..attacks.regional import Region
from ..errors import ConfigError
from ..evaluation.accuracy import EVAL_SEED
from ..plots import plot_transfer
from ..io.report import report
from ..evaluation.opened import open_run
from ..studies.transfer import regional_sweep, transfer
from ..io.checkpoint import WHICH, one_checkpoint
from .common import bounded, log, parse, positional, was

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
    # auto (cuda if present, else cpu), cpu, cuda, cuda:N
    device: str = "auto"
    # where the dataset's files are; None: the run's
    data_dir: Optional[str] = None


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
    source, splits, threat = open_run(args.source, args.which, args.device, args.data_dir)
    target, target_splits, _ = open_run(args.target, args.which, args.device,
                                             args.data_dir)
    if target_splits.info.name != splits.info.name:
        raise ConfigError(f"SOURCE was trained on {splits.info.name} and TARGET on "
                          f"{target_splits.info.name}; transfer needs one dataset")
    if not regional:
        build_attack(args.attack, threat)  # an unknown name is one line before any work
    x, y = splits.test.tensors(0, args.n_examples)
    src = Path(args.source)
    out = Path(args.out_dir) if args.out_dir else (src if src.is_dir() else src.parent) / (
        f"transfer_{Path(args.target).stem}_{args.attack}")
    with report(out, "transfer directory") as written:
        if regional:
            rows = regional_sweep(source, target, x, y, regions, args.steps, args.seed, log)
        else:
            start = time.perf_counter()
            rows = [transfer(source, target, x, y, build_attack(args.attack, threat),
                             seed=args.seed)]
            rows[0]["seconds"] = time.perf_counter() - start
            log(f"{args.attack}: transfer {100 * (rows[0]['transfer_rate'] or 0):.1f}% of "
                f"{rows[0]['attacked']} ({rows[0]['seconds']:.1f} s)")
        results = {"source": args.source, "target": args.target, "which": args.which,
                  "dataset": splits.info.name, "attack": args.attack,
                  "settings": ({"steps": args.steps, "step_size": 1 / 255, "targeted": True,
                                "eps": None, "stop": "target prediction differs"} if regional
                               else {"norm": threat.norm, "eps": threat.eps,
                                     "step_size": threat.step_size}),
                  "seed": args.seed, "rows": rows}
        written.json("transfer.json", results)
        md = render(results)
        written.text("transfer.md", md)
        if regional:
            written.file("transfer.png", lambda tmp: plot_transfer(
                rows, tmp, f"{Path(args.source).name} -> {Path(args.target).name}"))
    print(md.split("\n", 2)[2].rstrip())
    print(f"report: {out / 'transfer.md'}, {out / 'transfer.json'}"
          + (f", {out / 'transfer.png'}" if regional else ""))
    return 0


def render(report: dict) -> str:
    """The markdown report of one transfer measurement."""
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    rows = report["rows"]
    lines = [f"# Transfer: {report['source']} -> {report['target']}", "",
             f"{report['attack']} on the {report['which']} checkpoints, {report['dataset']} test "
             f"set: {rows[0]['n']} images, {rows[0]['attacked']} classified correctly by both "
             f"(the ones attacked). Transfer: the share of those the target then misclassifies; "
             f"L0 (share of pixel locations changed), L2 and L-inf are medians over the "
             f"transferred ones, in [0, 1] pixel units.", "",
             "| region | area | transfer % | source fooled % | L0 | L2 | L-inf |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('region', '-')} | {pct(r.get('area'))} | "
                     f"{pct(r['transfer_rate'])} | {pct(r['source_rate'])} | "
                     f"{num(r['median_l0'])} | {num(r['median_l2'])} | {num(r['median_linf'])} |")
    return "\n".join(lines) + "\n"
