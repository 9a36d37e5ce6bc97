"""``awp.ascent: last-pgd-step``: AWP's ascent from the weight gradient of the last PGD
iteration (opt-in), instead of its own forward and backward at x'."""

import pytest
import torch
import torch.nn.functional as F

from torchawp.attacks import PGD
from torchawp.perturbations import AWP
from torchawp.config.resolve import validate
from torchawp.errors import ConfigError
from torchawp.perturb import model_mode
from torchawp.training.trainer import Trainer

from .conftest import TinyBNNet
from .helpers import tiny_config


def test_awp_ascends_given_gradients_without_running_the_closure(tiny_net, batch):
    x, y = batch
    awp = AWP(tiny_net, gamma=0.01)
    closure = lambda m: F.cross_entropy(m(x), y)  # noqa: E731
    exact = [t.clone() for t in awp.compute(closure)]
    grads = torch.autograd.grad(closure(tiny_net.train()), awp.params)
    given = awp.compute(lambda m: pytest.fail("the closure ran"), [g.clone() for g in grads])
    # the same v up to the BN mode of the forward (frozen vs. updating statistics: same values)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(exact, given))


def test_a_training_step_ascends_the_last_pgd_iterates_weight_gradient(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path / "run", channels_last=False)
    cfg.awp.ascent = "last-pgd-step"
    trainer = Trainer(cfg, model=TinyBNNet())
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(2))
    state = trainer.attack_gen.get_state()
    # expected: the gradient of the summed CE at x^(K-1), train mode with frozen statistics
    k = trainer.method.attack.steps
    before_last = PGD("linf", cfg.attack.eps, cfg.attack.step_size, k - 1, bn_mode="train")
    x_k1 = before_last(trainer.net, x, y, torch.Generator().set_state(state))
    with model_mode(trainer.net, "train"):
        expected = torch.autograd.grad(F.cross_entropy(trainer.net(x_k1), y, reduction="sum"),
                                       trainer.perturbation.params)
    seen = {}
    compute = trainer.perturbation.compute
    trainer.perturbation.ascent_gradients = lambda closure: pytest.fail("the exact ascent ran")
    trainer.perturbation.compute = lambda closure, grads=None: (
        seen.setdefault("grads", [g.clone() for g in grads]), compute(closure, grads))[1]
    trainer.train_step(x, y, perturb=True)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6)
               for a, b in zip(seen["grads"], expected))


@pytest.mark.parametrize("method, steps", [("trades-awp", 1), ("at-awp", 2)])
def test_approximate_ascent_is_refused_where_it_does_not_apply(tmp_path, method, steps):
    cfg = tiny_config(tmp_path / "run", method=method)
    cfg.awp.ascent, cfg.awp.steps = "last-pgd-step", steps
    with pytest.raises(ConfigError, match="awp.ascent last-pgd-step reuses AT's PGD gradient"):
        validate(cfg)
