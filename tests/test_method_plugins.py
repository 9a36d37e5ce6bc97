"""Methods as plugins: ``--method module.path:SPEC[-awp]`` trains a MethodSpec of your own, its
coefficients from ``method_args``, the epoch and what ``setup`` built passed to its loss; the
documented example is the file the docs show."""

import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from torchawp.cli import main
from torchawp.methods import LossOutput, Method, MethodSpec, at_loss, get_method
from torchawp.training.trainer import Trainer

from .conftest import TinyBNNet
from .helpers import tiny_config

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

SEEN = {"epochs": [], "setup": 0, "scale": []}


def _setup(model, cfg):
    SEEN["setup"] += 1
    return {"helper": torch.nn.Identity(), "scale": 2.0}


def _recording_loss(model, x, x_adv, y, beta, epoch, helper, scale, coefficient=1.0):
    SEEN["epochs"].append(epoch)
    SEEN["scale"].append((scale, coefficient))
    logits_adv = helper(model(x_adv))
    return LossOutput(coefficient * F.cross_entropy(logits_adv, y), logits_adv)


class CleanAscent(Method):
    """A method whose weight ascent climbs the clean loss: one half overridden, one file."""

    calls = 0

    def ascent_loss(self, net, x, x_adv, y):
        CleanAscent.calls += 1
        return F.cross_entropy(net(x), y)


CLEAN_ASCENT = MethodSpec(name="clean-ascent", loss=at_loss, bn_mode="train", awp_gamma=0.01,
                          awp_warmup=0, cls=CleanAscent)

RECORDING = MethodSpec(name="recording", loss=_recording_loss, takes_epoch=True, setup=_setup,
                       bn_mode="train", awp_gamma=0.01, awp_warmup=0)
NOT_A_SPEC = "a string"


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_a_method_of_your_own_gets_the_epoch_its_coefficients_and_what_setup_built(tmp_path):
    SEEN.update(epochs=[], setup=0, scale=[])
    cfg = tiny_config(tmp_path / "run", method=f"{__name__}:RECORDING-awp", epochs=2)
    cfg.method_args = {"coefficient": 0.5}
    trainer = Trainer(cfg, model=TinyBNNet())
    result = trainer.fit()
    steps = trainer.steps_per_epoch
    # AWP's ascent and the training loss each call the loss once per step
    assert SEEN["epochs"] == [0] * (2 * steps) + [1] * (2 * steps)
    assert SEEN["setup"] == 1 and set(SEEN["scale"]) == {(2.0, 0.5)}
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["method"] == f"{__name__}:RECORDING-awp"
    assert saved["method_args"] == {"coefficient": 0.5}


def test_the_documented_example_is_the_file_the_docs_show():
    page = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    block = re.search(r"```python\n# docs/examples/logit_pairing.py\n(.*?)```", page, re.S)
    assert block and block.group(1) == (EXAMPLES / "logit_pairing.py").read_text()


def test_the_example_loss_is_at_plus_the_ramped_pairing_term(examples_on_path):
    from logit_pairing import ALP

    torch.manual_seed(0)
    model = TinyBNNet().eval()
    x = torch.rand(16, 1, 8, 8)
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    y = torch.randint(0, 10, (16,))
    plain = at_loss(model, x, x_adv, y, 6.0).loss
    pairing = (model(x) - model(x_adv)).pow(2).sum(1).mean()
    for epoch, weight in ((0, 0.1), (2, 0.3), (9, 0.5)):
        loss = ALP.loss(model, x, x_adv, y, 6.0, epoch, pairing_weight=0.5, ramp_epochs=5).loss
        assert torch.allclose(loss, plain + weight * pairing, atol=1e-6)
    assert get_method("logit_pairing:ALP-awp") == (ALP, True)


def test_the_example_trains_from_the_command_line(tmp_path, examples_on_path, capsys):
    code = main(["train", "--method", "logit_pairing:ALP-awp", "--method-args",
                 "{pairing_weight: 0.2, ramp_epochs: 2}", "--epochs", "2", "--awp.warmup-epochs",
                 "1", "--data.train-subset", "128", "--eval.steps", "2", "--n-examples",
                 "64", "--eval.train-examples", "64", "--attack.steps", "2", "--progress",
                 "false", "--out-dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "logit_pairing:ALP-awp on digits" in out and "last (epoch 2)" in out


@pytest.mark.parametrize("method, args, message", [
    ("no_such_module_xyz:ALP", [], "method no_such_module_xyz:ALP: cannot import "
                                   "no_such_module_xyz"),
    (f"{__name__}:NOT_A_SPEC", [], f"{__name__}.NOT_A_SPEC is a str; name a "
                                   "torchawp.methods.MethodSpec"),
    ("logit_pairing:ALP", ["--method-args", "{pairing_wieght: 1}"],
     "method_args.pairing_wieght: alp's loss takes no such keyword (did you mean "
     "pairing_weight?)"),
])
def test_a_bad_method_of_your_own_is_one_line(tmp_path, examples_on_path, capsys, method, args,
                                             message):
    code = main(["train", "--method", method, *args, "--epochs", "1", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_a_method_module_that_fails_to_import_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_method.py").write_text("def loss(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["train", "--method", "broken_method:SPEC", "--epochs", "1", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "method broken_method:SPEC: importing broken_method failed (SyntaxError" in err[0]


def test_a_method_class_overrides_one_half_and_the_step_calls_it(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", method=f"{__name__}:CLEAN_ASCENT-awp"))
    assert isinstance(trainer.method, CleanAscent)
    x, y = next(iter(trainer.train_loader))
    x_adv = trainer.method.craft(trainer.net, x, y)
    captured = []
    trainer.perturbation.compute = lambda closure, grads=None: captured.append(closure) or [
        torch.zeros_like(p) for p in trainer.perturbation.params]
    trainer.train_step(x, y, perturb=True)
    before = CleanAscent.calls
    ascended = captured[0](trainer.net).item()  # what the perturbation was given to climb
    assert CleanAscent.calls == before + 1  # the overridden half
    clean = F.cross_entropy(trainer.net(x), y).item()
    assert ascended == pytest.approx(clean) and ascended != pytest.approx(
        F.cross_entropy(trainer.net(x_adv), y).item())
