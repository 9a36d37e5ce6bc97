"""RobustBench both ways, without the network: zoo checkpoints saved the way RobustBench saves
them, read through torchawp (logits equal to RobustBench's own class), and torchawp runs
exported in RobustBench's layout (loaded strictly by RobustBench's class, same logits)."""

import hashlib
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import torchawp.io.robustbench as rb
from torchawp.cli import main
from torchawp.errors import CheckpointError, ConfigError

from .helpers import THREADS

TINY = "Tiny2099Test"  # a WRN-10-1 entry added to the zoo table for these tests


def _robustbench_file(relative: str) -> Path:
    spec = importlib.util.find_spec("robustbench")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("robustbench is not installed (pip install --no-deps robustbench: its "
                    "architecture files import only torch); the zoo checks need its classes")
    return Path(spec.submodule_search_locations[0]) / relative


def _load_module(relative: str):
    path = _robustbench_file(relative)
    spec = importlib.util.spec_from_file_location(f"rb_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rb_wrn():
    return _load_module("model_zoo/architectures/wide_resnet.py").WideResNet


@pytest.fixture(scope="module")
def rb_resnet():
    return _load_module("model_zoo/architectures/resnet.py")


def _randomised(model):
    """Random weights and BatchNorm statistics, eval mode: every tensor matters."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture
def zoo(tmp_path, rb_wrn, monkeypatch):
    """MODEL_DIR with a tiny entry saved as RobustBench's checkpoints are ({'state_dict'},
    'module.' prefix, the unused sub_block1 tensors)."""
    monkeypatch.setitem(rb.ZOO[("cifar10", "Linf")], TINY, (10, 1))
    net = _randomised(rb_wrn(depth=10, widen_factor=1, sub_block1=True))
    path = rb.checkpoint_path(TINY, "cifar10", "Linf", tmp_path / "models")
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return tmp_path / "models", net, path


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """A tiny CIFAR-10 in its pickle layout (5 train batches of 40, a test batch of 60)."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 40) for i in range(1, 6)] + [("test_batch", 60)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    return root


def test_a_zoo_checkpoint_gives_robustbench_logits(zoo):
    model_dir, net, path = zoo
    model, threat = rb.load_robustbench(TINY, "cifar10", "Linf", model_dir)
    x = torch.rand(6, 3, 32, 32)
    assert torch.allclose(model(x), net(x), atol=1e-5)
    assert (threat.norm, threat.eps) == ("linf", 8 / 255)
    meta = model.checkpoint_meta
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["robustbench"]["name"] == TINY


def test_a_missing_tensor_is_refused_not_left_random(zoo):
    model_dir, net, path = zoo
    state = {k: v for k, v in net.state_dict().items() if k != "fc.weight"}
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not fit this model \\(1 missing"):
        rb.load_robustbench(TINY, "cifar10", "Linf", model_dir)


def test_a_missing_file_names_the_path_and_an_unknown_name_the_nearest(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*cifar10/Linf/"
                                              "Wu2020Adversarial.pt; torchawp never downloads"):
        rb.load_robustbench("Wu2020Adversarial", model_dir=tmp_path)
    with pytest.raises(ConfigError, match="did you mean Wu2020Adversarial"):
        rb.load_robustbench("Wu2020Adversarsial", model_dir=tmp_path)


def test_eval_flatness_and_landscape_run_on_a_zoo_entry(zoo, cifar_dir, tmp_path, capsys):
    model_dir = zoo[0]
    common = ["--dataset", "cifar10", "--model-dir", str(model_dir), "--data-dir",
              str(cifar_dir), "--device", "cpu"]
    assert main(["eval", "--robustbench", TINY, "--n-examples", "20", "--attacks", "pgd20",
                 "--no-checks", "--out-dir", str(tmp_path / "eval"), *common]) == 0
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())[0]
    assert report["which"] == TINY and report["n"] == 20
    assert report["weights_sha256"] == hashlib.sha256(zoo[2].read_bytes()).hexdigest()
    assert main(["flatness", "--robustbench", TINY, "--n-examples", "8", "--kind", "average",
                 "--samples", "1", "--steps", "2", "--out-dir", str(tmp_path / "flat"),
                 *common]) == 0
    flat = json.loads((tmp_path / "flat" / "flatness.json").read_text())
    assert flat[0]["checkpoint"] == f"rb:{TINY}" and np.isfinite(flat[0]["average"])
    assert main(["landscape", "--robustbench", TINY, "--n-examples", "8", "--points", "3",
                 "--directions", "1", "--steps", "1", "--out-dir", str(tmp_path / "land"),
                 *common]) == 0
    assert (tmp_path / "land" / "landscape_test.png").is_file()


