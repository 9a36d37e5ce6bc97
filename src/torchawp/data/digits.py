"""scikit-learn's bundled digits: 1,797 8x8 grey images, 10 classes, no download."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import ArrayDataset, DatasetInfo, register_dataset

TEST_FRACTION = 0.33  # 594 test images, a fixed split independent of every seed


@register_dataset("digits")
def load_digits(data_dir: Path):
    """Digits (values 0-16 scaled to [0, 1]); a fixed seeded third is the test set."""
    from sklearn.datasets import load_digits as sk_load_digits  # sklearn loads slowly: on use

    bunch = sk_load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).div_(16).unsqueeze(1)
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_test = -(-int(TEST_FRACTION * 100 * len(labels)) // 100)
    test, train = order[:n_test], order[n_test:]
    full = ArrayDataset(images, labels, 10)
    info = DatasetInfo("digits", 10, 1, 8, mean=[0.305], std=[0.381], augment="none")
    return full.subset(train), full.subset(test), info
