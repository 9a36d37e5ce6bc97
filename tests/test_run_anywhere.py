"""A run directory works from anywhere: data paths recorded resolved, eval / --resume /
pseudo-label from another directory, a data file replaced at the same path refused, a damaged
config.yaml named in one line."""

import shutil

import numpy as np
import pytest
import yaml

from torchawp.data.store_import import import_store

from .data.test_npz import TRAIN, make
from .test_cli import run_cli


@pytest.fixture
def places(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    return tmp_path


def test_a_run_on_relative_paths_works_from_another_directory(places, capsys, monkeypatch):
    make(places / "here" / "mine.npz")
    code, _, err = run_cli(capsys, "train", "--data-dir", "mine.npz", "--out-dir", "run",
                           "--data.train-subset", "80", *TRAIN)
    assert code == 0, err
    saved = yaml.safe_load((places / "here" / "run" / "config.yaml").read_text())
    assert saved["data"]["data_dir"] == str(places / "here" / "mine.npz")
    monkeypatch.chdir(places / "elsewhere")
    run = str(places / "here" / "run")
    code, _, err = run_cli(capsys, "eval", run, "--attacks", "pgd2", "--no-checks")
    assert code == 0, err
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert code == 0, err
    code, out, err = run_cli(capsys, "pseudo-label", run, "--out", "labels.npz")
    assert code == 0 and "labelled 20 of 20 images" in out, err
    assert (places / "elsewhere" / "labels.npz").is_file()


def _store(src, out):
    shutil.rmtree(out, ignore_errors=True)
    import_store(src, out)


def test_a_store_imported_again_at_the_same_path_is_refused_on_resume_and_eval(places, capsys):
    store = places / "here" / "store"
    _store(make(places / "a.npz"), store)
    train = ["--dataset", "store", "--data-dir", "store", *TRAIN[2:]]
    code, _, err = run_cli(capsys, "train", "--out-dir", "run", *train)
    assert code == 0, err
    g = np.random.default_rng(5)  # other images, same shapes and classes
    _store(make(places / "b.npz", x_train=g.integers(0, 255, (120, 12, 12, 3), np.uint8)), store)
    before = sorted(p.name for p in (places / "here" / "run").iterdir())
    code, _, err = run_cli(capsys, "train", "--resume", "run", "--epochs", "2")
    assert code == 2 and err.count("\n") == 1, err
    assert "the data at its recorded path is not the file the checkpoint was trained on" in err
    assert sorted(p.name for p in (places / "here" / "run").iterdir()) == before
    code, _, err = run_cli(capsys, "eval", "run", "--attacks", "pgd2", "--no-checks")
    assert code == 2 and "not the file the checkpoint was trained on" in err
    # other data named on purpose is measured, and said
    code, _, err = run_cli(capsys, "eval", "run", "--attacks", "pgd2", "--no-checks",
                           "--data-dir", "store")
    assert code == 0 and "holds other data than the run trained on" in err
    (places / "moved").mkdir()
    (places / "a.npz").rename(places / "moved" / "a.npz")
    _store(places / "moved" / "a.npz", store)  # the same content again, from elsewhere: resumes
    code, _, err = run_cli(capsys, "train", "--resume", "run", "--epochs", "2")
    assert code == 0, err


@pytest.mark.parametrize("text", ["", "[1, 2]\n"])
def test_an_empty_or_malformed_run_config_is_one_line_naming_the_file(places, capsys,
                                                                      two_epochs, text):
    from .helpers import copy_run

    run = copy_run(two_epochs.run_dir, places / "here" / "run")
    (run / "config.yaml").write_text(text)
    code, _, err = run_cli(capsys, "train", "--resume", "run")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("torchawp: error: run/config.yaml is empty or not a mapping")
