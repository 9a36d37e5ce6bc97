import torch

from torchawp.attacks import PGD
from torchawp.weightspace.landscape import filter_normalized_direction, landscape_1d, landscape_2d, robust_loss


def test_direction_filters_have_the_weight_filter_norms_and_1d_tensors_are_zero(tiny_net):
    d = filter_normalized_direction(tiny_net, torch.Generator().manual_seed(0))
    for p, di in zip(tiny_net.parameters(), d):
        if p.dim() <= 1:
            assert torch.count_nonzero(di) == 0
        else:
            assert torch.allclose(di.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1),
                                  rtol=1e-5)


def test_landscape_at_zero_is_the_robust_loss_and_weights_are_untouched(digits_model,
                                                                        digits_test):
    x, y = digits_test
    x, y = x[:100], y[:100]
    attack = PGD("linf", 0.1, 0.025, steps=5)
    params = [p.detach().clone() for p in digits_model.parameters()]
    buffers = [b.clone() for b in digits_model.buffers()]
    ls = landscape_1d(digits_model, x, y, attack, directions=2, points=5)
    assert ls.alphas[2] == 0.0
    loss0, acc0 = robust_loss(digits_model, x, y, attack)
    assert ls.loss[0][2] == loss0 == ls.loss[1][2] and ls.acc[0][2] == acc0
    assert all(torch.equal(a, b) for a, b in zip(params, digits_model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(buffers, digits_model.buffers()))
    # a full filter-normalised step away is much worse than the trained weights
    assert min(ls.loss[0][0], ls.loss[0][-1]) > loss0


def test_robust_landscape_lies_above_the_clean_one(digits_model, digits_test):
    x, y = digits_test
    x, y = x[:100], y[:100]
    robust = landscape_1d(digits_model, x, y, PGD("linf", 0.1, 0.025, 5), directions=1, points=3)
    clean = landscape_1d(digits_model, x, y, None, directions=1, points=3)
    assert all(r > c for r, c in zip(robust.loss[0], clean.loss[0]))


def test_2d_landscape_grid_centre_is_the_loss(digits_model, digits_test):
    x, y = digits_test
    ls = landscape_2d(digits_model, x[:50], y[:50], None, points=3)
    assert len(ls.loss) == 3 and len(ls.loss[0]) == 3
    assert ls.loss[1][1] == robust_loss(digits_model, x[:50], y[:50], None)[0]
