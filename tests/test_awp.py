import copy

import pytest
import torch
import torch.nn.functional as F

from torchawp import AWP
from torchawp.perturb import select_parameters

from .reference.awp_proxy import reference_awp_step


def ce_closure(x, y):
    return lambda m: F.cross_entropy(m(x), y)


def test_perturbation_norm_is_gamma_times_weight_norm_per_tensor(tiny_net, batch):
    x, y = batch
    awp = AWP(tiny_net, gamma=0.01)
    before = {n: p.detach().clone() for n, p in tiny_net.named_parameters()}
    v = awp.perturb(ce_closure(x, y))
    for (name, p), vi in zip(awp.named_params, v):
        rel = vi.norm() / before[name].norm()
        assert rel == pytest.approx(0.01, rel=1e-5), name
        assert torch.allclose(p - before[name], vi, atol=1e-7)


def test_only_multidim_weight_tensors_are_perturbed(tiny_net, batch):
    x, y = batch
    awp = AWP(tiny_net, gamma=0.01)
    assert [n for n, _ in awp.named_params] == ["conv.weight", "fc.weight"]
    before = {n: p.detach().clone() for n, p in tiny_net.named_parameters()}
    awp.perturb(ce_closure(x, y))
    for name, p in tiny_net.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == (name in ("conv.weight", "fc.weight")), name


def test_perturb_keeps_batchnorm_running_stats(tiny_net, batch):
    x, y = batch
    buffers = {n: b.clone() for n, b in tiny_net.named_buffers()}
    tiny_net.eval()
    AWP(tiny_net, gamma=0.01).perturb(ce_closure(x, y))
    for name, b in tiny_net.named_buffers():
        assert torch.equal(b, buffers[name]), name
    assert not tiny_net.training  # the caller's mode is restored
    assert tiny_net.bn.track_running_stats


def test_ascent_uses_train_mode_batch_statistics(tiny_net, batch):
    # In eval mode BN would use running stats (init: mean 0, var 1): a different direction.
    x, y = batch
    seen = []
    AWP(tiny_net, gamma=0.01).perturb(lambda m: seen.append(m.training) or
                                      F.cross_entropy(m(x), y))
    assert seen == [True]


def test_perturb_leaves_parameter_grads_untouched(tiny_net, batch):
    x, y = batch
    F.cross_entropy(tiny_net(x), y).backward()
    grads = {n: p.grad.clone() for n, p in tiny_net.named_parameters()}
    AWP(tiny_net, gamma=0.01).perturb(ce_closure(x, y))
    for n, p in tiny_net.named_parameters():
        assert torch.equal(p.grad, grads[n])


def test_ascent_increases_the_loss(tiny_net, batch):
    x, y = batch
    tiny_net.train()
    awp = AWP(tiny_net, gamma=0.05)
    from torchawp.perturb import frozen_bn_stats
    with frozen_bn_stats(tiny_net):
        before = F.cross_entropy(tiny_net(x), y).item()
        awp.perturb(ce_closure(x, y))
        after = F.cross_entropy(tiny_net(x), y).item()
    assert after > before + 1e-4


def test_restore_returns_to_the_original_weights(tiny_net, batch):
    x, y = batch
    before = [p.detach().clone() for p in tiny_net.parameters()]
    awp = AWP(tiny_net, gamma=0.01)
    awp.perturb(ce_closure(x, y))
    awp.restore()
    for p, b in zip(tiny_net.parameters(), before):
        assert torch.allclose(p, b, atol=1e-7, rtol=0)
    awp.restore()  # a second restore is a no-op
    for p, b in zip(tiny_net.parameters(), before):
        assert torch.allclose(p, b, atol=1e-7, rtol=0)


def test_perturb_twice_without_restore_is_an_error(tiny_net, batch):
    awp = AWP(tiny_net, gamma=0.01)
    awp.perturb(ce_closure(*batch))
    with pytest.raises(RuntimeError, match="restore"):
        awp.perturb(ce_closure(*batch))


def test_context_manager_restores_even_on_error(tiny_net, batch):
    before = [p.detach().clone() for p in tiny_net.parameters()]
    awp = AWP(tiny_net, gamma=0.01)
    with pytest.raises(ValueError):
        with awp.perturbed(ce_closure(*batch)):
            assert not torch.equal(tiny_net.conv.weight, before[0])
            raise ValueError("boom")
    for p, b in zip(tiny_net.parameters(), before):
        assert torch.allclose(p, b, atol=1e-7, rtol=0)


@pytest.mark.parametrize("gamma", [0.0, -0.5])
def test_gamma_zero_or_negative_disables_awp(tiny_net, batch, gamma):
    before = [p.detach().clone() for p in tiny_net.parameters()]
    awp = AWP(tiny_net, gamma=gamma)
    assert awp.perturb(ce_closure(*batch)) is None
    assert not awp.applies_in(100)
    for p, b in zip(tiny_net.parameters(), before):
        assert torch.equal(p, b)


