"""``bn_updates: authors`` trains exactly as the authors' loops do: after several AT-AWP and
TRADES-AWP steps on a BatchNorm model in fp64 (attack included), the weights, the BatchNorm
buffers (running mean and variance, num_batches_tracked) and the optimizer state equal those of
the transcriptions in ``tests/reference/authors_loops.py``. With torchawp's default policy the
BatchNorm buffers differ, so the test fails if the forward order or the policy is changed back."""

import copy

import pytest
import torch

from torchawp.config.recipes import load_recipe
from torchawp.training.trainer import Trainer

from .conftest import TinyBNNet
from .helpers import tiny_config
from .reference.authors_loops import at_awp_step, trades_awp_step

STEPS = 3


def trainer_and_reference(tmp_path, method, bn_updates):
    torch.manual_seed(0)
    model = TinyBNNet().double()
    reference = copy.deepcopy(model)
    cfg = tiny_config(tmp_path / method, method=method, bn_updates=bn_updates,
                      channels_last=False)
    cfg.attack.steps, cfg.attack.step_size = 5, 0.05
    cfg.attack.clamp_start = not method.startswith("trades")  # the authors' TRADES start
    cfg.awp.gamma = 0.01 if method == "at-awp" else 0.005
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
            trades_awp_step(reference, optimizer, x, y, a.eps, a.step_size, a.steps, cfg.beta,
                            cfg.awp.gamma, gen)


def differences(trainer, reference, optimizer):
    ours, theirs = trainer.model.state_dict(), reference.state_dict()
    out = {k: (ours[k].double() - theirs[k].double()).abs().max().item() for k in ours}
    momentum = [optimizer.state[p]["momentum_buffer"] for p in reference.parameters()]
    our_momentum = [trainer.optimizer.state[p]["momentum_buffer"]
                    for p in trainer.model.parameters()]
    out["momentum"] = max((a - b).abs().max().item() for a, b in zip(our_momentum, momentum))
    return out


@pytest.mark.parametrize("method", ["at-awp", "trades-awp"])
def test_authors_bn_policy_matches_the_authors_loop(tmp_path, method):
    trainer, reference, optimizer = trainer_and_reference(tmp_path, method, "authors")
    run_both(trainer, reference, optimizer, method)
    diff = differences(trainer, reference, optimizer)
    assert max(diff.values()) < 1e-10, diff
    tracked = trainer.model.bn.num_batches_tracked.item()
    # AT: 5 PGD forwards + the restart's loss + training + clean = 8 per step; TRADES: 3
    assert tracked == STEPS * (8 if method == "at-awp" else 3)


@pytest.mark.parametrize("method", ["at-awp", "trades-awp"])
def test_default_bn_policy_keeps_attacks_out_of_the_statistics(tmp_path, method):
    trainer, reference, optimizer = trainer_and_reference(tmp_path, method, "training")
    run_both(trainer, reference, optimizer, method)
    diff = differences(trainer, reference, optimizer)
    assert diff["bn.running_mean"] > 1e-6 and diff["bn.num_batches_tracked"] > 0
    tracked = trainer.model.bn.num_batches_tracked.item()
    assert tracked == STEPS * (1 if method == "at-awp" else 2)


@pytest.mark.parametrize("name", ["cifar10_prn18_at_awp", "cifar10_prn18_trades_awp",
                                  "cifar10_wrn34_mart_awp", "svhn_prn18_at_awp",
                                  "cifar10_prn18_l2_at"])
def test_paper_recipes_are_the_authors_runs(name):
    cfg = load_recipe(name)
    # MART and RST keep torchawp's policy: their authors' forward order is not audited
    assert cfg.bn_updates == ("training" if "mart" in name else "authors")
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
