"""Image stores: every import layout, training from disk bit-identical to memory, bad input."""

import errno
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import torchawp
from torchawp.io.checkpoint import read_weights
from torchawp.data import BatchLoader, load_splits
from torchawp.data.mapped import gather
from torchawp.data.stats import channel_stats
from torchawp.data.store import open_store, verify_store
from torchawp.data.store_import import import_store
from torchawp.errors import DataError
from torchawp.training.trainer import Trainer, TrainingInterrupted

from ..helpers import tiny_config



def cli(*args):
    """``torchawp ARGS`` in this process (a subprocess would pay torch's import each time),
    with its exit status and what it printed."""
    import contextlib
    import io
    from types import SimpleNamespace

    from torchawp.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    """Digits as our .npz layout, uint8 NHWC (the shape users save)."""
    splits = load_splits("digits", val_size=0)
    to_u8 = lambda t: (t.images.float() * 255).round().byte().permute(0, 2, 3, 1).numpy()  # noqa
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez(path, x_train=to_u8(splits.train), y_train=splits.train.labels.numpy(),
             x_test=to_u8(splits.test), y_test=splits.test.labels.numpy())
    return path


@pytest.fixture(scope="module")
def digits_store(digits_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "digits"
    import_store(digits_npz, out)
    return out


def test_import_of_our_npz_keeps_every_image_label_and_the_mean_and_std(digits_npz,
                                                                         digits_store):
    store = open_store(digits_store)
    with np.load(digits_npz) as npz:
        x_train, y_train = npz["x_train"].transpose(0, 3, 1, 2), npz["y_train"]
        x_test = npz["x_test"].transpose(0, 3, 1, 2)
    train, test = store.split("train"), store.split("test")
    assert torch.equal(train.images[:], torch.from_numpy(x_train))
    assert torch.equal(train.labels, torch.from_numpy(y_train))
    assert torch.equal(test.images[:], torch.from_numpy(x_test))
    x = torch.from_numpy(x_train).double() / 255
    assert store.card["mean"] == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-12)
    assert store.card["std"] == pytest.approx(x.std(dim=(0, 2, 3)).tolist(), abs=1e-12)
    assert store.card["num_classes"] == 10 and store.card["shape"] == [1, 8, 8]
    assert len(verify_store(digits_store)) == 4


def test_gather_returns_rows_in_the_order_asked(digits_store):
    array = open_store(digits_store).split("train").images.array
    rows = np.array([5, 2, 900, 2, 0])
    assert np.array_equal(gather(array, rows).numpy(), array[rows])


def test_channel_stats_do_not_depend_on_the_chunking():
    x = np.random.default_rng(0).random((50, 3, 4, 4), dtype=np.float32)
    import torchawp.data.stats as store
    whole = channel_stats(x)
    old, store.CHUNK = store.CHUNK, 7
    try:
        chunked = channel_stats(x)
    finally:
        store.CHUNK = old
    assert chunked[0] == pytest.approx(whole[0], abs=1e-12)
    assert chunked[1] == pytest.approx(whole[1], abs=1e-12)
    t = torch.from_numpy(x).double()
    assert whole[1] == pytest.approx(t.std(dim=(0, 2, 3)).tolist(), abs=1e-12)


@pytest.mark.parametrize("layout", ["dm", "rst-npz", "rst-pickle", "folder"])
def test_every_import_layout_gives_the_same_store_contents(tmp_path, layout):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (37, 6, 6, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, 37)
    if layout == "dm":
        src = tmp_path / "gen.npz"
        np.savez(src, image=images, label=labels)
    elif layout == "rst-npz":
        src = tmp_path / "extra.npz"
        np.savez(src, images=images, labels=labels)
    elif layout == "rst-pickle":
        src = tmp_path / "ti_500K_pseudo_labeled.pickle"
        src.write_bytes(pickle.dumps({"data": images, "extrapolated_targets": labels}))
    else:
        from PIL import Image
        src = tmp_path / "folder"
        order = np.argsort(labels, kind="stable")  # a folder lists class by class
        for i in order:
            d = src / "train" / f"c{labels[i]}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(d / f"{i:03d}.png")
        images, labels = images[order], labels[order]
    card = import_store(src, tmp_path / "store")
    train = open_store(tmp_path / "store").split("train")
    assert card["splits"]["train"]["count"] == 37
    assert np.array_equal(train.images[:].numpy(), images.transpose(0, 3, 1, 2))
    assert np.array_equal(train.labels.numpy(), labels)
    assert verify_store(tmp_path / "store")


