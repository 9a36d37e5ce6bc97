"""Datasets by name, read from local standard layouts (nothing is downloaded)."""

from . import cifar, digits, folder, idx, npz, svhn  # noqa: F401  (registration)
from .base import (DATASETS, ArrayDataset, BatchLoader, DatasetInfo, Splits, augment,
                   load_splits, register_dataset, to_float)
from .extra import load_extra, save_extra

__all__ = ["DATASETS", "ArrayDataset", "BatchLoader", "DatasetInfo", "Splits", "augment",
           "load_extra", "load_splits", "register_dataset", "save_extra", "to_float"]
