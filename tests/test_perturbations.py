"""Weight perturbations share one base (add v, step there, remove v); each is one file. The
random-noise control has AWP's exact size and no ascent."""

import pytest
import torch
import torch.nn.functional as F

from torchawp.perturbations import (AWP, RWP, SAM, PractitionersAWP, RandomWeightNoise,
                                    WeightPerturbation)


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


def _twins(seed: int, n: int = 16):
    """Two float64 copies of one conv + BN + linear net, and three seeded batches."""
    from .conftest import TinyBNNet

    torch.manual_seed(0)
    ours, theirs = TinyBNNet().double(), TinyBNNet().double()
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(seed)
    return ours, theirs, [(torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64),
                           torch.randint(0, 10, (n,), generator=g)) for _ in range(3)]


@pytest.mark.parametrize("adaptive, rho", [(False, 0.05), (True, 0.5)])
def test_sam_and_asam_equal_davda54s_two_steps_in_float64(adaptive, rho):
    """Three SGD steps (momentum, weight decay) on a conv + BN + linear net: torchawp's SAM /
    ASAM in a plain loop against a transcription of davda54/sam, parameters equal to 1e-12.
    (Running statistics are not compared: the reference's first backward updates them, the
    known wrinkle its README works around; torchawp's ascent never does.)"""
    from .conftest import TinyBNNet
    from .reference.sam_reference import ReferenceSAM

    ours, theirs, batches = _twins(3)
    sgd = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt = torch.optim.SGD(ours.parameters(), **sgd)
    ref = ReferenceSAM(theirs.parameters(), torch.optim.SGD(theirs.parameters(), **sgd), rho,
                       adaptive)
    sam = SAM(ours, rho=rho, adaptive=adaptive)
    assert len(sam.params) == len(list(ours.parameters()))  # biases and BN affine included
    for x, y in batches:
        with sam.perturbed(lambda m: F.cross_entropy(m(x), y)):
            opt.zero_grad()
            F.cross_entropy(ours(x), y).backward()
            sam.before_step()  # SAM steps at w
            opt.step()
        ref.base.zero_grad()
        F.cross_entropy(theirs(x), y).backward()
        ref.first_step()
        ref.base.zero_grad()
        F.cross_entropy(theirs(x), y).backward()
        ref.second_step()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-12, rtol=0), name
    # the perturbation moved the steps: plain SGD from the same start ends elsewhere
    torch.manual_seed(0)
    plain = TinyBNNet().double()
    plain_opt = torch.optim.SGD(plain.parameters(), **sgd)
    for x, y in batches:
        plain_opt.zero_grad()
        F.cross_entropy(plain(x), y).backward()
        plain_opt.step()
    assert not torch.allclose(plain.fc.weight, ours.fc.weight, atol=1e-6)


def test_rwp_equals_the_authors_proxy_loop_in_float64():
    """Three AT-RWP steps (SGD momentum, weight decay; the model steps at w + v as in the
    authors' loop) against a transcription of their two-proxy RobustWeightPerturb: parameters
    equal to 1e-10. The threshold is set so that some examples drive the ascent and some do
    not, and gamma so that v moves the steps."""
    from .reference import rwp_proxy

    ours, theirs, batches = _twins(5, n=32)
    with torch.no_grad():
        losses = F.cross_entropy(ours(batches[0][0]), batches[0][1], reduction="none")
    threshold = losses.median().item()  # half the batch below it, half above
    gamma = rwp_proxy.rwp_direction.gamma = 0.05
    sgd = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt, ref_opt = (torch.optim.SGD(m.parameters(), **sgd) for m in (ours, theirs))
    rwp = RWP(ours, gamma=gamma, threshold=threshold)
    for x, y in batches:
        with rwp.perturbed(lambda m: F.cross_entropy(m(x), y, reduction="none")):
            v = rwp._v
            w = torch.cat([(p.detach() - t).flatten() for p, t in zip(rwp.params, v)])
            opt.zero_grad()
            F.cross_entropy(ours(x), y).backward()
            opt.step()
        direction = rwp_proxy.rwp_direction(theirs, x, y, threshold)
        rwp_proxy.add(theirs, direction, gamma)
        ref_opt.zero_grad()
        F.cross_entropy(theirs(x), y).backward()
        ref_opt.step()
        rwp_proxy.add(theirs, direction, -gamma)
        assert sum(t.norm() ** 2 for t in v) ** 0.5 > 0  # a real perturbation every step
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-10, rtol=0), name
    # ||v|| is gamma ||w|| over all selected tensors together, not per tensor
    assert torch.cat([t.flatten() for t in v]).norm().item() == pytest.approx(
        gamma * w.norm().item(), rel=1e-6)
    with pytest.raises(ValueError, match="one loss per example"):
        rwp.perturb(lambda m: F.cross_entropy(m(x), y))


@pytest.mark.parametrize("adv_step", [1, 2])  # 1: the in-place path, the class's default
@pytest.mark.parametrize("adv_lr, adv_eps", [(0.5, 0.01), (0.01, 0.2)])  # box binds / does not
def test_the_practitioners_awp_equals_the_copied_class_in_float64(adv_lr, adv_eps, adv_step):
    """Three steps with one or two inner steps each (SGD momentum, weight decay) against a
    transcription of the Kaggle class: parameters equal to 1e-10; its tensors are every
    "weight" (BatchNorm's too), and the box holds."""
    from .reference.practitioners_awp import ReferencePractitionersAWP

    ours, theirs, batches = _twins(7)
    sgd = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt, ref_opt = (torch.optim.SGD(m.parameters(), **sgd) for m in (ours, theirs))
    awp = PractitionersAWP(ours, adv_lr=adv_lr, adv_eps=adv_eps, adv_step=adv_step)
    ref = ReferencePractitionersAWP(theirs, ref_opt, adv_lr=adv_lr, adv_eps=adv_eps,
                                    adv_step=adv_step)
    assert [n for n, _ in awp.named_params] == ["conv.weight", "bn.weight", "fc.weight"]
    for x, y in batches:
        with awp.perturbed(lambda m: F.cross_entropy(m(x), y)):
            v = awp._v
            assert all((t.abs() <= adv_eps * (p - t).abs() + 1e-15).all()
                       for t, p in zip(v, awp.params))  # inside the elementwise box
            opt.zero_grad()
            F.cross_entropy(ours(x), y).backward()
            awp.before_step()  # the step is taken at w
            opt.step()
        ref_opt.zero_grad()
        F.cross_entropy(theirs(x), y).backward()
        ref.attack_backward(lambda: F.cross_entropy(theirs(x), y))
        ref_opt.step()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-10, rtol=0), name