def test_a_pickle_with_code_is_refused_without_running_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    src = tmp_path / "bad.pickle"
    src.write_bytes(pickle.dumps({"data": Evil(), "extrapolated_targets": [0]}))
    with pytest.raises(DataError, match="not a readable pickle"):
        import_store(src, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def _store_config(out_dir, name, data_dir, **data):
    cfg = tiny_config(out_dir, epochs=2)
    cfg.data.name, cfg.data.data_dir = name, str(data_dir)
    cfg.data.val_size, cfg.data.augment = 100, "crop-flip"
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def _same_weights(a, b):
    wa = read_weights(Path(a) / "last.safetensors")[0]
    wb = read_weights(Path(b) / "last.safetensors")[0]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_training_from_a_store_is_bit_identical_to_training_in_memory(tmp_path, digits_npz,
                                                                      digits_store):
    memory = torchawp.train(_store_config(tmp_path / "npz", "npz", digits_npz))
    disk = torchawp.train(_store_config(tmp_path / "store", "store", digits_store))
    assert _same_weights(memory.run_dir, disk.run_dir)
    for a, b in zip(memory.history, disk.history):
        assert a["test_robust_acc"] == b["test_robust_acc"]
        assert a["train_loss"] == b["train_loss"]


def test_extra_data_from_a_store_equals_the_same_npz_for_at(tmp_path, digits_npz):
    rng = np.random.default_rng(2)
    extra = tmp_path / "extra.npz"
    np.savez(extra, images=rng.integers(0, 256, (300, 8, 8, 1), dtype=np.uint8),
             labels=rng.integers(0, 10, 300))
    import_store(extra, tmp_path / "extra_store")
    runs = [torchawp.train(_store_config(tmp_path / name, "npz", digits_npz, extra_data=str(e),
                                         extra_fraction=0.3), method="at")
            for name, e in (("a", extra), ("b", tmp_path / "extra_store"))]
    assert _same_weights(runs[0].run_dir, runs[1].run_dir)
    # the extra images are really in the batches: without them the run differs
    plain = torchawp.train(_store_config(tmp_path / "c", "npz", digits_npz), method="at")
    assert not _same_weights(runs[0].run_dir, plain.run_dir)


def test_resume_mid_epoch_from_a_store_is_bit_identical(tmp_path, digits_store):
    reference = torchawp.train(_store_config(tmp_path / "ref", "store", digits_store))
    trainer = Trainer(_store_config(tmp_path / "run", "store", digits_store))
    step, calls = trainer.train_step, []

    def step_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == trainer.steps_per_epoch + 2:  # two steps into the second epoch
            trainer._on_signal("SIGTERM")
        return step(*args, **kwargs)

    trainer.train_step = step_then_stop
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    resumed = torchawp.train(_store_config(tmp_path / "run", "store", digits_store,
                                           ), resume=True)
    assert _same_weights(resumed.run_dir, reference.run_dir)


def test_ddp_ranks_read_only_their_own_rows(digits_store):
    train = open_store(digits_store).split("train")
    seen = []
    for rank in (0, 1):
        loader = BatchLoader(train, 64, shuffle=True, rank=rank, world_size=2, drop_last=True,
                             generator=torch.Generator().manual_seed(0))
        rows = [loader.data.images.rows(index) for index, _ in loader._plan()]
        seen.append(set(np.concatenate(rows).tolist()))
    assert not seen[0] & seen[1] and len(seen[0]) == len(seen[1])


# ---------------------------------------------------------------------- bad input
def _copy_store(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_arrays_that_disagree_in_length_are_one_line(tmp_path, digits_store):
    store = _copy_store(digits_store, tmp_path / "s")
    np.save(store / "train_labels.npy", np.zeros(5, dtype=np.int64))
    with pytest.raises(DataError, match="train_labels.npy has shape \\(5,\\), its card says"):
        open_store(store)


def test_a_wrong_dtype_is_one_line(tmp_path, digits_store):
    store = _copy_store(digits_store, tmp_path / "s")
    x = np.load(store / "train_images.npy")
    np.save(store / "train_images.npy", x.astype(np.int16))
    with pytest.raises(DataError, match="holds int16, the store needs uint8 or float32"):
        open_store(store)


def test_a_truncated_npy_is_one_line(tmp_path, digits_store):
    store = _copy_store(digits_store, tmp_path / "s")
    path = store / "train_images.npy"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated or damaged"):
        open_store(store)


def test_labels_out_of_range_are_one_line(tmp_path, digits_store):
    store = _copy_store(digits_store, tmp_path / "s")
    labels = np.load(store / "train_labels.npy")
    labels[3] = 12
    np.save(store / "train_labels.npy", labels)
    with pytest.raises(DataError, match="labels must lie in \\[0, 9\\] \\(got 0..12\\)"):
        open_store(store)


def test_a_card_whose_hash_does_not_match_fails_verify_in_one_line(tmp_path, digits_store):
    store = _copy_store(digits_store, tmp_path / "s")
    x = np.load(store / "train_images.npy")
    x[0, 0, 0, 0] ^= 1
    np.save(store / "train_images.npy", x)
    result = cli("data", "verify", store)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "train_images.npy fails its SHA-256 check" in lines[-1]


def test_an_unknown_import_layout_is_one_line(tmp_path):
    src = tmp_path / "other.npz"
    np.savez(src, pixels=np.zeros((2, 4, 4), dtype=np.uint8))
    result = cli("data", "import", src, "--out-dir", tmp_path / "store")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"torchawp: error: {src} is in none of the known layouts (it has pixels)")
    assert not (tmp_path / "store").exists()


def test_a_disk_that_fills_during_import_leaves_nothing_behind(tmp_path, digits_npz,
                                                               monkeypatch):
    import torchawp.data.store_import as store
    writes = []

    def full(self, data):
        writes.append(1)
        if len(writes) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.file.write(data)

    monkeypatch.setattr(store._HashingWriter, "write", full)
    with pytest.raises(DataError, match="the disk filled while writing .*partial store was "
                                        "removed"):
        import_store(digits_npz, tmp_path / "store")
    assert list(tmp_path.iterdir()) == []  # no store, no partial directory


def test_importing_over_an_existing_path_is_refused(tmp_path, digits_npz):
    (tmp_path / "store").mkdir()
    with pytest.raises(DataError, match="already exists"):
        import_store(digits_npz, tmp_path / "store")


def test_a_store_without_a_test_split_cannot_be_the_training_data(tmp_path):
    src = tmp_path / "gen.npz"
    np.savez(src, image=np.zeros((10, 8, 8, 1), np.uint8), label=np.arange(10))
    import_store(src, tmp_path / "store")
    with pytest.raises(DataError, match="has no test split.*use it as --data.extra-data"):
        load_splits("store", tmp_path / "store")


def test_an_extra_store_of_another_shape_is_one_line(tmp_path, digits_npz):
    src = tmp_path / "gen.npz"
    np.savez(src, image=np.zeros((10, 32, 32, 3), np.uint8), label=np.arange(10))
    import_store(src, tmp_path / "store")
    result = cli("train", "--method", "at", "--dataset", "npz", "--data-dir", digits_npz,
                 "--data.extra_data", tmp_path / "store", "--epochs", "1", "--out-dir",
                 tmp_path / "run", "--no-progress")
    assert result.returncode == 2
    assert "holds (3, 32, 32) images (C, H, W), the labelled data (1, 8, 8)" in result.stderr


def test_data_info_prints_the_card(digits_store):
    result = cli("data", "info", digits_store, "--json")
    assert result.returncode == 0
    card = json.loads(result.stdout)
    assert card["splits"]["train"]["count"] == 1203 and card["splits"]["test"]["count"] == 594


@pytest.mark.parametrize("padding", ["zero", "reflect"])
@pytest.mark.parametrize("kind", ["crop", "crop-flip"])
def test_augmentation_on_uint8_equals_padding_then_cropping_floats(padding, kind):
    """The loader augments uint8 batches by index arithmetic; the reference pads the float
    images with torch's own padding, crops them and flips them."""
    from torchawp.data.base import apply_augmentation, draw_augmentation, to_float

    x = torch.randint(0, 256, (64, 3, 10, 10), dtype=torch.uint8)
    dy, dx, flip = draws = draw_augmentation(64, kind, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(to_float(x), (4, 4, 4, 4),
                                     mode="reflect" if padding == "reflect" else "constant")
    expected = torch.stack([padded[i, :, dy[i]:dy[i] + 10, dx[i]:dx[i] + 10]
                            for i in range(64)])
    if flip is not None:
        expected = torch.where(flip[:, None, None, None], expected.flip(3), expected)
    assert torch.equal(to_float(apply_augmentation(x, draws, padding)), expected)
    assert torch.equal(apply_augmentation(to_float(x), draws, padding), expected)


@pytest.mark.parametrize("arrays, args, message", [
    ({"images": np.full((30, 8, 8), np.nan, np.float32), "labels": np.zeros(30, np.int64)}, (),
     "the train images holds NaN or infinite values (the first in image 0)"),
    ({"images": np.zeros((30, 8, 8), np.uint8), "labels": np.arange(30) * 952994 // 29}, (),
     "uses 30 distinct labels but its largest is 952,994"),
    ({"images": np.zeros((0, 8, 8), np.uint8), "labels": np.zeros(0, np.int64)}, (),
     "the train split holds no images"),
    ({"images": np.zeros((30, 8, 8), np.uint8), "labels": np.full(30, 5)}, ("--num-classes", 3),
     "reaches class 5, beyond num_classes 3"),
])
def test_bad_images_and_labels_are_refused_on_import(tmp_path, arrays, args, message):
    src, out = tmp_path / "bad.npz", tmp_path / "store"
    np.savez(src, **arrays)
    r = cli("data", "import", src, "--out-dir", out, "--no-progress", *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr and str(src) in r.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad.npz"]


def test_labels_with_gaps_import_when_num_classes_says_so(tmp_path):
    src = tmp_path / "gaps.npz"
    np.savez(src, images=np.zeros((30, 8, 8), np.uint8), labels=np.arange(30) % 2 * 2)
    assert import_store(src, tmp_path / "store", num_classes=3)["num_classes"] == 3


def test_a_store_imported_from_nan_images_is_refused_at_open(tmp_path, digits_store):
    bad = tmp_path / "store"
    import shutil

    shutil.copytree(digits_store, bad)
    card = json.loads((bad / "card.json").read_text())
    card["mean"] = [float("nan")]
    (bad / "card.json").write_text(json.dumps(card))
    with pytest.raises(DataError, match="imported from images with NaN"):
        open_store(bad)


def test_data_info_prints_the_card_in_a_few_lines(digits_store):
    result = cli("data", "info", digits_store)
    assert result.returncode == 0
    assert "train: 1,203 images" in result.stdout and "test: 594 images" in result.stdout
    assert "images 1 x 8 x 8 (C x H x W), 10 classes" in result.stdout
