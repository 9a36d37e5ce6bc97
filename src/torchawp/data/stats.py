"""Per-channel mean and std of image sets too large for a float copy (in chunks, in float64), and
the checks every image source shares: finite values, labels 0..K-1."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import DataError

CHUNK = 8192  # images per chunk


class ChannelStats:
    """Per-channel mean and (unbiased) std of images in [0, 1], accumulated chunk by chunk in
    float64: no float copy of the whole set. uint8 images are counted into a histogram per
    channel (exact, and independent of the chunking); float images are merged with Chan et
    al.'s parallel update."""

    def __init__(self, channels: int):
        self.histogram = np.zeros((channels, 256), dtype=np.int64)
        self.n = 0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)

    def add(self, chunk: np.ndarray) -> None:
        """``chunk``: N x C x H x W, uint8 (scaled by 1/255) or float."""
        if chunk.dtype == np.uint8:
            for c in range(chunk.shape[1]):
                self.histogram[c] += np.bincount(chunk[:, c].ravel(), minlength=256)
            return
        x = chunk.astype(np.float64).transpose(1, 0, 2, 3).reshape(chunk.shape[1], -1)
        n = x.shape[1]
        if n == 0:
            return
        mean = x.mean(axis=1)
        m2 = ((x - mean[:, None]) ** 2).sum(axis=1)
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta ** 2 * self.n * n / total
        self.n = total

    def result(self) -> tuple[list[float], list[float]]:
        n, mean, m2 = self.n, self.mean, self.m2
        counts = self.histogram.sum(axis=1)
        if counts.any():  # uint8: moments of the histogram
            values = np.arange(256) / 255
            n = int(counts[0])
            mean = (self.histogram * values).sum(axis=1) / n
            m2 = (self.histogram * (values[None] - mean[:, None]) ** 2).sum(axis=1)
        std = np.sqrt(m2 / max(n - 1, 1))
        return mean.tolist(), np.maximum(std, 1e-6).tolist()


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and std per channel of N x C x H x W images, in chunks (see :class:`ChannelStats`)."""
    stats = ChannelStats(images.shape[1])
    for start in range(0, len(images), CHUNK):
        stats.add(np.asarray(images[start:start + CHUNK]))
    return stats.result()


def check_finite(images: np.ndarray, what: str, offset: int = 0) -> None:
    """Refuse float images with NaN or infinite values (they would train a model whose
    normalisation is NaN, printing a table of nothing), in chunks: no copy of the set.
    ``offset``: the position of ``images[0]`` in the set ``what`` names."""
    for start in range(0, len(images), CHUNK):
        chunk = np.asarray(images[start:start + CHUNK])
        bad = ~np.isfinite(chunk)
        if bad.any():
            first = offset + start + int(np.argmax(bad.reshape(len(chunk), -1).any(axis=1)))
            raise DataError(f"{what} holds NaN or infinite values (the first in image "
                            f"{first}); replace them (for "
                            f"example with numpy.nan_to_num) or drop those images")


def check_classes(labels: np.ndarray, what: str, num_classes: Optional[int] = None) -> int:
    """The number of classes ``labels`` (integers from 0) stand for: ``num_classes`` where
    given (every label below it), else largest + 1, refused when some class below the largest
    never occurs (labels 0 and 952994 are 2 classes miscoded, not 952,995)."""
    if num_classes is not None:
        if len(labels) and int(labels.max()) >= num_classes:
            raise DataError(f"{what} reaches class {int(labels.max())}, beyond num_classes "
                            f"{num_classes}; raise it or fix the labels")
        return num_classes
    classes = int(labels.max()) + 1 if len(labels) else 0
    present = int(np.count_nonzero(np.bincount(labels, minlength=classes)))
    if present < classes:
        raise DataError(f"{what} uses {present:,} distinct labels but its largest is "
                        f"{classes - 1:,}, which would make a {classes:,}-class model with "
                        f"{classes - present:,} classes never seen; labels must be 0..K-1: "
                        f"renumber them (numpy.unique(labels, return_inverse=True))")
    return classes
