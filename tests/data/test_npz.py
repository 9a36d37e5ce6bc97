"""Your own data as one .npz: it trains and evaluates from the command line, and every malformed
file is one line naming the file and the fix."""

import json

import numpy as np
import pytest

from torchawp.cli import main

TRAIN = ["--dataset", "npz", "--data.val_size", "20", "--model", "small_cnn",
         "--model_args", "{width: 8, hidden: 16}", "--epochs", "1", "--eps", "0.1",
         "--step-size", "0.03", "--attack.steps", "2", "--eval.steps", "2",
         "--eval.train_examples", "30", "--no-progress", "--optim.lr", "0.05",
         "--method", "at", "--no-channels-last"]


def make(path, n_train=120, n_test=40, size=12, channels=3, layout="nhwc", **replace):
    g = np.random.default_rng(0)

    def split(n):
        y = g.integers(0, 3, n)
        x = g.integers(0, 60, (n, size, size, channels)).astype(np.uint8)
        x[np.arange(n), :, :, 0] += (y * 60).astype(np.uint8)[:, None, None]  # learnable
        return (x if layout == "nhwc" else x.transpose(0, 3, 1, 2)), y

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    arrays = {**dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test), **replace}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_an_npz_trains_and_evaluates_from_the_command_line(tmp_path, capsys, layout):
    data = make(tmp_path / "mine.npz", layout=layout)
    run = tmp_path / "run"
    code = main(["train", "--data-dir", str(data), "--out-dir", str(run), *TRAIN])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "at on npz (small_cnn)" in out
    cfg_info = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= cfg_info["test_robust_acc"] <= 1
    assert main(["eval", str(run), "--attacks", "pgd2", "--no-checks"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report[0]["dataset"] == "npz" and report[0]["n"] == 40


@pytest.mark.parametrize("replace,message", [
    ({"x_test": None}, "lacks the arrays x_test"),
    ({"x_train": np.zeros((120, 12, 10, 3), np.uint8)}, "take square images"),
    ({"x_test": np.full((40, 12, 12, 3), 2.0, np.float32)}, "uint8 in [0, 255] or float in [0, 1]"),
    ({"y_test": np.full(40, 7)}, "y_test has class 7, which y_train never uses"),
    ({"y_train": np.zeros(119, np.int64)}, "y_train must be 120 integers"),
    ({"x_test": np.zeros((40, 16, 16, 3), np.uint8)}, "both must have one shape"),
    ({"x_train": np.where(np.arange(120)[:, None, None, None] == 7, np.nan,
                          np.full((120, 12, 12, 3), 0.5, np.float32)).astype(np.float32)},
     "x_train holds NaN or infinite values (the first in image 7)"),
    ({"x_test": np.full((40, 12, 12, 3), np.inf, np.float32)}, "x_test holds NaN or infinite"),
    ({"y_train": np.where(np.arange(120) % 2, 952994, 0)},
     "y_train uses 2 distinct labels but its largest is 952,994"),
    ({"x_test": np.zeros((0, 12, 12, 3), np.uint8), "y_test": np.zeros(0, np.int64)},
     "x_test holds no images"),
])
def test_a_malformed_npz_is_one_line(tmp_path, capsys, replace, message):
    data = make(tmp_path / "bad.npz", **replace)
    code = main(["train", "--data-dir", str(data), "--out-dir", str(tmp_path / "r"), *TRAIN])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1, err
    assert message in err and str(data) in err


def test_npz_without_a_file_says_where_it_goes(tmp_path, capsys):
    code = main(["train", "--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "r"),
                 *TRAIN])
    _, err = capsys.readouterr()
    assert code == 2 and "pass its path as --data-dir" in err


def test_a_bad_npz_is_refused_by_dry_run_and_as_extra_data(tmp_path, capsys):
    nan = np.full((120, 12, 12, 3), np.nan, np.float32)
    data = make(tmp_path / "nan.npz", x_train=nan)
    code = main(["train", "--data-dir", str(data), "--dry-run", *TRAIN])
    _, err = capsys.readouterr()
    assert code == 2 and "holds NaN or infinite values" in err and err.count("\n") == 1
    extra = tmp_path / "extra.npz"
    np.savez(extra, images=nan, labels=np.zeros(120, np.int64))
    code = main(["train", "--data-dir", str(make(tmp_path / "ok.npz")), "--data.extra-data",
                 str(extra), "--out-dir", str(tmp_path / "r"), *TRAIN])
    _, err = capsys.readouterr()
    assert code == 2 and f"{extra}: images holds NaN" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_nan_tensors_are_refused_by_the_api_too():
    import torch

    from torchawp.data import ArrayDataset
    from torchawp.errors import DataError

    with pytest.raises(DataError, match="NaN or infinite"):
        ArrayDataset(torch.full((4, 1, 8, 8), float("nan")), torch.zeros(4, dtype=torch.long), 2)
