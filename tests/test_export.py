"""A trained model leaves torchawp as a state dict with a card, and as a torch.export program;
both give the run's logits exactly."""

import json

import pytest
import torch

import torchawp
from torchawp.cli import main
from torchawp.models import model_from_spec

from .helpers import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return torchawp.train(tiny_config(tmp_path_factory.mktemp("ex") / "run", epochs=1))


def test_export_round_trips_the_logits(run, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", str(run.run_dir), "--which", "last", "--out", str(out),
                 "--program"]) == 0, capsys.readouterr().err
    assert ".pt2" not in capsys.readouterr().err  # no warning about the temporary file's name
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["epoch"] == 1 and card["dataset"]["name"] == "digits"
    assert card["threat_model"]["norm"] == "linf" and card["threat_model"]["eps"] == 0.2
    original = torchawp.load(run.run_dir, which="last")
    x = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rebuilt = model_from_spec(card["architecture"])
    rebuilt.load_state_dict(torch.load(out, weights_only=True))
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    with torch.no_grad():
        expected = original(x)
        assert torch.equal(rebuilt.eval()(x), expected)
        assert torch.allclose(program(x), expected, rtol=1e-5, atol=1e-6)
    assert card["weights_sha256"] == torchawp.io.checkpoint.tensor_digest(
        torch.load(out, weights_only=True))


def test_export_of_a_missing_run_is_one_line(tmp_path, capsys):
    code = main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.pt")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "not found" in err
    assert not (tmp_path / "m.pt").exists()
