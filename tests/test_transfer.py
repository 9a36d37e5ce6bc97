"""Transfer between two trained models: the regional attack on the full image, and
``torchawp transfer``."""

import json

import pytest

from torchawp.attacks import PGD, Regional
from torchawp.attacks.regional import full
from torchawp.cli import main
from torchawp.training.run import train
from torchawp.studies.transfer import transfer

from .helpers import tiny_config
from .test_backdoor import _bn_model


def test_full_image_regional_attack_transfers_between_two_digits_models(
        digits_model, digits_splits):
    target = _bn_model(digits_splits, epochs=5)  # another architecture, trained otherwise
    x, y = digits_splits.test.tensors(0, 120)
    r = transfer(digits_model, target, x, y, Regional(full(), stop_model=target))
    assert r["attacked"] >= 100  # both models right on most images
    assert r["transfer_rate"] >= 0.9
    # the stop is on the target: every transferred example stopped as soon as it fooled the
    # target, so its perturbation is far below 250 steps of 1/255
    assert r["median_linf"] < 100 / 255
    assert 0 < r["median_l0"] <= 1
    # a small-ball PGD on the source transfers much less than the unbounded regional attack
    pgd = transfer(digits_model, target, x, y, PGD("linf", 0.05, 0.0125, steps=10))
    assert pgd["transfer_rate"] < r["transfer_rate"]
    assert pgd["median_linf"] is None or pgd["median_linf"] <= 0.05 + 1e-6


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    train(tiny_config(root / "a", epochs=2))
    train(tiny_config(root / "b", epochs=2, seed=1))
    return root / "a", root / "b"


def test_cli_transfer_per_region(two_runs, tmp_path, capsys):
    a, b = two_runs
    out = tmp_path / "tr"
    assert main(["transfer", str(a), str(b), "--regions", "full", "centre:0.3", "frame:0.3",
                 "--steps", "20", "--n-examples", "60", "--out-dir", str(out)]) == 0
    report = json.loads((out / "transfer.json").read_text())
    assert [r["region"] for r in report["rows"]] == ["full", "centre:0.3", "frame:0.3"]
    assert report["rows"][0]["area"] == 1.0 and report["rows"][1]["area"] == 16 / 64
    assert all(r["n"] == 60 for r in report["rows"])
    assert (out / "transfer.png").stat().st_size > 0 and (out / "transfer.md").is_file()
    printed = capsys.readouterr().out
    assert "| centre:0.3 | 25.0 |" in printed


def test_cli_transfer_with_an_ordinary_attack_and_bad_input(two_runs, tmp_path, capsys):
    a, b = two_runs
    assert main(["transfer", str(a), str(b), "--attack", "pgd5", "--n-examples", "40",
                 "--out-dir", str(tmp_path / "p")]) == 0
    row = json.loads((tmp_path / "p" / "transfer.json").read_text())["rows"][0]
    assert row["median_linf"] is None or row["median_linf"] <= 0.2 + 1e-6  # the run's eps
    capsys.readouterr()
    for args, message in ((["--attack", "pgd20", "--regions", "full"], "--regions belongs to"),
                          (["--regions", "middle:0.3"], "is not a region"),
                          (["--attack", "pdg20"], "unknown attack"),
                          (["--steps", "0"], "--steps must be an integer >= 1 (got 0)")):
        assert main(["transfer", str(a), str(b), "--out-dir", str(tmp_path / "x")] + args) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
