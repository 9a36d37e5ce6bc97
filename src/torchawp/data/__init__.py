"""Datasets by name, read from local standard layouts (nothing is downloaded)."""

from . import cifar, digits, folder, idx, npz, store, svhn  # noqa: F401  (registration)
from .base import (DATASETS, ArrayDataset, BatchLoader, DatasetInfo, Splits, augment,
                   load_splits, register_dataset, to_float)
from .extra import load_extra, save_extra
from .fingerprint import changed_data, data_fingerprint
from .store import open_store, verify_store
from .store_import import import_store

__all__ = ["DATASETS", "ArrayDataset", "BatchLoader", "DatasetInfo", "Splits", "augment",
           "changed_data", "data_fingerprint", "import_store", "load_extra", "load_splits",
           "open_store", "register_dataset",
           "save_extra", "to_float", "verify_store"]
