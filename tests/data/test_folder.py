"""Your own images in an ImageFolder layout train and evaluate from the command line; every
malformed folder is one line naming the file or folder and the fix."""

import json

import numpy as np
import pytest
from PIL import Image

from torchawp.cli import main

from .test_npz import TRAIN

TRAIN = [a if a != "npz" else "folder" for a in TRAIN]


def make(root, size=10, per_class=(20, 6), classes=("cat", "dog", "eel"), mode="RGB"):
    g = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (size, size, 3) if mode == "RGB" else (size, size)
                pixels = g.integers(0, 80, shape).astype(np.uint8) + 80 * label
                Image.fromarray(pixels.astype(np.uint8), mode=mode).save(folder / f"{i}.png")
    return root


def test_an_image_folder_trains_and_evaluates(tmp_path, capsys):
    root = make(tmp_path / "imgs")
    run = tmp_path / "run"
    code = main(["train", "--data-dir", str(root), "--out-dir", str(run), *TRAIN,
                 "--data.image_size", "8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "at on folder (small_cnn)" in out
    assert main(["eval", str(run), "--attacks", "pgd2", "--no-checks"]) == 0
    report = json.loads((run / "eval.json").read_text())[0]
    assert report["dataset"] == "folder" and report["n"] == 18


@pytest.mark.parametrize("damage,message", [
    (lambda r: [p.unlink() for p in (r / "train" / "dog").iterdir()], "holds no images"),
    (lambda r: (r / "train" / "cat" / "notes.txt").write_text("x"), "notes.txt is not an image"),
    (lambda r: (r / "train" / "cat" / "bad.png").write_bytes(b"not a png"),
     "bad.png is not a readable image"),
    (lambda r: Image.new("RGB", (12, 12)).save(r / "train" / "eel" / "big.png"),
     "must share one size and colour mode, or set data.image_size"),
    (lambda r: (r / "test" / "fox").mkdir(), "has classes fox that train/ lacks"),
])
def test_a_malformed_image_folder_is_one_line(tmp_path, capsys, damage, message):
    root = make(tmp_path / "imgs")
    damage(root)
    code = main(["train", "--data-dir", str(root), "--out-dir", str(tmp_path / "r"), *TRAIN])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1, err
    assert message in err


def test_image_size_is_for_image_folders_only(tmp_path, capsys):
    code = main(["train", "--data.image_size", "8", "--epochs", "1", "--awp.warmup_epochs", "0",
                 "--out-dir", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert code == 2 and "resizes image folders (data.name folder) only" in err