def test_warmup_epochs(tiny_net):
    awp = AWP(tiny_net, gamma=0.01, warmup_epochs=3)
    assert [awp.applies_in(e) for e in range(5)] == [False, False, False, True, True]
    with pytest.warns(FutureWarning, match="applies_in"):  # the old name, for one release
        assert awp.active(3) and not awp.active(2)


@pytest.mark.parametrize("steps", [1, 3])
def test_training_step_matches_proxy_copy_reference(batch, steps):
    """Our in-place AWP step gives the weights of the authors' proxy-model algorithm."""
    from .conftest import TinyBNNet

    x, y = batch
    torch.manual_seed(0)
    ours = TinyBNNet()
    ref = copy.deepcopy(ours)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    awp = AWP(ours, gamma=0.01)
    for _ in range(steps):
        ours.train()
        with awp.perturbed(ce_closure(x, y)):
            loss = F.cross_entropy(ours(x), y)
            opt_ours.zero_grad()
            loss.backward()
            opt_ours.step()
        reference_awp_step(ref, opt_ref, ce_closure(x, y), ce_closure(x, y), gamma=0.01)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=2e-6, rtol=1e-5), name
    for (name, b), c in zip(ours.named_buffers(), ref.buffers()):
        assert torch.allclose(b.float(), c.float(), atol=1e-6), name


def test_perturbation_matches_reference_direction(tiny_net, batch):
    from .reference.awp_proxy import awp_diff

    x, y = batch
    diff = awp_diff(tiny_net, ce_closure(x, y), gamma=0.01)
    v = AWP(tiny_net, gamma=0.01).compute(ce_closure(x, y))
    assert list(diff) == ["conv.weight", "fc.weight"]
    for ref, ours in zip(diff.values(), v):
        # the proxy route loses digits to cancellation in (w - lr g) - w (~1e-5 relative)
        assert (0.01 * ref - ours).abs().max() <= 5e-5 * ours.abs().max()


def test_multi_step_ascent_stays_in_the_ball_and_climbs_higher(tiny_net, batch):
    x, y = batch
    one = AWP(tiny_net, gamma=0.05).compute(ce_closure(x, y))
    many = AWP(tiny_net, gamma=0.05, steps=5).compute(ce_closure(x, y))
    weights = [p for _, p in select_parameters(tiny_net)]
    for v, w in zip(many, weights):
        assert v.norm() <= 0.05 * w.norm() * (1 + 1e-5)

    from torchawp.perturb import add_, frozen_bn_stats

    def loss_at(v):
        add_(weights, v)
        with frozen_bn_stats(tiny_net):
            tiny_net.train()
            value = F.cross_entropy(tiny_net(x), y).item()
        add_(weights, v, alpha=-1)
        return value

    assert loss_at(many) >= loss_at(one) - 1e-4
    assert loss_at(one) > loss_at([torch.zeros_like(w) for w in weights])


def test_global_scale_uses_one_ball(tiny_net, batch):
    v = AWP(tiny_net, gamma=0.01, scale="global").compute(ce_closure(*batch))
    weights = [p.detach() for _, p in select_parameters(tiny_net)]
    total_v = torch.sqrt(sum(t.norm() ** 2 for t in v))
    total_w = torch.sqrt(sum(t.norm() ** 2 for t in weights))
    assert total_v / total_w == pytest.approx(0.01, rel=1e-5)
    per_tensor = [vi.norm() / wi.norm() for vi, wi in zip(v, weights)]
    assert max(per_tensor) - min(per_tensor) > 1e-4  # not layer-wise


def test_beta_of_the_loss_changes_the_perturbation(tiny_net, batch):
    """AWP ascends whatever loss it is given (the method's own)."""
    x, y = batch
    from torchawp.methods import trades_loss

    x_adv = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    v1 = AWP(tiny_net, gamma=0.01).compute(lambda m: trades_loss(m, x, x_adv, y, 1.0).loss)
    v6 = AWP(tiny_net, gamma=0.01).compute(lambda m: trades_loss(m, x, x_adv, y, 6.0).loss)
    assert not torch.allclose(v1[0], v6[0], atol=1e-6)


def test_parameter_filter_callable_and_biases(tiny_net, batch):
    awp = AWP(tiny_net, gamma=0.01, params=lambda n, p: n.startswith("fc"))
    assert [n for n, _ in awp.named_params] == ["fc.weight", "fc.bias"]
    names = [n for n, _ in select_parameters(tiny_net, "weights+biases")]
    assert names == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]  # BN affine excluded
