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
    code = main(["train", "--out-dir", str(run), *args, *FOREIGN, "--channels_last", "false"])
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
