"""Every weight perturbation trains with every method, from the config, the CLI and the API:
the trainer's step is the documented loop (``with p.perturbed(closure): backward;
p.before_step(); step``), its warm-up and size come from the method, and a setting that
makes it a no-op is refused or said."""

import copy

import pytest
import torch
import yaml

import torchawp
from torchawp.config.resolve import validate
from torchawp.errors import ConfigError
from torchawp.perturbations import PERTURBATIONS, SAM, build
from torchawp.training.trainer import Trainer

from .helpers import tiny_config
from .test_cli import run_cli

METHODS = ["at", "trades", "mart", "rst", "standard"]
FAMILY = ["awp", "rwp", "sam", "asam", "awp-practitioners", "random-noise"]


def _config(tmp_path, method, perturbation, extra_npz=None, **awp):
    cfg = tiny_config(tmp_path / f"{method}_{perturbation}", method=method)
    cfg.perturbation.name = perturbation
    cfg.perturbation.threshold = 100.0  # RWP: every example drives the ascent in a tiny run
    for key, value in awp.items():
        setattr(cfg.awp, key, value)
    if method == "rst":
        cfg.data.train_subset, cfg.data.extra_data = 300, str(extra_npz)
    return cfg


def _step(trainer, perturb, x, y):
    """One training step from the trainer's state; the weights after it."""
    trainer.train_step(x, y, perturb)
    return [p.detach().clone() for p in trainer.model.parameters()]


@pytest.mark.parametrize("perturbation", FAMILY)
@pytest.mark.parametrize("method", METHODS)
def test_every_perturbation_acts_in_every_method(tmp_path, method, perturbation, extra_npz):
    """The same step from the same state, with and without the perturbation: the weights
    differ, and the perturbation has been removed again (perturb and restore balanced)."""
    trainer = Trainer(_config(tmp_path, method, perturbation, extra_npz))
    assert type(trainer.perturbation) is PERTURBATIONS[perturbation]
    start = copy.deepcopy(trainer.model.state_dict())
    gen = trainer.attack_gen.get_state()
    _, x, y = next(iter(trainer.train_loader.batches()))
    with_it = _step(trainer, True, x, y)
    assert trainer.perturbation._v is None
    trainer.model.load_state_dict(start)
    trainer.attack_gen.set_state(gen)
    trainer.optimizer.state.clear()
    without = _step(trainer, False, x, y)
    assert any(not torch.equal(a, b) for a, b in zip(with_it, without))
    assert all(torch.isfinite(a).all() for a in with_it)


@pytest.mark.parametrize("name,cls_name", [("sam", "SAM"), ("asam", "ASAM")])
def test_the_trainers_step_is_the_documented_loop(tmp_path, name, cls_name):
    """Twin trainers from one seed: one takes ``train_step``, the other the loop the docs
    show with the library class; the weights after the step are identical."""
    cfg = _config(tmp_path, "at", name)
    ours, twin = Trainer(cfg), Trainer(dataclass_copy(cfg, tmp_path / "twin"))
    _, x, y = next(iter(ours.train_loader.batches()))
    after_ours = _step(ours, True, x, y)

    m = twin.method
    x_adv = m.craft(twin.net, x, y, twin.attack_gen)
    p = getattr(torchawp, cls_name)(twin.net)  # its defaults are the config's
    with p.perturbed(lambda net: m.ascent_loss(net, x, x_adv, y)):
        twin.train_net.train()
        loss = m.loss(twin.train_net, x, x_adv, y).loss
        twin.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        p.before_step()
        twin.optimizer.step()
    m.after_step(twin.net, x)
    after_twin = [t.detach().clone() for t in twin.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(after_ours, after_twin))


def dataclass_copy(cfg, out_dir):
    cfg = copy.deepcopy(cfg)
    cfg.out_dir = str(out_dir)
    return cfg


@pytest.mark.parametrize("method,gamma,warmup", [("at", 0.01, 0), ("trades", 0.005, 10)])
def test_a_perturbation_takes_the_methods_size_and_warm_up(tmp_path, method, gamma, warmup):
    cfg = tiny_config(tmp_path, method=method, epochs=12)
    cfg.awp.gamma = cfg.awp.warmup_epochs = None
    cfg.perturbation.name = "rwp"
    resolved = validate(cfg)
    assert (resolved.awp.gamma, resolved.awp.warmup_epochs) == (gamma, warmup)
    assert cfg.awp.gamma is None and cfg.perturbation.name == "rwp"  # the caller's unchanged
    cfg.perturbation.name = "sam"
    assert validate(cfg).perturbation.rho == 0.05
    cfg.perturbation.name = "asam"
    assert validate(cfg).perturbation.rho == 0.5
    assert validate(tiny_config(tmp_path, method="at")).perturbation.name == "none"
    assert validate(tiny_config(tmp_path, method="at-awp")).perturbation.name == "awp"


