"""``torchawp data import``: a source converted into an image store, chunk by chunk.

Sources: our ``.npz`` (x_train, y_train, x_test, y_test), RST extra data (images, labels),
DM-Improves-AT generated data (image, label), RST's ``ti_500K_pseudo_labeled.pickle`` (data,
extrapolated_targets; through the restricted unpickler) and image folders. ``.npz`` members are
streamed from the zip archive (stored or deflated) without reading an array whole.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..errors import DataError
from .stats import CHUNK, ChannelStats, check_classes, check_finite
from .store import DTYPES, FORMAT, SPLITS, VERSION, progress_bar


# ---------------------------------------------------------------------- sources
@dataclass
class Source:
    """One split of an import source: its size, per-image shape (C, H, W), dtype, labels, and
    a function yielding N x C x H x W image chunks in order."""

    count: int
    shape: tuple
    dtype: np.dtype
    labels: np.ndarray
    chunks: Callable[[], Iterator[np.ndarray]]


def _to_nchw(x: np.ndarray, channels_last: bool) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    return x.transpose(0, 3, 1, 2) if channels_last else x


def _channels_last(shape: tuple) -> bool:
    """N x H x W x C with few channels (C <= 4 and the last axis smaller than the second)."""
    return len(shape) == 4 and shape[3] <= 4 and shape[3] < shape[1]


def _npy_member(zf: zipfile.ZipFile, path: Path, name: str):
    """Header of the array ``name`` inside an .npz, and an opener for its data stream."""
    member = name + ".npy"
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if fortran or dtype.hasobject:
        kind = "Fortran-ordered" if fortran else "of Python objects"
        raise DataError(f"{path}: array {name!r} is {kind}; save it with numpy.savez from a "
                        f"C-ordered numeric array")
    return shape, dtype, member, offset


def _npz_array_source(path: Path, zf: zipfile.ZipFile, image_key: str, label_key: str) -> Source:
    shape, dtype, member, offset = _npy_member(zf, path, image_key)
    labels = _read_labels(path, zf, label_key)
    if len(shape) not in (3, 4):
        raise DataError(f"{path}: {image_key} must be N x H x W x C, N x C x H x W or N x H x W "
                        f"(got shape {shape})")
    if len(labels) != shape[0]:
        raise DataError(f"{path}: {shape[0]} images in {image_key!r} but {len(labels)} labels "
                        f"in {label_key!r}; both arrays need one entry per image")
    if dtype not in DTYPES:
        raise DataError(f"{path}: {image_key} is {dtype}; a store holds uint8 images in "
                        f"[0, 255] or float32 in [0, 1]: convert the array first")
    last = _channels_last(shape)
    per_image = tuple(shape[1:]) if len(shape) == 4 else (1,) + tuple(shape[1:])
    nchw = (per_image[2],) + per_image[:2] if last else per_image
    row_bytes = int(np.prod(shape[1:])) * dtype.itemsize

    def chunks():
        with zipfile.ZipFile(path) as z, z.open(member) as f:
            f.seek(offset) if f.seekable() else f.read(offset)
            done = 0
            while done < shape[0]:
                k = min(CHUNK, shape[0] - done)
                block = f.read(k * row_bytes)
                if len(block) != k * row_bytes:
                    got = done + len(block) // row_bytes
                    raise DataError(f"{path}: {image_key} ends after {got} of {shape[0]} "
                                    f"images; the file is truncated")
                x = np.frombuffer(block, dtype=dtype).reshape((k,) + tuple(shape[1:]))
                yield np.ascontiguousarray(_to_nchw(x, last))
                done += k

    return Source(shape[0], nchw, dtype, labels, chunks)


def _read_labels(path: Path, zf: zipfile.ZipFile, key: str) -> np.ndarray:
    with zf.open(key + ".npy") as f:
        labels = np.lib.format.read_array(f, allow_pickle=False)
    return _check_labels(path, key, labels)


def _check_labels(path: Path, key: str, labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {key} must be one integer class per image (got "
                        f"{labels.dtype} {labels.shape})")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path}: {key} must be class indices from 0 (got {labels.min()})")
    return labels.astype(np.int64)


NPZ_LAYOUTS = {  # arrays -> (layout name, {split: (images, labels)})
    ("x_test", "x_train", "y_test", "y_train"): (
        "torchawp npz", {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}),
    ("images", "labels"): ("RST extra data", {"train": ("images", "labels")}),
    ("image", "label"): ("DM-Improves-AT generated data", {"train": ("image", "label")}),
}


def _npz_sources(path: Path) -> tuple[str, dict[str, Source]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    with zf:
        names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        for arrays, (layout, splits) in NPZ_LAYOUTS.items():
            if set(arrays) <= names:
                try:
                    return layout, {split: _npz_array_source(path, zf, *keys)
                                    for split, keys in splits.items()}
                except (ValueError, zipfile.BadZipFile, EOFError) as exc:
                    raise DataError(f"{path}: an array could not be read ({exc})") from None
    has = ", ".join(sorted(names)) or "no arrays"
    raise DataError(f"{path} is in none of the known layouts (it has {has}); {_KNOWN}")


def _pickle_sources(path: Path) -> tuple[str, dict[str, Source]]:
    """RST's ``ti_500K_pseudo_labeled.pickle``: ``data`` (N x 32 x 32 x 3 uint8) and
    ``extrapolated_targets``, through the restricted unpickler (no code runs). A pickle is read
    whole: it has no chunked form."""
    from .cifar import _SafeUnpickler

    try:
        with open(path, "rb") as f:
            data = _SafeUnpickler(f).load()
    except Exception as exc:  # corrupt, truncated or hostile pickles all end here
        raise DataError(f"{path} is not a readable pickle of plain arrays ({exc})") from None
    if not isinstance(data, dict) or "data" not in data or "extrapolated_targets" not in data:
        keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path} is a pickle without 'data' and 'extrapolated_targets' (it has "
                        f"{keys}); {_KNOWN}")
    images = np.asarray(data["data"])
    labels = _check_labels(path, "extrapolated_targets", data["extrapolated_targets"])
    return "RST pickle", {"train": _memory_source(path, images, labels)}


def _memory_source(path: Path, images: np.ndarray, labels: np.ndarray) -> Source:
    if images.ndim not in (3, 4) or len(images) != len(labels):
        raise DataError(f"{path}: {len(images)} images of shape {images.shape[1:]} and "
                        f"{len(labels)} labels; need N images (N x H x W x C) and N labels")
    if images.dtype not in DTYPES:
        raise DataError(f"{path}: images are {images.dtype}; a store holds uint8 in [0, 255] "
                        f"or float32 in [0, 1]")
    x = _to_nchw(images, _channels_last(images.shape))

    def chunks():
        for start in range(0, len(x), CHUNK):
            yield np.ascontiguousarray(x[start:start + CHUNK])

    return Source(len(x), tuple(x.shape[1:]), images.dtype, labels, chunks)


def _folder_sources(root: Path, image_size: Optional[int]) -> tuple[str, dict[str, Source]]:
    """``ROOT/train/CLASS/*`` (and ``ROOT/test/CLASS/*``), read one image at a time."""
    from .folder import SUFFIXES, _read

    train_root = root / "train"
    if not train_root.is_dir():
        raise DataError(f"{root} is a folder without train/; {_KNOWN}")
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    sources = {}
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        unknown = sorted(p.name for p in (root / split).iterdir()
                         if p.is_dir() and p.name not in classes)
        if unknown:
            raise DataError(f"{root / split} has classes {', '.join(unknown)} that train/ lacks")
        files, labels = [], []
        for label, name in enumerate(classes):
            folder = root / split / name
            for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                if p.name.startswith("."):
                    continue
                if p.suffix.lower() not in SUFFIXES:
                    raise DataError(f"{p} is not an image file; move it out of {root}")
                files.append(p)
                labels.append(label)
        if not files:
            raise DataError(f"{root / split} holds no images")
        first = _read(files[0], image_size)
        shape = (1,) + first.shape if first.ndim == 2 else (first.shape[2],) + first.shape[:2]

        def chunks(files=files, shape=shape):
            for start in range(0, len(files), CHUNK):
                block = []
                for p in files[start:start + CHUNK]:
                    x = _read(p, image_size)
                    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
                    if x.shape != shape:
                        raise DataError(f"{p} is {x.shape} (C, H, W) but {files[0]} is {shape}; "
                                        f"pass --image-size to resize every image")
                    block.append(x)
                yield np.stack(block)

        sources[split] = Source(len(files), shape, np.dtype(np.uint8),
                                np.array(labels, dtype=np.int64), chunks)
    return "image folder", sources


_KNOWN = ("known layouts: an .npz with x_train, y_train, x_test, y_test (torchawp), images and "
          "labels (RST extra data) or image and label (DM-Improves-AT); a .pickle with data "
          "and extrapolated_targets (RST); a folder ROOT/train/CLASS/*")


def read_source(src: str | Path, image_size: Optional[int] = None) -> tuple[str, dict]:
    """The layout name and splits of an import source (nothing but headers is read yet)."""
    src = Path(src)
    if src.is_dir():
        return _folder_sources(src, image_size)
    if not src.is_file():
        raise DataError(f"{src} does not exist; pass an .npz, a .pickle or an image folder")
    if image_size is not None:
        raise DataError("--image-size resizes image folders only; drop it for array files")
    if zipfile.is_zipfile(src):
        return _npz_sources(src)
    if src.suffix in (".pickle", ".pkl"):
        return _pickle_sources(src)
    raise DataError(f"{src} is in none of the known layouts; {_KNOWN}")


# ---------------------------------------------------------------------- writing a store
class _HashingWriter:
    """Writes a .npy file sequentially (never through a writable memory map, which turns a full
    disk into SIGBUS), hashing the bytes as they go; space is reserved up front, so a disk that
    cannot hold the file fails at once."""

    def __init__(self, path: Path, shape: tuple, dtype: np.dtype):
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, {
            "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": tuple(int(s) for s in shape)})
        self.file = open(path, "wb")
        self.hash = hashlib.sha256()
        total = len(header.getvalue()) + int(np.prod(shape)) * dtype.itemsize
        if hasattr(os, "posix_fallocate") and total:
            try:
                os.posix_fallocate(self.file.fileno(), 0, total)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                # filesystems without fallocate: write and see
        self.write(header.getvalue())

    def write(self, data) -> None:
        data = memoryview(data).cast("B")
        self.file.write(data)
        self.hash.update(data)

    def close(self) -> str:
        self.file.close()
        return self.hash.hexdigest()


def import_store(src: str | Path, out: str | Path, image_size: Optional[int] = None,
                 num_classes: Optional[int] = None, progress: bool = False) -> dict:
    """Convert ``src`` (see :func:`read_source`) into a store at ``out``; returns its card.

    Memory stays bounded by a chunk of :data:`CHUNK` images (plus the labels) for every source
    but RST's pickle, which is one pickled object. The store is written to a temporary
    directory beside ``out`` and renamed into place when complete; on any failure (a full disk
    included) the temporary directory is removed."""
    out = Path(out)
    if out.exists():
        raise DataError(f"{out} already exists; choose another --out (a store is never "
                        f"overwritten)")
    layout, sources = read_source(src, image_size)
    shapes = {s.shape for s in sources.values()}
    if len(shapes) != 1:
        raise DataError(f"{src}: the splits have different image shapes {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 3 or shape[1] != shape[2]:
        raise DataError(f"{src}: images are {shape} (C, H, W); torchawp's models take square "
                        f"images")
    for split, source in sources.items():
        if source.count == 0:
            raise DataError(f"{src}: the {split} split holds no images")
    classes = check_classes(np.concatenate([s.labels for s in sources.values()]),
                            f"{src}: the labels", num_classes)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        card = {"format": FORMAT, "version": VERSION, "source": str(src), "layout": layout,
                "shape": list(shape), "num_classes": classes, "splits": {}}
        for split, source in sources.items():
            card["splits"][split] = _write_split(tmp, src, split, source, shape, progress)
            if split == "train":
                card["mean"], card["std"] = card["splits"][split].pop("stats")
            else:
                card["splits"][split].pop("stats")
        (tmp / "card.json").write_text(json.dumps(card, indent=1) + "\n")
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise DataError(f"the disk filled while writing {out}; the partial store was "
                            f"removed: free space (the store needs about "
                            f"{_size_text(sources, shape)}) and import again") from None
        raise DataError(f"could not write {out} ({exc}); the partial store was removed") \
            from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def _size_text(sources: dict, shape: tuple) -> str:
    total = sum(s.count * int(np.prod(shape)) * s.dtype.itemsize for s in sources.values())
    return f"{total / 1e9:.1f} GB"


def _write_split(directory: Path, src, split: str, source: Source, shape: tuple,
                 progress: bool) -> dict:
    images_name, labels_name = f"{split}_images.npy", f"{split}_labels.npy"
    writer = _HashingWriter(directory / images_name, (source.count,) + shape, source.dtype)
    stats = ChannelStats(shape[0])
    written = 0
    try:
        with progress_bar(source.count, f"importing {split}", progress, " images") as bar:
            for chunk in source.chunks():
                if chunk.dtype == np.float32:
                    check_finite(chunk, f"{src}: the {split} images", offset=written)
                if chunk.dtype == np.float32 and (chunk.min() < 0 or chunk.max() > 1):
                    raise DataError(f"float images must lie in [0, 1] (got {chunk.min()} to "
                                    f"{chunk.max()}); scale them first")
                writer.write(np.ascontiguousarray(chunk))
                stats.add(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    finally:
        images_hash = writer.close()
    if written != source.count:
        raise DataError(f"the source gave {written} images, its header said {source.count}")
    labels = np.ascontiguousarray(source.labels, dtype=np.int64)
    label_writer = _HashingWriter(directory / labels_name, labels.shape, labels.dtype)
    label_writer.write(labels)
    labels_hash = label_writer.close()
    return {"count": source.count, "images": images_name, "labels": labels_name,
            "sha256": {images_name: images_hash, labels_name: labels_hash},
            "stats": stats.result()}
