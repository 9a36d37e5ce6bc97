import dataclasses
import json

import numpy as np
import pytest
import torch

import torchawp
from torchawp.attacks import PGD
from torchawp.data import load_splits
from torchawp.evaluation.accuracy import evaluate
from torchawp.models import create_model

from ..helpers import tiny_config


def learning_config(out_dir, method):
    """Enough steps to learn: all 1,003 training digits, batch 64, eps 0.1, 4 epochs."""
    cfg = tiny_config(out_dir, method=method, epochs=4)
    cfg.data.train_subset, cfg.data.batch_size = None, 64
    cfg.attack.eps, cfg.attack.step_size = 0.1, 0.04
    cfg.optim.milestones = [3]
    return cfg


@pytest.fixture(scope="module")
def untrained_robust_acc():
    splits = load_splits("digits", val_size=200)
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, 8, splits.info.mean, splits.info.std, width=8,
                         batchnorm=True, hidden=32)
    return evaluate(model, splits.test, [("pgd", PGD("linf", 0.1, 0.04, 3))],
                    max_examples=150)["pgd_acc"]


@pytest.mark.parametrize("method", ["at", "trades", "mart", "rst", "at-awp", "trades-awp",
                                    "mart-awp", "rst-awp"])
def test_every_method_learns_robustness_on_digits(tmp_path, method, extra_npz,
                                                  untrained_robust_acc):
    cfg = learning_config(tmp_path / method, method)
    if method.startswith("rst"):
        cfg.data.train_subset = 300
        cfg.data.extra_data = str(extra_npz)
    result = torchawp.train(cfg)
    # AWP on from the first epoch (warmup 0 in the tiny config), and only for -awp methods
    assert all(r["perturbed"] == method.endswith("-awp") for r in result.history)
    assert result.last["test_robust_acc"] > untrained_robust_acc + 0.15
    assert result.last["test_clean_acc"] > 0.5


def test_pseudo_label_command_labels_the_held_out_images(tmp_path, capsys):
    from torchawp.cli import main

    cfg = learning_config(tmp_path / "std", "standard")
    cfg.data.train_subset = 300
    cfg.epochs = 8
    cfg.optim.milestones = [6]
    torchawp.train(cfg)
    out = tmp_path / "extra.npz"
    assert main(["pseudo-label", str(tmp_path / "std"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    agreement = float(printed.split("agreement with the hidden true labels ")[1].rstrip("%\n"))
    assert agreement > 60  # far above the 10% of chance
    with np.load(out) as npz:
        assert npz["images"].shape == (1203 - 200 - 300, 1, 8, 8)
        assert npz["labels"].min() >= 0 and npz["labels"].max() <= 9


def test_rst_with_extra_data_auto_self_labels_the_hidden_images(tmp_path):
    from torchawp.io.checkpoint import load
    from torchawp.training.run import prepare_splits
    from torchawp.training.pseudo_label import pseudo_label
    from torchawp.training.trainer import Trainer

    def rst_config(epochs):
        cfg = tiny_config(tmp_path / "rst", method="rst-awp", epochs=epochs)
        cfg.data.train_subset, cfg.data.extra_data, cfg.data.self_label_epochs = 300, "auto", 8
        return cfg

    trainer = Trainer(rst_config(1), splits=prepare_splits(rst_config(1)))
    labeller_dir = trainer.run_dir / "labeller"
    extra, unused = trainer.splits.extra, trainer.splits.unused
    assert torch.equal(extra.images, unused.images)  # the images whose labels were hidden
    labeller = load(labeller_dir / "best.safetensors")
    assert labeller.checkpoint_meta["config"]["method"] == "standard"
    assert torch.equal(extra.labels, pseudo_label(labeller, unused.images)[0])
    report = json.loads((labeller_dir / "pseudo_labels.json").read_text())
    assert report["pseudo_labelled"] == len(unused) == 1203 - 200 - 300
    assert report["agreement_with_hidden_labels"] > 0.3  # a trained labeller, not chance
    assert report["agreement_with_hidden_labels"] < 1  # pseudo, not the true labels
    trainer.fit()

    stamp = (labeller_dir / "last.state.pt").stat().st_mtime_ns
    resumed = torchawp.train(dataclasses.replace(rst_config(2), resume=True))
    assert (labeller_dir / "last.state.pt").stat().st_mtime_ns == stamp  # not retrained
    fresh = torchawp.train(dataclasses.replace(rst_config(2), out_dir=str(tmp_path / "fresh")))
    for k, v in load(resumed.run_dir / "last.safetensors").state_dict().items():
        assert torch.equal(v, load(fresh.run_dir / "last.safetensors").state_dict()[k]), k
