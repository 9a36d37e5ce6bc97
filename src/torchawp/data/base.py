"""In-memory image datasets, the seeded validation split and a device-side batch loader.

Images are kept as one tensor (uint8 in [0, 255] or float in [0, 1], NCHW) on the training
device; batches are cut, converted to [0, 1] floats and augmented there. This is airbench's
recipe: no worker processes, no per-image Python, reproducible from one generator.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from ..errors import ConfigError, DataError


@dataclass
class ArrayDataset:
    """``images`` (N, C, H, W; uint8 0-255 or float 0-1) with ``labels`` (N, int64)."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self):
        if self.images.dim() != 4:
            raise DataError(f"images must be N x C x H x W (got shape {tuple(self.images.shape)})")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (int(self.labels.min()) < 0
                                 or int(self.labels.max()) >= self.num_classes):
            raise DataError(f"labels must lie in [0, {self.num_classes - 1}] (got "
                            f"{int(self.labels.min())}..{int(self.labels.max())})")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "ArrayDataset":
        return replace(self, images=self.images[index], labels=self.labels[index])

    def to(self, device) -> "ArrayDataset":
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def tensors(self, start: int = 0, stop: Optional[int] = None):
        """``(x, y)`` with ``x`` float in [0, 1]: examples ``start`` to ``stop`` (None: the end).
        Negative positions are refused: "the first -5 images" is never "all but the last 5"."""
        if start < 0 or (stop is not None and stop < 0):
            raise ValueError(f"example positions must be >= 0 (got {start}, {stop})")
        return to_float(self.images[start:stop]), self.labels[start:stop]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] images -> float32 [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    return images.float()


@dataclass
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: list[float]
    std: list[float]
    augment: str = "none"  # the dataset's default augmentation


@dataclass
class Splits:
    """Train / validation (held out from train, for model selection) / test."""

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    info: DatasetInfo
    extra: Optional[ArrayDataset] = None  # RST: pseudo-labelled extra data
    unused: Optional[ArrayDataset] = None  # training images left out by train_subset


Loader = Callable[[Path], tuple[ArrayDataset, ArrayDataset, DatasetInfo]]
DATASETS: dict[str, tuple[Loader, Optional[str]]] = {}


def register_dataset(name: str, default_dir: Optional[str] = None):
    """Register ``fn(data_dir) -> (train, test, info)``; ``default_dir`` is used when the config
    names none (else ``$TORCHAWP_DATA_DIR`` or ``./data``)."""

    def wrap(fn):
        DATASETS[name] = (fn, default_dir)
        return fn

    return wrap


def default_data_dir(name: str) -> Path:
    _, default = DATASETS[name]
    if default and Path(default).exists():
        return Path(default)
    return Path(os.environ.get("TORCHAWP_DATA_DIR", "data"))


def load_splits(name: str, data_dir: Optional[str] = None, val_size: int = 0,
                split_seed: int = 0, train_subset: Optional[int] = None,
                image_size: Optional[int] = None) -> Splits:
    """Load a registered dataset and hold out a seeded validation split of its training set.

    The test set is never touched by the split and is never used for model selection.
    ``image_size`` resizes the images of an image folder (the only format that resizes).
    """
    if name not in DATASETS:
        hint = difflib.get_close_matches(name, sorted(DATASETS), n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"unknown dataset {name!r}{did_you_mean} "
                          f"(datasets: {', '.join(sorted(DATASETS))})")
    loader, _ = DATASETS[name]
    options = {"image_size": image_size} if image_size is not None else {}
    if options and name != "folder":
        raise ConfigError(f"data.image_size resizes image folders (data.name folder) only; "
                          f"{name} has its own size: drop data.image_size")
    train, test, info = loader(Path(data_dir) if data_dir else default_data_dir(name), **options)
    if val_size >= len(train):
        raise ConfigError(f"data.val_size must be smaller than the {len(train)} training images "
                          f"of {name} (got {val_size})")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    val, rest = order[:val_size], order[val_size:]
    unused = rest[train_subset:] if train_subset is not None else rest[:0]
    rest = rest[:train_subset]
    return Splits(train.subset(rest), train.subset(val), test, info, unused=train.subset(unused))


def _crop(x: torch.Tensor, pad: int, generator: torch.Generator,
          padding: str = "zero") -> torch.Tensor:
    n, c, h, w = x.shape
    mode = "reflect" if padding == "reflect" else "constant"
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode=mode)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def augment(x: torch.Tensor, kind: str, generator: torch.Generator,
            padding: str = "zero") -> torch.Tensor:
    """Standard augmentation on a batch in [0, 1]: ``crop`` (random crop of the image padded by
    4 px, with zeros or by reflection), ``crop-flip`` (and a horizontal flip with probability
    1/2), or ``none``."""
    if kind == "none":
        return x
    x = _crop(x, 4, generator, padding)
    if kind == "crop-flip":
        flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


@dataclass
class BatchLoader:
    """Batches ``(x, y)`` of a dataset on its device, ``x`` float in [0, 1].

    The order and the augmentation draw from ``generator`` (a CPU ``torch.Generator``), so a run
    is reproducible and resumable from the generator's state. Under DDP each of ``world_size``
    ranks takes every ``world_size``-th example of the same permutation.
    """

    data: ArrayDataset
    batch_size: int
    shuffle: bool = False
    augment: str = "none"
    padding: str = "zero"  # of the random crop: zero or reflect
    drop_last: bool = False
    generator: torch.Generator = field(default_factory=torch.Generator)
    rank: int = 0
    world_size: int = 1
    extra: Optional[ArrayDataset] = None  # RST: each batch also draws from here
    extra_fraction: float = 0.0

    def _per_rank(self) -> int:
        return max(1, self.batch_size // self.world_size)

    def __len__(self) -> int:
        n = len(self.data) // self.world_size
        if self.extra is not None:
            n = int(n / (1 - self.extra_fraction))
        b = self._per_rank()
        return n // b if self.drop_last else -(-n // b)

    def _order(self, n: int) -> torch.Tensor:
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        per_rank = self._per_rank()
        order = self._order(len(self.data))
        extra_order = extra_per_batch = None
        if self.extra is not None:
            extra_per_batch = round(per_rank * self.extra_fraction)
            per_rank -= extra_per_batch
            extra_order = self._order(len(self.extra))
        device = self.data.images.device
        for i, start in enumerate(range(0, len(order), per_rank)):
            index = order[start:start + per_rank]
            if self.drop_last and len(index) < per_rank:
                break
            index = index.to(device)
            x, y = to_float(self.data.images[index]), self.data.labels[index]
            if extra_order is not None:
                # cycle through the (shuffled) extra data, however much of it there is
                at = (i * extra_per_batch + torch.arange(extra_per_batch)) % len(extra_order)
                e_index = extra_order[at].to(self.extra.images.device)
                x = torch.cat([x, to_float(self.extra.images[e_index]).to(device)])
                y = torch.cat([y, self.extra.labels[e_index].to(device)])
            yield augment(x, self.augment, self.generator, self.padding), y
