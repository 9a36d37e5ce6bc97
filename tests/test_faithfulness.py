"""``bn_updates: authors`` trains exactly as the authors' loops do: after several AT-AWP,
TRADES-AWP, MART-AWP and RST-AWP steps on a BatchNorm model in fp64 (attack included), the
weights, the BatchNorm buffers (running mean and variance, num_batches_tracked) and the optimizer
state equal those of the transcriptions in ``tests/reference/authors_loops.py`` (MART-AWP and
RST-AWP: the methods' authors' loops with AWP composed as the AWP authors' TRADES-AWP script
composes it; they released no MART-AWP or RST-AWP loop). With torchawp's default policy
the BatchNorm buffers of AT and TRADES differ, so the test fails if the forward order or the
policy is changed back; MART's own loop already runs the forwards of the default policy."""

import copy

import pytest
import torch

from torchawp.config.recipes import load_recipe
from torchawp.training.trainer import Trainer

from .conftest import TinyBNNet
from .helpers import tiny_config
from .reference.authors_loops import (at_awp_step, mart_awp_step, rst_awp_step,
                                     trades_awp_step)

STEPS = 3


def trainer_and_reference(tmp_path, method, bn_updates):
    torch.manual_seed(0)
    model = TinyBNNet().double()
    reference = copy.deepcopy(model)
    cfg = tiny_config(tmp_path / method, method=method, bn_updates=bn_updates,
                      channels_last=False)
    cfg.attack.steps, cfg.attack.step_size = 5, 0.05
    cfg.attack.clamp_start = method == "at-awp"  # the authors' TRADES / MART start
    cfg.awp.gamma = 0.01 if method == "at-awp" else 0.005
    if method == "rst-awp":  # the loop is built over extra data; the steps get their batches
        cfg.data.extra_data, cfg.data.train_subset = str(_extra_npz(tmp_path)), 300
    cfg.optim.schedule, cfg.optim.lr = "constant", 0.1
    trainer = Trainer(cfg, model=model)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9,
                                weight_decay=5e-4)
    return trainer, reference, optimizer


def batches():
    g = torch.Generator().manual_seed(3)
    for _ in range(STEPS):
        yield (torch.rand(32, 1, 8, 8, generator=g, dtype=torch.float64),
               torch.randint(0, 10, (32,), generator=g))


def run_both(trainer, reference, optimizer, method):
    cfg = trainer.cfg
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # torchawp's attack generator
    for x, y in batches():
        trainer.train_step(x, y, perturb=True)
        a = cfg.attack
        if method == "at-awp":
            at_awp_step(reference, optimizer, x, y, a.eps, a.step_size, a.steps,
                        cfg.awp.gamma, gen)
        else:
            step = {"mart-awp": mart_awp_step, "rst-awp": rst_awp_step}.get(method,
                                                                           trades_awp_step)
            step(reference, optimizer, x, y, a.eps, a.step_size, a.steps, cfg.beta,
                 cfg.awp.gamma, gen)


def differences(trainer, reference, optimizer):
    ours, theirs = trainer.model.state_dict(), reference.state_dict()
    out = {k: (ours[k].double() - theirs[k].double()).abs().max().item() for k in ours}
    momentum = [optimizer.state[p]["momentum_buffer"] for p in reference.parameters()]
    our_momentum = [trainer.optimizer.state[p]["momentum_buffer"]
                    for p in trainer.model.parameters()]
    out["momentum"] = max((a - b).abs().max().item() for a, b in zip(our_momentum, momentum))
    return out


def _extra_npz(tmp_path):
    import numpy as np

    path = tmp_path / "extra.npz"
    g = np.random.default_rng(0)
    np.savez(path, images=g.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8),
             labels=g.integers(0, 10, 64))
    return path


# train-mode forwards per step: AT: 5 PGD forwards + the restart's loss + training + clean;
# TRADES-AWP: x', x, x; RST (Carmon et al.): x', x; MART: x, x'
AUTHORS_FORWARDS = {"at-awp": 8, "trades-awp": 3, "rst-awp": 2, "mart-awp": 2}


