"""CIFAR-10 / CIFAR-100 from the python pickle batches, read without running pickled code."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, DatasetInfo, register_dataset

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; anything else is refused."""

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # corrupt, truncated or hostile pickles all end here
        raise DataError(f"{path} is not a readable CIFAR batch ({exc}); "
                        f"re-extract the dataset archive") from None


def _batches(paths: list[Path], label_key: bytes, num_classes: int) -> ArrayDataset:
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{path} does not hold CIFAR data/labels ({exc}); "
                            f"re-extract the dataset archive") from None
        images.append(data)
    return ArrayDataset(torch.from_numpy(np.concatenate(images)),
                        torch.from_numpy(np.concatenate(labels)), num_classes)


def _require(paths: list[Path], name: str, folder: Path, archive: str) -> None:
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{name} not found: missing {', '.join(missing)} in {folder}; extract "
                        f"{archive} into {folder.parent} or pass --data-dir")


@register_dataset("cifar10")
def load_cifar10(data_dir: Path):
    """CIFAR-10 from ``data_dir/cifar-10-batches-py`` (data_batch_1..5, test_batch)."""
    folder = data_dir / "cifar-10-batches-py"
    train = [folder / f"data_batch_{i}" for i in range(1, 6)]
    test = [folder / "test_batch"]
    _require(train + test, "cifar10", folder, "cifar-10-python.tar.gz")
    info = DatasetInfo("cifar10", 10, 3, 32, [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616],
                       augment="crop-flip")
    return _batches(train, b"labels", 10), _batches(test, b"labels", 10), info


@register_dataset("cifar100")
def load_cifar100(data_dir: Path):
    """CIFAR-100 (fine labels) from ``data_dir/cifar-100-python`` (train, test)."""
    folder = data_dir / "cifar-100-python"
    train, test = [folder / "train"], [folder / "test"]
    _require(train + test, "cifar100", folder, "cifar-100-python.tar.gz")
    info = DatasetInfo("cifar100", 100, 3, 32, [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762],
                       augment="crop-flip")
    return _batches(train, b"fine_labels", 100), _batches(test, b"fine_labels", 100), info
