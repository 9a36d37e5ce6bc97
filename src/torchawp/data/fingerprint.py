"""What a run's data files hold, in a few bytes: recorded with every checkpoint and compared on
``--resume`` and ``eval``, so that a store or ``.npz`` replaced at the same path between a stop
and a resume (or an evaluation) is refused instead of silently mixing two datasets.

Cheap at any size: a store's card holds the SHA-256 of each of its files (written at import),
and an ``.npz`` (a zip archive) holds the CRC-32 of each array in its directory, so neither is
read whole. Datasets torchawp reads from their standard layouts (digits, MNIST, CIFAR, SVHN,
image folders) are not fingerprinted.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Optional


def file_fingerprint(path: str | Path) -> Optional[str]:
    """SHA-256 of a store's card (its files' SHA-256s, shapes, classes, statistics; not the
    path it was imported from) or of an ``.npz``'s member list (names, sizes, CRC-32s); None
    for anything else (or what cannot be read: the readers say why)."""
    path = Path(path)
    try:
        if (path / "card.json").is_file():  # the content it describes, not where it came from
            card = json.loads((path / "card.json").read_text())
            card.pop("source", None)
            return hashlib.sha256(json.dumps(card, sort_keys=True).encode()).hexdigest()
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                members = sorted((i.filename, i.file_size, i.CRC) for i in zf.infolist())
            return hashlib.sha256(repr(members).encode()).hexdigest()
    except (OSError, ValueError):  # unreadable or not JSON: the readers say why
        return None
    return None


def data_fingerprint(data) -> dict[str, str]:
    """``{"data": ..., "extra_data": ...}`` for the files a config's ``data`` section names (a
    :class:`~torchawp.config.DataConfig` or its dict); empty for standard datasets."""
    get = data.get if isinstance(data, dict) else lambda key: getattr(data, key, None)
    out = {}
    for key in ("data_dir", "extra_data"):
        path = get(key)
        if path and path != "auto" and (key == "extra_data" or get("name") in ("npz", "store")):
            digest = file_fingerprint(path)
            if digest is not None:
                out["extra_data" if key == "extra_data" else "data"] = digest
    return out


def changed_data(saved: Optional[dict], now: dict) -> Optional[str]:
    """The first data file whose content differs from what a checkpoint recorded (``saved``,
    None for checkpoints from before fingerprints), as a message; None when all agree."""
    for key, digest in (saved or {}).items():
        if now.get(key) != digest:
            return (f"the {key.replace('_', ' ')} at its recorded path is not the file the "
                    f"checkpoint was trained on (its content fingerprint changed)")
    return None
