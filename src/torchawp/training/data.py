"""A run's data from its config: the splits, the extra data mixed into every batch, and the
training loader (shuffled, augmented, sharded under DDP, on the training device)."""

from __future__ import annotations

import warnings
from typing import Optional

import torch

from ..config import TrainConfig
from ..data import BatchLoader, Splits, load_extra, load_splits
from ..errors import ConfigError
from ..runtime import DistEnv


def run_data(cfg: TrainConfig, splits: Optional[Splits], device: torch.device, dist: DistEnv,
             generator: torch.Generator) -> tuple[Splits, BatchLoader]:
    """``(splits, training loader)``: ``splits`` as given (or read as ``cfg.data`` says), with
    ``data.extra_data`` loaded unless the caller prepared it (``extra_data: auto`` runs start
    with :func:`torchawp.train`, which does). In-memory sets move to ``device``; image stores
    stay on disk and their batches move."""
    d = cfg.data
    splits = splits or load_splits(d.name, d.data_dir, d.val_size, d.split_seed, d.train_subset,
                                   d.image_size)
    info = splits.info
    if d.extra_data and splits.extra is None:
        if d.extra_data == "auto":
            raise ConfigError("data.extra_data auto trains a labeller before the run: start "
                              "it with torchawp.train(cfg), which prepares the extra data")
        splits.extra = load_extra(d.extra_data, info.num_classes, info.in_channels,
                                  info.image_size)
    augment = d.augment if d.augment != "auto" else info.augment
    if cfg.consistency.weight and augment == "none":  # known once the dataset's default is
        raise ConfigError(f"consistency.weight {cfg.consistency.weight:g} compares two "
                          f"augmented views of each image, and the run does not augment "
                          f"{info.name} (data.augment {d.augment}), so the views would be the "
                          f"same image and the term 0; pass --data.augment crop or crop-flip")
    if augment != "none" and 4 * d.crop_pad > info.image_size:
        warnings.warn(f"random crops padded by {d.crop_pad} px shift {info.image_size}x"
                      f"{info.image_size} images by up to {d.crop_pad} px, more than a quarter "
                      f"of the image; --data.crop-pad {max(1, info.image_size // 8)} suits this "
                      f"size", stacklevel=2)
    on_device = lambda ds: ds.to(device) if ds is not None else None  # noqa: E731
    loader = BatchLoader(
        on_device(splits.train), d.batch_size, shuffle=True, augment=augment,
        views=2 if cfg.consistency.weight else 1, padding=d.crop_padding, pad=d.crop_pad,
        drop_last=dist.enabled, generator=generator, rank=dist.rank,
        world_size=dist.world_size, extra=on_device(splits.extra),
        extra_fraction=d.extra_fraction if splits.extra is not None else 0.0, device=device)
    return splits, loader
