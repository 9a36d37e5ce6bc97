"""The regional attack (Ozbulak et al.): masks, no ball, targeted steps, early stop on a second
model; and PGD's mask option it is built from."""

import pytest
import torch
from torch import nn

from torchawp.attacks import PGD, Regional
from torchawp.attacks.regional import Region, centre, frame, full, random
from torchawp.errors import ConfigError


def test_regions_cover_what_they_say():
    assert centre(0.25).mask(8, 8).sum() == 16 and centre(0.25).mask(8, 8)[2:6, 2:6].all()
    assert torch.equal(frame(0.75).mask(8, 8), ~centre(0.25).mask(8, 8))
    assert frame(0.44).actual_area(8, 8) == pytest.approx(1 - 36 / 64)
    assert random(0.5, seed=3).mask(8, 8).sum() == 32
    assert torch.equal(random(0.5, 3).mask(8, 8), random(0.5, 3).mask(8, 8))
    assert not torch.equal(random(0.5, 3).mask(8, 8), random(0.5, 4).mask(8, 8))
    assert full().mask(4, 4).all()
    assert Region.parse("random:0.3:2") == random(0.3, 2) and Region.parse("full") == full()
    for text in ("centre:1.5", "full:0.5", "middle:0.3", "centre"):
        with pytest.raises(ConfigError, match="is not a region"):
            Region.parse(text)


@pytest.mark.parametrize("attack", [
    PGD("linf", 8 / 255, 2 / 255, steps=5, mask=centre(0.3)),
    PGD("l2", 0.5, 0.2, steps=5, mask=random(0.3, 1)),
    Regional(frame(0.4), steps=20),
], ids=["pgd-linf", "pgd-l2", "regional"])
def test_nothing_changes_outside_the_mask_exactly(tiny_net, batch, attack):
    x, y = batch
    x_adv = attack(tiny_net, x, y, torch.Generator().manual_seed(0))
    inside = attack.mask.mask(8, 8)
    assert torch.equal(x_adv[..., ~inside], x[..., ~inside])  # bit for bit
    assert (x_adv[..., inside] != x[..., inside]).any()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_regional_has_no_ball_and_descends_towards_a_target(tiny_net, batch):
    x, y = batch
    x_adv = Regional(full(), steps=60)(tiny_net, x, y, torch.Generator().manual_seed(0))
    # 60 steps of 1/255 may go beyond any usual eps, but each pixel moves by at most 60/255
    linf = (x_adv - x).abs().amax()
    assert 8 / 255 < linf <= 60 / 255 + 1e-6
    with torch.no_grad():
        assert (tiny_net(x_adv).argmax(1) != y).float().mean() > 0.5


class ClassInPixel(nn.Module):
    """Predicts the class written into the top-left pixel (label / 10); after ``flip_after``
    calls it predicts the next class instead (a second model whose prediction 'flips')."""

    def __init__(self, flip_after=None):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.flip_after, self.calls = flip_after, 0

    def forward(self, x):
        self.calls += 1
        label = (x[:, 0, 0, 0] * 10).round().long()
        if self.flip_after is not None and self.calls > self.flip_after:
            label = (label + 1) % 10
        return nn.functional.one_hot(label, 10).float() + 0 * self.dummy


@pytest.fixture
def labelled(batch):
    x, y = batch
    x = x.clone()
    x[:, 0, 0, 0] = y / 10  # the corner, outside a centre region
    return x, y


def test_early_stop_asks_the_second_model_before_every_step(tiny_net, labelled):
    x, y = labelled
    run = lambda stop, steps: Regional(centre(0.3), stop, steps=steps)(  # noqa: E731
        tiny_net, x, y, torch.Generator().manual_seed(0))
    # flips at once: no step at all
    assert torch.equal(run(ClassInPixel(flip_after=0), 50), x)
    # flips after 3 checks: exactly 3 steps, the same as a 3-step attack without stopping
    assert torch.equal(run(ClassInPixel(flip_after=3), 50), run(None, 3))
    # never flips: all steps, the same as without stopping
    assert torch.equal(run(ClassInPixel(), 7), run(None, 7))


def test_early_stop_is_per_example(tiny_net, labelled):
    """Examples the second model already gets wrong stop; the others keep going."""
    x, y = labelled
    stop_model = ClassInPixel()
    x_flip = x.clone()
    x_flip[:16, 0, 0, 0] = ((y[:16] + 1) % 10) / 10  # the second model is wrong on these
    out = Regional(centre(0.3), stop_model, steps=5)(tiny_net, x_flip, y,
                                                     torch.Generator().manual_seed(0))
    assert torch.equal(out[:16], x_flip[:16])
    assert (out[16:] != x_flip[16:]).flatten(1).any(1).all()
