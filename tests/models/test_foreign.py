"""Your own model from the command line: ``--model module.path:factory``."""

import json

import pytest
import torch

import torchawp
from torchawp.cli import main

from ..test_cli import TINY

FOREIGN = ["--model", "tests.foreign_model:make", "--model_args", "{width: 4}"]


def test_a_foreign_model_trains_evaluates_and_reloads(tmp_path, capsys):
    run = tmp_path / "run"
    args = [a for a in TINY if a not in ("--model_args", "{width: 8, batchnorm: true, hidden: 32}")]
    code = main(["train", "--out-dir", str(run), *args, *FOREIGN, "--no-channels-last"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "(tests.foreign_model:make)" in out
    model = torchawp.load(run, which="last")  # rebuilt from the checkpoint's spec
    assert isinstance(model, torch.nn.Sequential) and model[0].out_channels == 4
    assert main(["eval", str(run), "--attacks", "pgd2", "--n-examples", "30",
                 "--no-checks"]) == 0
    assert json.loads((run / "eval.json").read_text())[0]["n"] == 30


@pytest.mark.parametrize("model,message", [
    ("no_such_module_xyz:make", "cannot import no_such_module_xyz"),
    ("tests.foreign_model:nothing", "has no callable 'nothing'"),
    ("tests.foreign_model:not_a_model", "returned a str, not an nn.Module"),
])
def test_a_bad_foreign_model_is_one_line(tmp_path, capsys, model, message):
    code = main(["train", "--out-dir", str(tmp_path / "r"), *TINY, "--model", model,
                 "--model_args", "{}"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_eval_of_weights_torchawp_never_trained(tmp_path, capsys):
    from tests.foreign_model import make

    torch.manual_seed(0)
    weights = tmp_path / "theirs.pt"
    torch.save(make(width=4).state_dict(), weights)
    base = ["eval", "--model", "tests.foreign_model:make", "--model-args", "{width: 4}",
            "--weights", str(weights), "--dataset", "digits", "--eps", "0.1", "--attacks", "fgsm",
            "pgd3", "--n-examples", "40", "--no-checks"]
    assert main(base) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "eval.json").read_text())[0]
    assert report["n"] == 40 and report["checkpoint"] == str(weights)
    assert report["threat_model"]["step_size"] == pytest.approx(0.025)  # eps / 4
    assert report["robust_acc"] <= report["accuracy"]["clean"]
    assert "theirs.pt: digits test set, 40 images" in out
    assert main(base + ["--normalize", "0.3", "0.38", "--out-dir", str(tmp_path / "n")]) == 0
    normalized = json.loads((tmp_path / "n" / "eval.json").read_text())[0]
    assert normalized["weights_sha256"] == report["weights_sha256"]
    assert normalized["accuracy"] != report["accuracy"]  # the wrapper changed the input


@pytest.mark.parametrize("drop,message", [
    ("--weights", "missing: --weights"), ("--eps", "missing: --eps"),
])
def test_foreign_eval_without_what_it_needs_is_one_line(tmp_path, capsys, drop, message):
    args = {"--model": "tests.foreign_model:make", "--weights": str(tmp_path / "w.pt"),
            "--dataset": "digits", "--eps": "0.1"}
    args.pop(drop)
    code = main(["eval", *[v for kv in args.items() for v in kv]])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err


def test_foreign_weights_of_another_shape_are_one_line(tmp_path, capsys):
    from tests.foreign_model import make

    torch.save(make(width=8).state_dict(), tmp_path / "w.pt")
    code = main(["eval", "--model", "tests.foreign_model:make", "--model-args", "{width: 4}",
                 "--weights", str(tmp_path / "w.pt"), "--dataset", "digits", "--eps", "0.1"])
    _, err = capsys.readouterr()
    assert code == 2 and "does not fit this model" in err
