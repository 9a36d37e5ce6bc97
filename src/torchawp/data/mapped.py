"""Images that stay on disk: rows of a memory-mapped array, gathered batch by batch."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch


class MappedImages:
    """Rows of a memory-mapped N x C x H x W array, optionally through a row ``index``.

    Indexing (an int tensor, an int array or a slice of positions) copies those rows into a
    torch tensor; :meth:`select` composes an index without reading anything. It stands in for
    the image tensor of an :class:`~torchawp.data.ArrayDataset`, on the CPU."""

    def __init__(self, array: np.ndarray, index: Optional[np.ndarray] = None):
        self.array, self.index = array, index
        self.dtype = torch.uint8 if array.dtype == np.uint8 else torch.float32
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else len(self.array)

    @property
    def shape(self) -> tuple:
        return (len(self),) + tuple(self.array.shape[1:])

    def dim(self) -> int:
        return self.array.ndim

    def rows(self, positions) -> np.ndarray:
        """Store rows of ``positions`` (positions in this view)."""
        if isinstance(positions, slice):
            positions = np.arange(len(self))[positions]
        positions = np.asarray(positions.cpu() if torch.is_tensor(positions) else positions)
        positions = (np.flatnonzero(positions) if positions.dtype == bool
                     else positions.astype(np.int64))
        return self.index[positions] if self.index is not None else positions

    def select(self, positions) -> "MappedImages":
        return MappedImages(self.array, self.rows(positions))

    def __getitem__(self, positions) -> torch.Tensor:
        return gather(self.array, self.rows(positions))

    def to(self, device) -> "MappedImages":
        """Stays on disk: the batch loader moves batches, not the set."""
        return self


def gather(array: np.ndarray, rows: np.ndarray, pin: bool = False) -> torch.Tensor:
    """Copy ``rows`` of a mapped array into a tensor (pinned for a CUDA copy if ``pin``),
    reading the rows in ascending order (disk locality) and returning them in the order asked."""
    order = np.argsort(rows, kind="stable")
    dtype = torch.uint8 if array.dtype == np.uint8 else torch.float32
    out = torch.empty((len(rows),) + tuple(array.shape[1:]), dtype=dtype, pin_memory=pin)
    out.numpy()[order] = np.take(array, rows[order], axis=0)
    return out
