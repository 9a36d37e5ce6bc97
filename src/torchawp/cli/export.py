"""``torchawp export``: a run's model as a plain state dict with a JSON card, and optionally a
``torch.export`` program."""

from __future__ import annotations

import argparse

from ..export import export
from .common import parse


def cmd_export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="torchawp export", description="Write a trained model in the forms other tools "
        "load: a state dict (.pt, weights_only) with a JSON card, and with --program a "
        "torch.export program (.pt2).")
    parser.add_argument("path", help="run directory or .safetensors checkpoint")
    parser.add_argument("--which", choices=["best", "last", "ema", "ema_best", "ema_last"],
                        default="best", help="which checkpoint of a run (ema: the weight "
                                             "average's best, from a run trained with --ema)")
    parser.add_argument("--out", required=True, help="the state dict to write (model.pt); the "
                                                     "card goes beside it as model.json")
    parser.add_argument("--program", action="store_true",
                        help="also a torch.export program (model.pt2), batch size dynamic")
    args = parse(parser, argv)
    card = export(args.path, args.out, args.which, args.program)
    print(f"{card['source']} (epoch {card['epoch']}) -> " + ", ".join(card["files"].values()))
    return 0
