"""Image datasets, the seeded validation split and the batch loader.

Images are kept as one tensor (uint8 in [0, 255] or float in [0, 1], NCHW) on the training
device; batches are cut, converted to [0, 1] floats and augmented there. This is airbench's
recipe: no worker processes, no per-image Python, reproducible from one generator. Sets too
large for memory stay on disk (:class:`MappedImages`, an image store): a background thread
gathers their batches, and everything else is the same.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from ..errors import ConfigError, DataError
from .mapped import MappedImages, gather


@dataclass
class ArrayDataset:
    """``images`` (N, C, H, W; uint8 0-255 or float 0-1; a tensor, or :class:`MappedImages`
    on disk) with ``labels`` (N, int64)."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self):
        if self.images.dim() != 4:
            raise DataError(f"images must be N x C x H x W (got shape {tuple(self.images.shape)})")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
        if (isinstance(self.images, torch.Tensor) and self.images.is_floating_point()
                and not bool(torch.isfinite(self.images).all())):
            raise DataError("images hold NaN or infinite values; replace them (for example "
                            "with torch.nan_to_num) or drop those images")
        if len(self.labels) and (int(self.labels.min()) < 0
                                 or int(self.labels.max()) >= self.num_classes):
            raise DataError(f"labels must lie in [0, {self.num_classes - 1}] (got "
                            f"{int(self.labels.min())}..{int(self.labels.max())})")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def mapped(self) -> bool:
        """Whether the images stay on disk (an image store, read by memory mapping)."""
        return isinstance(self.images, MappedImages)

    def subset(self, index: torch.Tensor) -> "ArrayDataset":
        images = self.images.select(index) if self.mapped else self.images[index]
        return replace(self, images=images, labels=self.labels[index])

    def load(self) -> "ArrayDataset":
        """The same examples with their images in memory (a no-op unless mapped)."""
        return replace(self, images=self.images[:]) if self.mapped else self

    def to(self, device) -> "ArrayDataset":
        """On ``device``; a mapped set keeps its images on disk (batches move, not the set)."""
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
    # the validation split is evaluated every epoch: in memory even when the set is mapped
    return Splits(train.subset(rest), train.subset(val).load(), test, info,
                  unused=train.subset(unused))


def draw_augmentation(n: int, kind: str, generator: torch.Generator, pad: int = 4):
    """The random part of :func:`augment` for a batch of ``n``: crop offsets and flips, drawn
    from ``generator`` in a fixed order (so a resumed epoch can replay the draws without the
    images)."""
    if kind == "none":
        return None
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5 if kind == "crop-flip" else None
    return dy, dx, flip


def apply_augmentation(x: torch.Tensor, draws, padding: str = "zero",
                       pad: int = 4) -> torch.Tensor:
    """Crop (the image padded by ``pad`` px, with zeros or by reflection) and flip ``x`` as
    ``draws`` (from :func:`draw_augmentation`) say. Pure indexing, so it runs on uint8 images
    as well as on floats (4x less memory traffic) with the same result: two gathers, rows then
    columns, with the flip folded into the column index and the padding into both."""
    if draws is None:
        return x
    dy, dx, flip = (d.to(x.device) if d is not None else None for d in draws)
    n, c, h, w = x.shape
    rows = dy[:, None] + torch.arange(h, device=x.device) - pad  # in the unpadded image
    cols = dx[:, None] + torch.arange(w, device=x.device) - pad
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    inside = None
    if padding == "reflect":  # -1 -> 1, h -> h - 2, as torch's reflection padding
        rows = torch.where(rows < 0, -rows, torch.where(rows >= h, 2 * (h - 1) - rows, rows))
        cols = torch.where(cols < 0, -cols, torch.where(cols >= w, 2 * (w - 1) - cols, cols))
    else:  # zeros outside the image
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    out = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    out = out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    return out.masked_fill(~inside[:, None], 0) if inside is not None else out


def augment(x: torch.Tensor, kind: str, generator: torch.Generator,
            padding: str = "zero") -> torch.Tensor:
    """Standard augmentation on a batch in [0, 1]: ``crop`` (random crop of the image padded by
    4 px, with zeros or by reflection), ``crop-flip`` (and a horizontal flip with probability
    1/2), or ``none``."""
    return apply_augmentation(x, draw_augmentation(len(x), kind, generator), padding)


