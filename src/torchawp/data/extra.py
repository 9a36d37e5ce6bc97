"""Extra images (generated or pseudo-labelled): an ``.npz`` with ``images`` and ``labels``, or
an image store (a directory made by ``torchawp data import``), read by memory mapping."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..io.checkpoint import atomic_write
from ..errors import DataError
from .base import ArrayDataset
from .stats import check_finite


def load_extra(path: str | Path, num_classes: int, in_channels: int, image_size: int,
               labels_required: bool = True) -> ArrayDataset:
    """Read an extra-data ``.npz``: ``images`` uint8 (N, H, W, C) or (N, C, H, W) or float in
    [0, 1], ``labels`` int in [0, num_classes). Shapes must match the labelled data. With
    ``labels_required=False`` (images to pseudo-label) missing labels read as zeros. A folder
    is an image store (``torchawp data import``): its train split, left on disk."""
    path = Path(path)
    if path.is_dir():
        from .store import open_store

        store = open_store(path)
        if store.shape != (in_channels, image_size, image_size):
            raise DataError(f"store {path} holds {store.shape} images (C, H, W), the labelled "
                            f"data {(in_channels, image_size, image_size)}")
        return store.split("train", num_classes)
    if not path.is_file():
        raise DataError(f"extra data {path} not found; make an .npz with `torchawp pseudo-label`, "
                        f"or a store with `torchawp data import`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
            if "labels" in npz or labels_required:
                labels = npz["labels"]
            else:
                labels = np.zeros(len(images), dtype=np.int64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not an .npz with arrays 'images' and 'labels' ({exc})") from None
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DataError(f"{path}: images must be N x H x W x C or N x C x H x W "
                        f"(got shape {images.shape})")
    if images.shape[1] != in_channels and images.shape[3] == in_channels:
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != (in_channels, image_size, image_size):
        raise DataError(f"{path}: images have shape {images.shape[1:]} per image, the labelled "
                        f"data {(in_channels, image_size, image_size)}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be {len(images)} integers (got {labels.dtype} "
                        f"{labels.shape})")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in [0, {num_classes - 1}] "
                        f"(got {labels.min()}..{labels.max()})")
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating):
            check_finite(images, f"{path}: images")
        if not np.issubdtype(images.dtype, np.floating) or len(images) and (
                images.min() < 0 or images.max() > 1):
            raise DataError(f"{path}: images must be uint8 in [0, 255] or float in [0, 1] "
                            f"(got {images.dtype}"
                            + (f" in [{images.min()}, {images.max()}])" if len(images) else ")"))
        images = images.astype(np.float32)
    return ArrayDataset(torch.from_numpy(np.ascontiguousarray(images)),
                        torch.from_numpy(labels.astype(np.int64)), num_classes)


def save_extra(path: str | Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write an extra-data ``.npz`` atomically (``images`` NCHW uint8 or float in [0, 1])."""
    arrays = {"images": images.cpu().numpy(), "labels": labels.cpu().numpy()}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a path
            np.savez(f, **arrays)

    atomic_write(Path(path), write)

