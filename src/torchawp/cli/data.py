"""``torchawp data import|info|verify``: image stores, millions of images read from disk."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Optional

from ..config.ranges import bounded
from ..data.store import open_store, verify_store
from ..data.store_import import import_store
from ..errors import ConfigError
from .common import parse, positional, was

USAGE = "torchawp data import SOURCE --out-dir STORE | info STORE | verify STORE"


# positional arguments, named in usage, help and errors
SOURCE = positional("SOURCE")
STORE = positional("STORE")


@dataclasses.dataclass
class ImportOptions:
    """Convert an .npz (ours, RST extra data, DM-Improves-AT image/label), RST's .pickle or an
    image folder into an image store, once, in bounded memory."""

    # the file or folder to convert
    source: SOURCE
    # the store's folder (must not exist)
    out_dir: Annotated[str, was("--out")]
    # image folders only: resize every image to this square size
    image_size: Optional[int] = bounded(None, 1)
    # classes; None: the largest label + 1 (then every class below it must occur)
    num_classes: Optional[int] = bounded(None, 1)
    # a progress line while converting
    progress: bool = True


@dataclasses.dataclass
class InfoOptions:
    """Print a store's card."""

    # the store's folder
    store: STORE
    # the card as JSON
    json: bool = False


@dataclasses.dataclass
class VerifyOptions:
    """Re-hash every file of a store against its card."""

    # the store's folder
    store: STORE


ACTIONS = {"import": ImportOptions, "info": InfoOptions, "verify": VerifyOptions}


def cmd_data(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: {USAGE}\n\nImage stores: a source converted once, in bounded memory, "
              f"then read from disk by memory mapping (data.name store, data.extra_data).\n"
              + "".join(f"\n  {name:<8}{cls.__doc__.splitlines()[0]}"
                        for name, cls in ACTIONS.items()))
        return 0
    if not argv or argv[0] not in ACTIONS:
        got = f" (got {argv[0]!r})" if argv else ""
        raise ConfigError(f"torchawp data needs an action{got}: {USAGE}")
    action = argv[0]
    args = parse(ACTIONS[action], argv[1:], f"torchawp data {action}")
    if action == "import":
        card = import_store(args.source, args.out_dir, args.image_size, args.num_classes,
                            progress=args.progress)
        print(open_store(args.out_dir).describe())
        counts = ", ".join(f"{s} {e['count']:,}" for s, e in card["splits"].items())
        print(f"imported {counts} images into {args.out_dir}")
        return 0
    if action == "info":
        store = open_store(args.store)
        print(json.dumps(store.card, indent=1) if args.json else store.describe())
        return 0
    checked = verify_store(args.store, progress=True)
    print(f"{args.store}: {len(checked)} files match their SHA-256 in card.json")
    return 0

