import gzip
import pickle

import numpy as np
import pytest
import torch

from torchawp.data import BatchLoader, augment, load_splits
from torchawp.data.idx import read_idx
from torchawp.errors import ConfigError, DataError


def test_digits_splits_are_fixed_disjoint_and_in_unit_range():
    a = load_splits("digits", val_size=200, split_seed=0)
    b = load_splits("digits", val_size=200, split_seed=0)
    c = load_splits("digits", val_size=200, split_seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (1003, 200, 594)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    assert torch.equal(a.test.images, c.test.images)  # the test set never moves
    rows = lambda d: {tuple(r) for r in d.images.flatten(1).tolist()}  # noqa: E731
    assert not rows(a.val) & rows(a.test) - rows(a.train)  # val is drawn from train only
    assert a.train.images.min() >= 0 and a.train.images.max() <= 1
    assert a.info.in_channels == 1 and a.info.image_size == 8


def _write_idx(path, array, compress):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_dataset_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for split, n in (("train", 50), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)),
                   compress)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n),
                   compress)
    s = load_splits("fashion-mnist", str(tmp_path), val_size=10)
    assert (len(s.train), len(s.val), len(s.test)) == (40, 10, 20)
    assert s.train.images.shape[1:] == (1, 28, 28) and s.train.images.dtype == torch.uint8


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    _write_idx(path, np.zeros((5, 4, 4)), False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_missing_dataset_names_the_expected_files(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_splits("mnist", str(tmp_path))
    with pytest.raises(DataError, match="data_batch_1.*cifar-10-python.tar.gz"):
        load_splits("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="train_32x32.mat"):
        load_splits("svhn", str(tmp_path))


def _cifar_batch(n, rng):
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist()}


def test_cifar10_pickles_are_read(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        pickle.dump(_cifar_batch(20, rng), open(folder / f"data_batch_{i}", "wb"))
    test = _cifar_batch(10, rng)
    pickle.dump(test, open(folder / "test_batch", "wb"))
    s = load_splits("cifar10", str(tmp_path), val_size=10)
    assert (len(s.train), len(s.val), len(s.test)) == (90, 10, 10)
    assert torch.equal(s.test.images[0], torch.from_numpy(test[b"data"][0].reshape(3, 32, 32)))
    assert s.info.augment == "crop-flip"


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, open(folder / name, "wb"))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_splits("cifar10", str(tmp_path))


def test_svhn_mat_is_read_with_label_10_as_0(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", 30), ("test_32x32.mat", 12)):
        y = rng.integers(1, 11, (n, 1))
        y[0] = 10
        savemat(tmp_path / name, {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                  "y": y})
    s = load_splits("svhn", str(tmp_path), val_size=5)
    assert s.test.labels[0] == 0 and s.test.labels.max() <= 9
    assert s.train.images.shape[1:] == (3, 32, 32)


def test_corrupt_svhn_mat_is_a_clear_error(tmp_path):
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (tmp_path / name).write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    with pytest.raises(DataError, match="not a readable SVHN"):
        load_splits("svhn", str(tmp_path))


def test_unknown_dataset_and_oversized_val_split():
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        load_splits("cifar-10")
    with pytest.raises(ConfigError, match="val_size"):
        load_splits("digits", val_size=5000)


def test_crop_flip_augmentation_shifts_and_flips_within_padding():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) / 400
    g = torch.Generator().manual_seed(0)
    out = augment(x, "crop-flip", g)
    assert out.shape == x.shape
    # every output pixel is either padding (0) or a pixel of the same image and channel
    for i in range(2):
        for c in range(3):
            assert set(out[i, c].flatten().tolist()) <= set(x[i, c].flatten().tolist()) | {0.0}
    assert torch.equal(augment(x, "none", g), x)


def test_batch_loader_is_reproducible_and_covers_the_data(digits_splits):
    data = digits_splits.train
    a = BatchLoader(data, 100, shuffle=True, generator=torch.Generator().manual_seed(3))
    b = BatchLoader(data, 100, shuffle=True, generator=torch.Generator().manual_seed(3))
    ya = torch.cat([y for _, y in a])
    yb = torch.cat([y for _, y in b])
    assert torch.equal(ya, yb) and len(ya) == len(data) and len(a) == 11
    assert torch.equal(ya.sort().values, data.labels.sort().values)


def test_batch_loader_shards_across_ranks(digits_splits):
    data = digits_splits.train
    parts = [torch.cat([y for _, y in BatchLoader(data, 100, shuffle=True, drop_last=False,
                                                   generator=torch.Generator().manual_seed(3),
                                                   rank=r, world_size=2)]) for r in (0, 1)]
    assert len(parts[0]) + len(parts[1]) == len(data)


def test_rst_batches_mix_the_requested_fraction_of_extra_data(digits_splits):
    from torchawp.data import ArrayDataset

    extra = ArrayDataset(torch.zeros(300, 1, 8, 8), torch.full((300,), 9), 10)
    labelled = ArrayDataset(torch.ones(400, 1, 8, 8), torch.zeros(400, dtype=torch.long), 10)
    loader = BatchLoader(labelled, 64, shuffle=True, extra=extra, extra_fraction=0.5)
    batches = list(loader)
    assert len(batches) == len(loader) == 13
    for x, y in batches[:-1]:
        assert len(y) == 64 and (y == 9).sum() == 32
        assert torch.equal((x.flatten(1)[:, 0] == 0), y == 9)  # images and labels stay paired


def test_truncated_cifar_pickle_is_a_clear_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pickle.dump(_cifar_batch(5, rng), open(folder / name, "wb"))
    raw = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR batch"):
        load_splits("cifar10", str(tmp_path))


@pytest.mark.parametrize("labels,message", [([0, 3, 12], r"labels must lie in \[0, 9\]"),
                                            ([0.5, 1.0, 2.0], "must be 3 integers")])
def test_rst_extra_data_with_bad_labels_is_rejected(tmp_path, labels, message):
    from torchawp.data import load_extra

    path = tmp_path / "extra.npz"
    np.savez(path, images=np.zeros((3, 8, 8, 1), dtype=np.uint8), labels=np.array(labels))
    with pytest.raises(DataError, match=message):
        load_extra(path, 10, 1, 8)


def test_rst_extra_data_of_the_wrong_shape_is_rejected(tmp_path):
    from torchawp.data import load_extra

    path = tmp_path / "extra.npz"
    np.savez(path, images=np.zeros((3, 28, 28, 1), dtype=np.uint8), labels=np.zeros(3, int))
    with pytest.raises(DataError, match="labelled data"):
        load_extra(path, 10, 1, 8)
