"""``torchawp data import|info|verify``: image stores, millions of images read from disk."""

from __future__ import annotations

import argparse
import json

from ..data.store import open_store, verify_store
from ..data.store_import import import_store
from ..errors import ConfigError
from .common import integer, option, parse

USAGE = "torchawp data import SOURCE --out-dir STORE | info STORE | verify STORE"


def _card_text(store) -> str:
    card = store.card
    lines = [f"store {store.path}: {card['layout']} from {card['source']}",
             f"images {' x '.join(map(str, card['shape']))} (C x H x W), "
             f"{card['num_classes']} classes",
             "mean " + ", ".join(f"{m:.4f}" for m in card["mean"])
             + "; std " + ", ".join(f"{s:.4f}" for s in card["std"])]
    for split, entry in card["splits"].items():
        lines.append(f"{split}: {entry['count']:,} images ({entry['images']}, {entry['labels']})")
    return "\n".join(lines)


def cmd_data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="torchawp data", description="Image stores: a source "
                                     "converted once, in bounded memory, then read from disk "
                                     "by memory mapping (data.name store, data.extra_data).")
    sub = parser.add_subparsers(dest="action", metavar="{import,info,verify}")
    p = sub.add_parser("import", help="convert an .npz (ours, RST extra data, DM-Improves-AT "
                                      "image/label), RST's .pickle or an image folder")
    p.add_argument("source", help="the file or folder to convert")
    option(p, "--out-dir", former=("--out",), dest="out", default=None, metavar="DIR",
           help="the store's folder (required; must not exist)")
    p.add_argument("--image-size", type=integer(1), default=None,
                   help="image folders only: resize every image to this square size")
    p.add_argument("--num-classes", type=integer(1), default=None,
                   help="classes (default: the largest label + 1)")
    p.add_argument("--progress", choices=["true", "false"], default="true")
    for name, text in (("info", "print a store's card"),
                       ("verify", "re-hash every file against the card")):
        q = sub.add_parser(name, help=text)
        q.add_argument("store", help="the store's folder")
        if name == "info":
            q.add_argument("--json", action="store_true", help="the card as JSON")
    args = parse(parser, argv)
    if args.action is None:
        raise ConfigError(f"torchawp data needs an action: {USAGE}")
    if args.action == "import":
        if args.out is None:
            raise ConfigError("torchawp data import needs --out-dir DIR, the store's folder to "
                              "create (it must not exist)")
        card = import_store(args.source, args.out, args.image_size, args.num_classes,
                            progress=args.progress == "true")
        print(_card_text(open_store(args.out)))
        counts = ", ".join(f"{s} {e['count']:,}" for s, e in card["splits"].items())
        print(f"imported {counts} images into {args.out}")
        return 0
    if args.action == "info":
        store = open_store(args.store)
        print(json.dumps(store.card, indent=1) if args.json else _card_text(store))
        return 0
    checked = verify_store(args.store, progress=True)
    print(f"{args.store}: {len(checked)} files match their SHA-256 in card.json")
    return 0

