"""``torchawp export``: a run's model as a plain state dict with a JSON card, and optionally a
``torch.export`` program."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from ..errors import ConfigError
from ..io.checkpoint import one_checkpoint
from ..io.export import export, export_measured
from ..io.paths import output_files
from ..io.robustbench import CARD_FIELDS
from .common import MODEL_DIR, ONE, PATH, parse


@dataclasses.dataclass
class ExportOptions:
    """Write a trained model in the forms other tools load: a state dict (.pt, weights_only)
    with a JSON card, and with --program a torch.export program (.pt2)."""

    # run directory or .safetensors checkpoint
    path: PATH
    which: ONE = "best"
    # the state dict to write (model.pt); the card goes beside it as model.json
    out: Optional[str] = None
    # also a torch.export program (model.pt2), batch size dynamic
    program: bool = False
    # RobustBench's layout and card instead of --out: write MODEL_DIR/DATASET/THREAT/NAME.pt
    # and MODEL_DIR/model_info/DATASET/THREAT/NAME.json from the run's eval.json
    robustbench: Optional[str] = None
    model_dir: MODEL_DIR = "models"
    # allow a card from AutoAttack on part of the test set (said in its footnote)
    partial: bool = False
    # replace the files --out names (the state dict, its card, the program) if they exist
    overwrite: bool = False


def cmd_export(argv: list[str]) -> int:
    args = parse(ExportOptions, argv, "torchawp export")
    args.which = one_checkpoint(args.path, args.which, "torchawp export")
    if args.robustbench is not None:
        if args.out is not None:
            raise ConfigError(f"--robustbench writes RobustBench's layout under --model-dir "
                              f"({args.model_dir}), so --out {args.out} would be ignored; drop "
                              f"--out, or pass --model-dir {args.out}")
        return _export_robustbench(args)
    if args.out is None:
        raise ConfigError("torchawp export needs --out FILE.pt, or --robustbench NAME")
    out = Path(args.out)
    output_files("--out", [out, out.with_suffix(".json")]
                 + ([out.with_suffix(".pt2")] if args.program else []), args.overwrite)
    card = export(args.path, args.out, args.which, args.program)
    print(f"{card['source']} (epoch {card['epoch']}) -> " + ", ".join(card["files"].values()))
    return 0


def _export_robustbench(args) -> int:
    """``torchawp export RUN --robustbench NAME``: the checkpoint that ``eval`` measured."""
    written = export_measured(args.path, args.which, args.robustbench, args.model_dir,
                              args.partial)
    card, row = written["card"], written["row"]
    print(f"{written['source']} -> {written['weights']}, {written['model_info']}")
    print(f"clean {card['clean_acc']}%, AutoAttack {card['autoattack_acc']}% on {row['n']} "
          f"images, eps {card['eps']}, {card['architecture']}")
    left = [k for k in CARD_FIELDS if card.get(k) == ""]
    print(f"fill in by hand: {', '.join(left)}")
    return 0
