"""MNIST-style IDX files (raw or .gz): MNIST and Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, DatasetInfo, register_dataset

_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (uint8 data), raw or gzip-compressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}; replace it with an intact copy") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} is truncated or padded: header says {shape}, "
                        f"file has {len(raw) - header} data bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(data_dir: Path, stem: str, name: str) -> Path:
    for candidate in (data_dir / stem, data_dir / f"{stem}.gz", data_dir / name / stem,
                      data_dir / name / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{name} not found: expected {stem}[.gz] in {data_dir} (or {data_dir / name}); "
                    f"put the four IDX files there or pass --data-dir")


def _load(name: str, data_dir: Path, mean: float, std: float):
    parts = []
    for split in ("train", "test"):
        images, labels = (read_idx(_find(data_dir, stem, name)) for stem in _FILES[split])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{name} {split} files disagree: images {images.shape}, "
                            f"labels {labels.shape}")
        parts.append(ArrayDataset(torch.from_numpy(images.copy()).unsqueeze(1),
                                  torch.from_numpy(labels.astype(np.int64)), 10))
    side = parts[0].images.shape[-1]
    return parts[0], parts[1], DatasetInfo(name, 10, 1, side, [mean], [std], augment="none")


@register_dataset("mnist")
def load_mnist(data_dir: Path):
    """MNIST from IDX files in ``data_dir`` (or ``data_dir/mnist``)."""
    return _load("mnist", data_dir, 0.1307, 0.3081)


@register_dataset("fashion-mnist", default_dir="/usr/share/datasets/fashion-mnist")
def load_fashion_mnist(data_dir: Path):
    """Fashion-MNIST from IDX files (Debian's ``dataset-fashion-mnist`` location by default)."""
    return _load("fashion-mnist", data_dir, 0.2860, 0.3530)
