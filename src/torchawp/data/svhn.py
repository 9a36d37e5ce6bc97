"""SVHN cropped digits from ``train_32x32.mat`` / ``test_32x32.mat``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, DatasetInfo, register_dataset


def _read_mat(path: Path) -> ArrayDataset:
    from scipy.io import loadmat  # SVHN only: on use

    try:
        mat = loadmat(path)
        images = np.asarray(mat["X"], dtype=np.uint8)  # 32 x 32 x 3 x N
        labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except Exception as exc:  # truncated files, wrong keys, not a .mat at all
        raise DataError(f"{path} is not a readable SVHN .mat file ({exc}); "
                        f"download it again") from None
    labels[labels == 10] = 0  # SVHN stores the digit 0 as label 10
    return ArrayDataset(torch.from_numpy(images.transpose(3, 2, 0, 1).copy()),
                        torch.from_numpy(labels), 10)


@register_dataset("svhn")
def load_svhn(data_dir: Path):
    """SVHN from ``data_dir`` (or ``data_dir/svhn``): train_32x32.mat and test_32x32.mat."""
    for folder in (data_dir, data_dir / "svhn"):
        train, test = folder / "train_32x32.mat", folder / "test_32x32.mat"
        if train.is_file() and test.is_file():
            info = DatasetInfo("svhn", 10, 3, 32, [0.4377, 0.4438, 0.4728],
                               [0.1980, 0.2010, 0.1970], augment="none")
            return _read_mat(train), _read_mat(test), info
    raise DataError(f"svhn not found: expected train_32x32.mat and test_32x32.mat in {data_dir} "
                    f"(or {data_dir / 'svhn'}); put them there or pass --data-dir")