@dataclass
class BatchLoader:
    """Batches ``(x, y)`` of a dataset on the training device, ``x`` float in [0, 1].

    The order and the augmentation draw from ``generator`` (a CPU ``torch.Generator``), so a run
    is reproducible and resumable from the generator's state. Under DDP each of ``world_size``
    ranks takes every ``world_size``-th example of the same permutation (and reads only those).
    ``extra`` (extra data: generated or pseudo-labelled images) fills ``extra_fraction`` of
    every batch, cycling through its own shuffled order.

    In-memory sets are indexed on their device. A mapped set (an image store) is gathered on
    the CPU by a background thread, ``prefetch`` batches ahead of the loop (rows read in
    ascending order, pinned memory and a non-blocking copy for CUDA); the batches, the random
    draws and so the run are bit-identical to the in-memory path's.
    """

    data: ArrayDataset
    batch_size: int
    shuffle: bool = False
    augment: str = "none"
    views: int = 1  # 2: two augmentations of every batch, stacked, labels repeated
    padding: str = "zero"  # of the random crop: zero or reflect
    pad: int = 4  # of the random crop: its largest shift in pixels
    drop_last: bool = False
    generator: torch.Generator = field(default_factory=torch.Generator)
    rank: int = 0
    world_size: int = 1
    extra: Optional[ArrayDataset] = None
    extra_fraction: float = 0.0
    device: Optional[torch.device] = None  # where batches go (default: the data's device)
    prefetch: int = 4

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

    def _plan(self) -> list[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Every batch's positions in ``data`` (and in ``extra``), drawn for the epoch."""
        per_rank = self._per_rank()
        order = self._order(len(self.data))
        extra_order = extra_per_batch = None
        if self.extra is not None:
            extra_per_batch = round(per_rank * self.extra_fraction)
            per_rank -= extra_per_batch
            extra_order = self._order(len(self.extra))
        plan = []
        for i, start in enumerate(range(0, len(order), per_rank)):
            index = order[start:start + per_rank]
            if self.drop_last and len(index) < per_rank:
                break
            e_index = None
            if extra_order is not None:
                # cycle through the (shuffled) extra data, however much of it there is
                at = (i * extra_per_batch + torch.arange(extra_per_batch)) % len(extra_order)
                e_index = extra_order[at]
            plan.append((index, e_index))
        return plan

    def _fetch(self, index: torch.Tensor, e_index: Optional[torch.Tensor], pin: bool):
        """The raw parts of one batch: (images, labels) of the data and of the extra set."""
        parts = []
        for ds, idx in ((self.data, index), (self.extra, e_index)):
            if idx is None:
                continue
            if ds.mapped:
                parts.append((gather(ds.images.array, ds.images.rows(idx), pin),
                              ds.labels[idx.to(ds.labels.device)]))
            else:
                idx = idx.to(ds.images.device)
                parts.append((ds.images[idx], ds.labels[idx]))
        return parts

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, x, y in self.batches():
            yield x, y

    def batches(self, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(i, x, y)`` for batches ``start`` onwards; the earlier batches of the epoch only
        replay their random draws (a resumed epoch continues exactly where it stopped)."""
        device = self.device or self.data.images.device
        plan = self._plan()
        for index, e_index in plan[:start]:
            n = len(index) + (len(e_index) if e_index is not None else 0)
            for _ in range(self.views):
                draw_augmentation(n, self.augment, self.generator, self.pad)
        todo = plan[start:]
        mapped = self.data.mapped or (self.extra is not None and self.extra.mapped)
        pin = mapped and device.type == "cuda"
        fetched = (_prefetched(self._fetch, todo, pin, self.prefetch) if mapped
                   else (self._fetch(i, e, False) for i, e in todo))
        for i, parts in enumerate(fetched, start):
            raw = [p[0].to(device, non_blocking=pin) for p in parts]
            if len({r.dtype for r in raw}) > 1:  # uint8 beside float: scale before joining
                raw = [to_float(r) for r in raw]
            x = torch.cat(raw)
            y = torch.cat([p[1].to(device, non_blocking=pin) for p in parts])
            # augmenting is indexing: on uint8 it moves a quarter of the bytes, same result
            views = [to_float(apply_augmentation(
                x, draw_augmentation(len(x), self.augment, self.generator, self.pad),
                self.padding, self.pad)) for _ in range(self.views)]
            if self.views == 1:
                yield i, views[0], y
            else:  # [view 1; view 2], each row's label once per view
                yield i, torch.cat(views), y.repeat(self.views)


def _prefetched(fetch, todo: list, pin: bool, depth: int) -> Iterator:
    """``fetch(*item, pin)`` for every item, computed by a background thread up to ``depth``
    items ahead; an error in the thread is raised here, and leaving early stops the thread."""
    import queue
    import threading

    results: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def work():
        try:
            for item in todo:
                if stop.is_set():
                    return
                results.put((True, fetch(*item, pin)))
        except BaseException as exc:  # handed to the consumer
            results.put((False, exc))

    thread = threading.Thread(target=work, name="torchawp-loader", daemon=True)
    thread.start()
    try:
        for _ in todo:
            ok, value = results.get()
            if not ok:
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a put() so the thread can see the stop
            try:
                results.get(timeout=0.05)
            except queue.Empty:
                pass
