"""Weight perturbations share one base (add v, step there, remove v); each is one file. The
random-noise control has AWP's exact size and no ascent."""

import pytest
import torch
import torch.nn.functional as F

from torchawp.perturbations import AWP, RandomWeightNoise, WeightPerturbation


def test_random_noise_has_awps_size_per_tensor_and_runs_no_closure(tiny_net, batch):
    x, y = batch
    before = [p.detach().clone() for p in tiny_net.parameters()]
    noise = RandomWeightNoise(tiny_net, gamma=0.01, generator=torch.Generator().manual_seed(0))
    v = noise.perturb(lambda m: pytest.fail("the closure ran"))
    assert [name for name, _ in noise.named_params] == ["conv.weight", "fc.weight"]  # AWP's rule
    for vl, p in zip(v, noise.params):
        assert (vl.norm() / (p - vl).norm()).item() == pytest.approx(0.01, rel=1e-5)
    awp = AWP(tiny_net, gamma=0.01)
    assert [id(p) for p in awp.params] == [id(p) for p in noise.params]
    noise.restore()
    after = list(tiny_net.parameters())
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(after, before))
    # a fresh draw every step, and none when disabled or in the warm-up
    second = noise.compute()
    assert not torch.equal(second[0], v[0])
    assert RandomWeightNoise(tiny_net, gamma=0).perturb(None) is None
    assert not RandomWeightNoise(tiny_net, warmup_epochs=2).applies_in(1)


def test_a_perturbation_of_your_own_is_one_subclass(tiny_net, batch):
    """The shape docs/architecture.md shows: set ``name``, implement ``compute``."""
    x, y = batch

    class SignAscent(WeightPerturbation):  # v = rho * sign(g), element-wise
        name = "sign"

        def compute(self, closure, grads=None):
            return [0.001 * g.sign() for g in self.ascent_gradients(closure)]

    p = SignAscent(tiny_net)
    before = [t.detach().clone() for t in p.params]
    closure = lambda m: F.cross_entropy(m(x), y)  # noqa: E731
    loss_before = closure(tiny_net).item()
    with p.perturbed(closure):
        assert closure(tiny_net).item() > loss_before  # it climbed
        assert all(not torch.equal(a, b) for a, b in zip(p.params, before))
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(p.params, before))
    with pytest.raises(RuntimeError, match="twice without restore"):
        p.perturb(closure)
        p.perturb(closure)
