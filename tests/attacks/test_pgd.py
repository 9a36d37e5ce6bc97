import pytest
import torch
import torch.nn.functional as F

from torchawp.attacks import FGSM, PGD, margin_loss

from ..reference.pgd import reference_pgd_linf


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
@pytest.mark.parametrize("restarts", [1, 2])
def test_adversarial_examples_stay_in_the_ball_and_in_unit_box(tiny_net, batch, norm, eps,
                                                              restarts):
    x, y = batch
    x_adv = PGD(norm, eps, eps / 4, steps=5, restarts=restarts)(tiny_net, x, y)
    delta = (x_adv - x).flatten(1)
    dist = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (dist <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_attack_touches_no_parameter_grads_no_buffers_and_restores_mode(tiny_net, batch, bn_mode):
    x, y = batch
    tiny_net.train()
    buffers = [b.clone() for b in tiny_net.buffers()]
    PGD(steps=3, bn_mode=bn_mode)(tiny_net, x, y)
    assert all(p.grad is None for p in tiny_net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(buffers, tiny_net.buffers()))
    assert tiny_net.training
    tiny_net.eval()
    PGD(steps=1, bn_mode=bn_mode)(tiny_net, x, y)
    assert not tiny_net.training


def test_pgd_agrees_with_an_independent_reference(tiny_net, batch):
    x, y = batch
    tiny_net.eval()
    eps, alpha = 8 / 255, 2 / 255
    g = torch.Generator().manual_seed(5)
    ours = PGD("linf", eps, alpha, steps=10)(tiny_net, x, y, generator=g)
    start = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) - 1) * eps
    ref = reference_pgd_linf(tiny_net, x, y, eps, alpha, 10, start)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_pgd_raises_the_loss_and_more_steps_do_not_help_the_model(digits_model, digits_test):
    x, y = digits_test
    accs = []
    for steps in (1, 5, 20):
        x_adv = PGD("linf", 0.2, 0.05, steps=steps)(digits_model, x, y,
                                                   torch.Generator().manual_seed(0))
        with torch.no_grad():
            accs.append((digits_model(x_adv).argmax(1) == y).float().mean().item())
    with torch.no_grad():
        clean = (digits_model(x).argmax(1) == y).float().mean().item()
    assert clean > accs[0] >= accs[1] - 0.01 >= accs[2] - 0.02
    assert accs[2] < clean - 0.2


def test_large_eps_breaks_an_undefended_model(digits_model, digits_test):
    x, y = digits_test
    x_adv = PGD("linf", 0.5, 0.1, steps=20)(digits_model, x, y)
    with torch.no_grad():
        acc = (digits_model(x_adv).argmax(1) == y).float().mean().item()
    assert acc < 0.05


def test_restarts_never_do_worse_than_one_run(digits_model, digits_test):
    x, y = digits_test
    one = PGD("linf", 0.1, 0.025, steps=3)(digits_model, x, y, torch.Generator().manual_seed(0))
    three = PGD("linf", 0.1, 0.025, steps=3, restarts=3)(digits_model, x, y,
                                                      torch.Generator().manual_seed(0))
    with torch.no_grad():
        fooled_one = digits_model(one).argmax(1) != y
        fooled_three = digits_model(three).argmax(1) != y
    assert (fooled_three | ~fooled_one).all()  # every example broken once stays broken


def test_fgsm_is_one_full_sign_step(tiny_net, batch):
    x, y = batch
    x = x.clamp(0.1, 0.9)
    tiny_net.eval()
    x_adv = FGSM(eps=0.05)(tiny_net, x, y)
    x_req = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(tiny_net(x_req), y, reduction="sum"), x_req)[0]
    assert torch.allclose(x_adv, (x + 0.05 * grad.sign()).clamp(0, 1), atol=1e-6)


def test_margin_loss_is_best_other_minus_true():
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    assert torch.allclose(margin_loss(logits, y), torch.tensor([1.0 - 2.0, 3.0 - 1.0]))


def test_cw_attack_ascends_the_margin(digits_model, digits_test):
    x, y = digits_test
    x_adv = PGD("linf", 0.1, 0.025, steps=10, loss="margin")(digits_model, x, y)
    with torch.no_grad():
        assert margin_loss(digits_model(x_adv), y).mean() > margin_loss(digits_model(x), y).mean()


def test_l2_attack_steps_are_normalised_per_example(tiny_net, batch):
    x, y = batch
    x = x.clamp(0.2, 0.8)
    x_adv = PGD("l2", eps=10.0, step_size=0.1, steps=1, random_start="none")(tiny_net, x, y)
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 0.1), atol=1e-5)


def test_bad_attack_arguments_are_rejected():
    with pytest.raises(ValueError, match="norm"):
        PGD(norm="l1")
    with pytest.raises(ValueError, match="random_start"):
        PGD(random_start="gauss")
    with pytest.raises(ValueError, match="bn_mode"):
        PGD(bn_mode="frozen")


def test_with_weight_grads_returns_the_attack_and_its_last_iterations_weight_gradient(tiny_net,
                                                                                      batch):
    x, y = batch
    pgd = PGD(eps=0.1, step_size=0.03, steps=3, bn_mode="train")
    params = [p for n, p in tiny_net.named_parameters() if "weight" in n and p.dim() > 1]
    x_adv, grads = pgd.with_weight_grads(tiny_net, x, y, params,
                                         torch.Generator().manual_seed(5))
    assert torch.equal(x_adv, pgd(tiny_net, x, y, torch.Generator().manual_seed(5)))
    # the gradient at x^(K-1): the iterate before the last step, from the same random start
    x_k1 = PGD(eps=0.1, step_size=0.03, steps=2, bn_mode="train")(
        tiny_net, x, y, torch.Generator().manual_seed(5))
    tiny_net.train()
    expected = torch.autograd.grad(F.cross_entropy(tiny_net(x_k1), y, reduction="sum"), params)
    assert len(grads) == len(params)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads, expected))
    assert all(p.grad is None for p in tiny_net.parameters())  # nothing left on the model
    with pytest.raises(ValueError, match="one restart"):
        PGD(restarts=2).with_weight_grads(tiny_net, x, y, params)
