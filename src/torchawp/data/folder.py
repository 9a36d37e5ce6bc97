"""Your own images in an ImageFolder layout: ``ROOT/train/CLASS/*.png`` and ``ROOT/test/CLASS/*``
(png, jpg, jpeg, bmp, gif, tif), read with Pillow. Classes are the train folder's subfolders,
sorted; every image must have one size and colour mode unless ``data.image_size`` asks for a
resize. The per-channel mean and std come from the training images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, DatasetInfo, register_dataset
from .stats import channel_stats

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


def _read(path: Path, size: Optional[int]):
    from PIL import Image, UnidentifiedImageError  # Pillow: only for image folders

    try:
        with Image.open(path) as image:
            image = image.convert("L" if image.mode in ("1", "L", "I;16", "I") else "RGB")
            if size is not None:
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path} is not a readable image ({type(exc).__name__}); remove it or "
                        f"replace it") from None


def _split(root: Path, split: str, classes: list[str], size: Optional[int]):
    images, labels, first = [], [], None
    for label, name in enumerate(classes):
        folder = root / split / name
        files = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) \
            if folder.is_dir() else []
        if split == "train" and not files:
            raise DataError(f"{folder} holds no images; every class needs training images")
        for path in files:
            if path.suffix.lower() not in SUFFIXES:
                raise DataError(f"{path} is not an image file ({', '.join(sorted(SUFFIXES))}); "
                                f"move it out of {root}")
            x = _read(path, size)
            if first is None:
                first = (path, x.shape)
            elif x.shape != first[1]:
                raise DataError(f"{path} is {x.shape} but {first[0]} is {first[1]}; images "
                                f"must share one size and colour mode, or set "
                                f"data.image_size to resize them")
            images.append(x)
            labels.append(label)
    if not images:
        raise DataError(f"{root / split} holds no images of the classes {', '.join(classes)}")
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.tensor(labels, dtype=torch.int64)


def load_folder(root: Path, image_size: Optional[int] = None):
    """``(train, test, info)`` of an image folder (see the module's docstring)."""
    root = Path(root)
    train_root = root / "train"
    if not train_root.is_dir() or not (root / "test").is_dir():
        raise DataError(f"data.name folder reads ROOT/train/CLASS/* and ROOT/test/CLASS/* "
                        f"images; {root} lacks train/ or test/ (pass ROOT as --data-dir)")
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    unknown = sorted(p.name for p in (root / "test").iterdir()
                     if p.is_dir() and p.name not in classes)
    if unknown:
        raise DataError(f"{root / 'test'} has classes {', '.join(unknown)} that train/ lacks")
    x_train, y_train = _split(root, "train", classes, image_size)
    x_test, y_test = _split(root, "test", classes, image_size)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"train images are {tuple(x_train.shape[1:])} (C, H, W), test images "
                        f"{tuple(x_test.shape[1:])}; set data.image_size to resize both")
    if x_train.shape[2] != x_train.shape[3]:
        raise DataError(f"images in {root} are {x_train.shape[2]} x {x_train.shape[3]}; "
                        f"torchawp's models take square images: set data.image_size")
    mean, std = channel_stats(x_train.numpy())
    info = DatasetInfo("folder", len(classes), x_train.shape[1], x_train.shape[2],
                       mean=mean, std=std, augment="none")
    return (ArrayDataset(x_train, y_train, len(classes)),
            ArrayDataset(x_test, y_test, len(classes)), info)


register_dataset("folder")(load_folder)