@pytest.fixture(scope="module")
def wrn_run(tmp_path_factory, cifar_dir):
    """A torchawp WRN-10-1 run on the tiny CIFAR-10, evaluated with AutoAttack on 10 images."""
    import torchawp
    from torchawp.config import TrainConfig

    out = tmp_path_factory.mktemp("run") / "run"
    cfg = TrainConfig(method="at", model="wide_resnet", model_args={"depth": 10,
                                                                     "widen_factor": 1},
                      epochs=1, progress=False, out_dir=str(out), threads=THREADS)
    cfg.data.data_dir, cfg.data.val_size, cfg.data.batch_size = str(cifar_dir), 20, 64
    cfg.attack.steps, cfg.eval.steps, cfg.eval.train_examples = 1, 1, 10
    torchawp.train(cfg)
    assert main(["eval", str(out), "--which", "best", "--n-examples", "10", "--attacks",
                 "pgd20", "--autoattack", "--no-checks", "--device", "cpu"]) == 0
    return out


def test_an_exported_run_loads_strictly_into_robustbench_with_the_same_logits(
        wrn_run, rb_wrn, tmp_path, capsys):
    assert main(["export", str(wrn_run), "--robustbench", "Mine", "--model-dir",
                 str(tmp_path)]) == 2
    assert "AutoAttack ran on 10 of the 60 test images" in capsys.readouterr().err
    assert not (tmp_path / "cifar10").exists()
    assert main(["export", str(wrn_run), "--robustbench", "Mine", "--model-dir",
                 str(tmp_path), "--partial"]) == 0
    state = torch.load(tmp_path / "cifar10" / "Linf" / "Mine.pt", weights_only=True)
    mean, std = state.pop("normalize.mean"), state.pop("normalize.std")
    net = rb_wrn(depth=10, widen_factor=1)
    net.load_state_dict(state, strict=True)
    from torchawp import load
    ours = load(wrn_run, "best")
    x = torch.rand(5, 3, 32, 32)
    expected = ours(x)
    assert torch.allclose(net.eval()((x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)),
                          expected, atol=1e-5)
    card = json.loads((tmp_path / "model_info" / "cifar10" / "Linf" / "Mine.json").read_text())
    assert set(card) == set(rb.CARD_FIELDS)
    assert card["eps"] == "8/255" and card["number_forward_passes"] == 1
    assert card["architecture"] == "WideResNet-10-1" and card["additional_data"] is False
    assert "first 10 of 60" in card["footnote"]
    report = json.loads((wrn_run / "eval.json").read_text())[0]
    assert card["autoattack_acc"] == f"{100 * report['accuracy']['autoattack']:.2f}"


def test_torchawp_preact_resnet18_maps_onto_robustbench_class(rb_resnet):
    from torchawp.models import create_model
    ours = _randomised(create_model("preact_resnet18", 10, 3, 32))
    state, text = rb.robustbench_state(ours)
    theirs = rb_resnet.PreActResNet(rb_resnet.PreActBlockV2, [2, 2, 2, 2], bn_before_fc=True)
    theirs.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 32, 32)
    assert text == "PreActResNet-18"
    assert torch.allclose(theirs.eval()(x), ours(x), atol=1e-5)


def test_eps_is_written_as_robustbench_writes_it():
    assert rb.eps_text("linf", 8 / 255) == "8/255"
    assert rb.eps_text("linf", 0.0314) == "0.0314"
    assert rb.eps_text("l2", 0.5) == "0.5"