@pytest.mark.parametrize("method,perturbation,awp,message", [
    ("at-awp", "sam", {}, "at-awp trains with AWP; for sam instead give --method at "
                          "--perturbation sam"),
    ("at", "rwp", {"gamma": 0.0}, "awp.gamma 0 turns RWP off, so at would train as at "
                                  "without RWP"),
    ("at", "sam", {"warmup_epochs": 2}, "awp.warmup_epochs 2 leaves no epoch of a 2-epoch run "
                                        "with SAM"),
    ("at", "sam", {"ascent": "last-pgd-step"}, "awp.ascent last-pgd-step reuses AT's PGD"),
    ("at", "none", {"ascent": "last-pgd-step"}, "awp.ascent last-pgd-step is an option of AWP"),
    ("at", "noise", {}, "perturbation.name must be one of awp, rwp, sam"),
])
def test_a_perturbation_that_would_not_act_is_refused(tmp_path, method, perturbation, awp,
                                                       message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate(_config(tmp_path, method, perturbation, **awp))


def test_every_perturbation_trains_from_the_command_line(tmp_path, capsys):
    """``--perturbation NAME`` with a method: the table's header names it, the metrics say
    which epochs it was on, and the saved config records it; a recipe reads it too."""
    tiny = ["--model-args", "{width: 8, batchnorm: true, hidden: 32}", "--epochs", "2",
            "--no-progress", "--attack.steps", "2", "--eval.steps", "2", "--n-examples", "60",
            "--eval.train-examples", "30", "--data.train-subset", "200",
            "--optim.milestones", "[1]", "--awp.warmup-epochs", "1"]
    headers = {"rwp": "RWP gamma 0.01 on epochs 2-2",
               "sam": "SAM rho 0.05 on epochs 2-2",
               "awp-practitioners": "the practitioners' AWP adv_lr 1 adv_eps 0.2 on epochs 2-2",
               "random-noise": "random weight noise gamma 0.01 on epochs 2-2"}
    for name, header in headers.items():
        run = tmp_path / name
        code, out, err = run_cli(capsys, "train", "--method", "at", "--perturbation", name,
                                 *tiny, "--out-dir", str(run))
        assert code == 0, err
        assert f"at on digits (small_cnn), linf eps 0.2, {header}" in out
        rows = [yaml.safe_load(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["perturbed"] for r in rows] == [False, True]
        assert yaml.safe_load((run / "config.yaml").read_text())["perturbation"]["name"] == name
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: trades\ndata: {name: digits}\nperturbation: {name: asam, rho: 0.7}\n")
    code, out, err = run_cli(capsys, "train", "--config", str(recipe), "--dry-run")
    assert code == 0, err
    cfg = yaml.safe_load(out.split("\n# ")[0])
    assert cfg["perturbation"]["name"] == "asam" and cfg["perturbation"]["rho"] == 0.7


def test_rwp_says_how_many_examples_drove_its_ascent(tmp_path):
    """The loss stationary condition can leave RWP with no example: each epoch's row says the
    share kept, and a share of 0 is a warning, not a silent AT run."""
    cfg = tiny_config(tmp_path / "a", method="at", epochs=1)
    cfg.perturbation.name = "rwp"
    cfg.perturbation.threshold = 100.0
    assert torchawp.train(cfg).history[0]["rwp_kept"] == 1.0
    cfg = tiny_config(tmp_path / "b", method="at", epochs=1)
    cfg.perturbation.name, cfg.perturbation.threshold = "rwp", 1e-6
    with pytest.warns(UserWarning, match="RWP did nothing"):
        result = torchawp.train(cfg)
    assert result.history[0]["rwp_kept"] == 0.0


def test_random_noise_resumes_with_the_same_draws(tmp_path):
    """The noise generator is saved with every checkpoint: a run stopped after epoch 1 and
    resumed ends with the weights of the uninterrupted run."""
    from safetensors.torch import load_file

    def run(out, epochs, resume=False):
        cfg = tiny_config(out, method="at", epochs=epochs)
        cfg.perturbation.name, cfg.resume = "random-noise", resume
        return torchawp.train(cfg)

    run(tmp_path / "whole", 2)
    run(tmp_path / "parts", 1)
    run(tmp_path / "parts", 2, resume=True)
    a = load_file(tmp_path / "whole" / "last.safetensors")
    b = load_file(tmp_path / "parts" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_build_returns_none_for_none_and_the_class_for_each_name(tmp_path):
    cfg = validate(tiny_config(tmp_path, method="at"))
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    assert build(cfg, net) is None
    cfg.perturbation.name, cfg.perturbation.rho = "sam", 0.05
    assert isinstance(build(cfg, net), SAM)
    assert set(PERTURBATIONS) == set(FAMILY)


def test_a_perturbation_of_your_own_trains_by_module_path(tmp_path, monkeypatch, capsys):
    """One file: a WeightPerturbation subclass with from_config, named module.path:Class."""
    (tmp_path / "my_perturbation.py").write_text(
        "import torch\n"
        "from torchawp.perturbations import WeightPerturbation\n\n"
        "class SignAscent(WeightPerturbation):\n"
        "    name, title = 'sign', 'sign ascent'\n\n"
        "    @classmethod\n"
        "    def from_config(cls, model, cfg):\n"
        "        return cls(model, **cls.common(cfg))\n\n"
        "    def compute(self, closure, grads=None):\n"
        "        return [1e-3 * g.sign() for g in self.ascent_gradients(closure)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _config(tmp_path, "at", "my_perturbation:SignAscent")
    trainer = Trainer(cfg)
    assert type(trainer.perturbation).__name__ == "SignAscent"
    _, x, y = next(iter(trainer.train_loader.batches()))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step(x, y, True)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    code, out, err = run_cli(capsys, "train", "--method", "at", "--perturbation",
                             "my_perturbation:Nothing", "--dry-run")
    assert code == 2 and "my_perturbation.Nothing is missing" in err