@pytest.mark.parametrize("method", list(AUTHORS_FORWARDS))
def test_authors_bn_policy_matches_the_authors_loop(tmp_path, method):
    trainer, reference, optimizer = trainer_and_reference(tmp_path, method, "authors")
    run_both(trainer, reference, optimizer, method)
    diff = differences(trainer, reference, optimizer)
    assert max(diff.values()) < 1e-10, diff
    tracked = trainer.model.bn.num_batches_tracked.item()
    assert tracked == STEPS * AUTHORS_FORWARDS[method]


def test_marts_own_loop_runs_the_default_policys_forwards(tmp_path):
    """MART's authors craft in eval mode and train on x then x': torchawp's default policy
    is already their loop, so MART-AWP matches it with either setting."""
    trainer, reference, optimizer = trainer_and_reference(tmp_path, "mart-awp", "training")
    run_both(trainer, reference, optimizer, "mart-awp")
    assert max(differences(trainer, reference, optimizer).values()) < 1e-10


@pytest.mark.parametrize("method", ["at-awp", "trades-awp"])
def test_default_bn_policy_keeps_attacks_out_of_the_statistics(tmp_path, method):
    trainer, reference, optimizer = trainer_and_reference(tmp_path, method, "training")
    run_both(trainer, reference, optimizer, method)
    diff = differences(trainer, reference, optimizer)
    assert diff["bn.running_mean"] > 1e-6 and diff["bn.num_batches_tracked"] > 0
    tracked = trainer.model.bn.num_batches_tracked.item()
    assert tracked == STEPS * (1 if method == "at-awp" else 2)


@pytest.mark.parametrize("name", ["cifar10_prn18_at_awp", "cifar10_prn18_trades_awp",
                                  "cifar10_wrn34_mart_awp",
                                  "cifar10_wrn28_rst_awp", "cifar10_wrn28_rst",
                                  "svhn_prn18_at_awp", "cifar10_prn18_l2_at"])
def test_paper_recipes_are_the_authors_runs(name):
    cfg = load_recipe(name)
    assert cfg.bn_updates == "authors"  # every loop's forwards audited above
    if "rst" in name:
        assert cfg.attack.clamp_start is False  # semisup-adv's start
        return
    if "trades" in name or "mart" in name:
        # trades_AWP/train_trades_cifar.py counts epochs from 1: AWP from epoch 10, LR drops
        # at epochs 100 and 150, i.e. after 9, 99 and 149 epochs; zero-padded crops
        assert (cfg.awp.warmup_epochs, cfg.optim.milestones) == (9, [99, 149])
        assert cfg.data.crop_padding == "zero" and cfg.attack.clamp_start is False
    else:
        assert cfg.data.crop_padding == ("reflect" if "cifar" in name else "zero")


def test_awp_on_biases_is_reachable_from_the_config(tmp_path):
    cfg = tiny_config(tmp_path / "b")
    cfg.awp.params = "weights+biases"
    names = [n for n, _ in Trainer(cfg, model=TinyBNNet()).perturbation.named_params]
    assert names == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]  # never BN's


def test_reflect_padding_crops_repeat_the_border_not_zeros():
    from torchawp.data import augment

    x = torch.ones(64, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    assert (augment(x, "crop", g, "zero") == 0).any()
    assert (augment(x, "crop", torch.Generator().manual_seed(0), "reflect") == 1).all()


def test_unclamped_random_start_is_the_authors():
    from torchawp.attacks import PGD

    x = torch.zeros(4, 1, 8, 8)
    start = PGD(random_start="normal", clamp_start=False)._start(x, torch.Generator())
    assert (start < 0).any()  # x + 0.001 N(0, 1) below 0 is kept
    clamped = PGD(random_start="normal")._start(x, torch.Generator())
    assert (clamped >= 0).all()
