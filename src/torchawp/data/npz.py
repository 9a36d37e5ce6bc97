"""Your own data as one ``.npz`` file: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Images uint8 in [0, 255] (or float in [0, 1]), N x H x W x C or N x C x H x W or N x H x W, any
square size and channel count; labels integers from 0. The per-channel mean and std the model
normalises with are computed from the training images.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, DatasetInfo, register_dataset
from .stats import channel_stats, check_classes, check_finite

ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _images(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{path}: {name} must be N x H x W x C, N x C x H x W or N x H x W "
                        f"(got shape {x.shape})")
    if x.shape[3] <= x.shape[1]:  # channels last (H x W x C with few channels)
        x = x.transpose(0, 3, 1, 2)
    if x.shape[2] != x.shape[3]:
        raise DataError(f"{path}: {name} images are {x.shape[2]} x {x.shape[3]}; torchawp's "
                        f"models take square images: crop or resize them")
    if len(x) == 0:
        raise DataError(f"{path}: {name} holds no images; both splits need some")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating):
            check_finite(x, f"{path}: {name}")
        if not np.issubdtype(x.dtype, np.floating) or x.min() < 0 or x.max() > 1:
            raise DataError(f"{path}: {name} must be uint8 in [0, 255] or float in [0, 1] "
                            f"(got {x.dtype} in [{x.min()}, {x.max()}])")
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


def _labels(path: Path, name: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {name} must be {n} integers, one per image (got {y.dtype} "
                        f"{y.shape})")
    if n and y.min() < 0:
        raise DataError(f"{path}: {name} must be class indices from 0 (got {y.min()})")
    return y.astype(np.int64)


@register_dataset("npz")
def load_npz(data_dir: Path):
    """Read the file that ``data.data_dir`` names."""
    path = Path(data_dir)
    if not path.is_file():
        raise DataError(f"data.name npz reads one .npz file with arrays {', '.join(ARRAYS)}: "
                        f"pass its path as --data-dir (got {path}, which is not a file)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [a for a in ARRAYS if a not in npz]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)} (it has "
                                f"{', '.join(npz.files) or 'none'}); save x_train, y_train, "
                                f"x_test, y_test with numpy.savez")
            arrays = {a: npz[a] for a in ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    x_train = _images(path, "x_train", arrays["x_train"])
    x_test = _images(path, "x_test", arrays["x_test"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: x_train images are {x_train.shape[1:]} (C, H, W) but x_test "
                        f"images are {x_test.shape[1:]}; both must have one shape")
    y_train = _labels(path, "y_train", arrays["y_train"], len(x_train))
    y_test = _labels(path, "y_test", arrays["y_test"], len(x_test))
    classes = check_classes(y_train, f"{path}: y_train")
    if len(y_test) and y_test.max() >= classes:
        raise DataError(f"{path}: y_test has class {int(y_test.max())}, which y_train never "
                        f"uses (classes 0..{classes - 1}); every test class must be trained")
    mean, std = channel_stats(x_train)  # in chunks, float64: no float copy of the set
    channels, size = x_train.shape[1], x_train.shape[2]
    info = DatasetInfo("npz", classes, channels, size, mean=mean, std=std, augment="none")
    return (ArrayDataset(torch.from_numpy(x_train), torch.from_numpy(y_train), classes),
            ArrayDataset(torch.from_numpy(x_test), torch.from_numpy(y_test), classes), info)
