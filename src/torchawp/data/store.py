"""Image stores: millions of images on disk, read by memory mapping.

A store is a directory::

    card.json            count, shape, classes, per-channel mean and std, SHA-256 of each file
    train_images.npy     uint8 (or float32 in [0, 1]) N x C x H x W, opened with mmap_mode="r"
    train_labels.npy     int64 N
    test_images.npy      (optional) the test split, same layout
    test_labels.npy

``torchawp data import`` (:mod:`torchawp.data.store_import`) makes one in bounded memory.
Training gathers batches from the memory map (:class:`~torchawp.data.base.MappedImages`), so a
12 GB store costs page cache, not private memory. Opening a store checks that its arrays agree
with the card (length, dtype, shape, labels in range); :func:`verify_store` re-hashes the files.

Why plain ``.npy``: a batch is ``len(batch)`` row copies out of one mapped array (numpy
releases the GIL while it copies), the format needs no new dependency, and any tool reads it.
``docs/scale.md`` has the measurements.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, DatasetInfo, register_dataset
from .mapped import MappedImages

FORMAT = "torchawp-store"
VERSION = 1
SPLITS = ("train", "test")
DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


# ---------------------------------------------------------------------- reading a store
@dataclass
class Store:
    """An opened store: its card, and its splits as datasets whose images stay on disk."""

    path: Path
    card: dict
    _opened: dict = field(default_factory=dict, repr=False)  # (split, classes) -> dataset

    @property
    def num_classes(self) -> int:
        return int(self.card["num_classes"])

    @property
    def shape(self) -> tuple:
        return tuple(self.card["shape"])

    def has(self, split: str) -> bool:
        return split in self.card["splits"]

    def split(self, split: str, num_classes: Optional[int] = None) -> ArrayDataset:
        """``split``'s images (mapped) and labels (in memory, checked against the classes),
        read once per store."""
        classes = num_classes or self.num_classes
        if (split, classes) not in self._opened:
            self._opened[split, classes] = self._open_split(split, classes)
        return self._opened[split, classes]

    def _open_split(self, split: str, classes: int) -> ArrayDataset:
        entry = self.card["splits"].get(split)
        if entry is None:
            raise DataError(f"store {self.path} has no {split} split (it has "
                            f"{', '.join(self.card['splits'])}); import a source with "
                            f"{split} images")
        images = _open_array(self.path / entry["images"], self.shape, DTYPES, entry["count"])
        labels = _open_array(self.path / entry["labels"], (), (np.dtype(np.int64),),
                             entry["count"])
        labels = torch.from_numpy(np.array(labels))  # 8 bytes an image: kept in memory
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            raise DataError(f"{self.path / entry['labels']}: labels must lie in [0, "
                            f"{classes - 1}] (got {int(labels.min())}..{int(labels.max())}); "
                            f"re-import the store")
        return ArrayDataset(MappedImages(images), labels, classes)

    def describe(self) -> str:
        """The card in a few lines (``torchawp data info``)."""
        card = self.card
        lines = [f"store {self.path}: {card['layout']} from {card['source']}",
                 f"images {' x '.join(map(str, card['shape']))} (C x H x W), "
                 f"{card['num_classes']} classes",
                 "mean " + ", ".join(f"{m:.4f}" for m in card["mean"])
                 + "; std " + ", ".join(f"{s:.4f}" for s in card["std"])]
        lines += [f"{split}: {e['count']:,} images ({e['images']}, {e['labels']})"
                  for split, e in card["splits"].items()]
        return "\n".join(lines)

    def info(self) -> DatasetInfo:
        c, size = self.shape[0], self.shape[1]
        return DatasetInfo("store", self.num_classes, c, size, mean=list(self.card["mean"]),
                           std=list(self.card["std"]), augment=self.card.get("augment", "none"))


def _open_array(path: Path, shape: tuple, dtypes, count: int) -> np.ndarray:
    """Map ``path`` read-only, checking dtype, per-row shape and length against the card."""
    if not path.is_file():
        raise DataError(f"{path} is missing; the store is incomplete: import it again")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated, or not an .npy at all
        raise DataError(f"{path} is not a readable .npy array ({exc}); the file is truncated "
                        f"or damaged: import the store again") from None
    if array.dtype not in dtypes:
        raise DataError(f"{path} holds {array.dtype}, the store needs "
                        f"{' or '.join(map(str, dtypes))}; import the store again")
    if tuple(array.shape[1:]) != tuple(shape) or len(array) != count:
        raise DataError(f"{path} has shape {array.shape}, its card says {count} x "
                        f"{tuple(shape)}; the arrays disagree with card.json: import again")
    return array


def open_store(path: str | Path) -> Store:
    """Open the store at ``path`` (checks its card and that its arrays agree with it; the
    files' SHA-256 are checked by :func:`verify_store`)."""
    path = Path(path)
    card_path = path / "card.json"
    if not card_path.is_file():
        raise DataError(f"{path} is not a torchawp image store (no card.json); make one with "
                        f"torchawp data import SOURCE --out-dir {path}")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{card_path} is not valid JSON ({exc}); import the store again") \
            from None
    if card.get("format") != FORMAT or card.get("version") != VERSION:
        raise DataError(f"{card_path} is not a version-{VERSION} {FORMAT} card; import the "
                        f"store again with this torchawp")
    if not np.isfinite(card.get("mean", []) + card.get("std", [])).all():
        raise DataError(f"{card_path} says mean {card.get('mean')}, std {card.get('std')}: the "
                        f"store was imported from images with NaN or infinite values; fix "
                        f"them and import it again")
    store = Store(path, card)
    for split in card["splits"]:  # lengths, dtypes and shapes agree, labels in range
        store.split(split)
    return store


def verify_store(path: str | Path, progress: bool = False) -> dict[str, bool]:
    """Re-hash every file of the store; raises :class:`DataError` naming the first file whose
    SHA-256 differs from the card. Returns ``{file: True}``."""
    store = open_store(path)
    checked = {}
    for split, entry in store.card["splits"].items():
        for key in ("images", "labels"):
            name = entry[key]
            digest = file_sha256(store.path / name, progress)
            if digest != entry["sha256"][name]:
                raise DataError(f"{store.path / name} fails its SHA-256 check (card "
                                f"{entry['sha256'][name][:12]}..., file {digest[:12]}...): the "
                                f"file changed after import; import the store again")
            checked[name] = True
    return checked


def file_sha256(path: Path, progress: bool = False) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f, progress_bar(size, f"hashing {path.name}", progress, "B") as bar:
        while block := f.read(1 << 24):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


@register_dataset("store")
def load_store_dataset(data_dir: Path):
    """``data.name: store``: the store at ``data.data_dir``, its train and test splits (the
    test split is read into memory: it is evaluated every epoch)."""
    store = open_store(data_dir)
    if not store.has("test"):
        raise DataError(f"store {data_dir} has no test split, so it cannot be the training "
                        f"data; use it as --data.extra-data, or import a source with test "
                        f"images (our .npz, an image folder with test/)")
    return store.split("train"), store.split("test").load(), store.info()


def progress_bar(total: int, description: str, enabled: bool, unit: str):
    if not enabled:
        return contextlib.nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, unit_scale=True, leave=False,
                dynamic_ncols=True)


class _NoBar:
    def update(self, n: int) -> None:
        pass
