"""Consistency regularisation (Tack et al. 2022) as an option of AT, TRADES, MART and RST:
two augmented views per batch from the loader, the authors' loss in float64, combined with
any weight perturbation, refused where it would be a no-op."""

import copy

import pytest
import torch

from torchawp.config.resolve import validate
from torchawp.data import BatchLoader, load_splits
from torchawp.data.base import apply_augmentation, draw_augmentation, to_float
from torchawp.methods import build_method
from torchawp.methods.consistency import Consistency, jensen_shannon
from torchawp.training.trainer import Trainer

from .conftest import TinyBNNet
from .helpers import tiny_config
from .reference.consistency_reference import at_consistency, js_divergence, trades_consistency
from .test_cli import run_cli


def _config(tmp_path, method, **consistency):
    cfg = tiny_config(tmp_path / method, method=method)
    cfg.data.augment = "crop"
    cfg.consistency.weight = consistency.get("weight", 1.0)
    cfg.consistency.temperature = consistency.get("temperature", 0.5)
    return cfg


def test_the_loader_stacks_two_augmentations_of_the_same_images():
    """views=2: ``[view 1; view 2]`` with the labels repeated, each view one draw of the
    augmentation after the other from the same generator; a resumed epoch replays both."""
    data = load_splits("digits", val_size=0, train_subset=200).train
    two = BatchLoader(data, 64, shuffle=True, augment="crop", views=2,
                      generator=torch.Generator().manual_seed(3))
    batches = list(two.batches())
    gen = torch.Generator().manual_seed(3)
    raw = BatchLoader(data, 64, shuffle=True, augment="none", generator=gen)
    plan = raw._plan()  # the same order (augment none draws nothing)
    for (i, x, y), (index, _) in zip(batches, plan):
        images, labels = data.images[index], data.labels[index]
        first = to_float(apply_augmentation(images, draw_augmentation(len(index), "crop", gen)))
        second = to_float(apply_augmentation(images, draw_augmentation(len(index), "crop", gen)))
        assert torch.equal(x, torch.cat([first, second]))
        assert torch.equal(y, torch.cat([labels, labels]))
        assert not torch.equal(first, second)
    resumed = BatchLoader(data, 64, shuffle=True, augment="crop", views=2,
                          generator=torch.Generator().manual_seed(3))
    _, x2, _ = next(iter(resumed.batches(start=2)))
    assert torch.equal(x2, batches[2][1])


def test_the_js_term_is_the_authors():
    torch.manual_seed(0)
    a, b = torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64)
    for t in (0.5, 1.0, 2.0):
        assert torch.allclose(jensen_shannon(a, b, t), js_divergence(a, b, t), rtol=1e-12)
    assert jensen_shannon(a, a, 0.5).abs().item() < 1e-12  # the same view: no term
    assert jensen_shannon(a, b, 0.5) > 0


@pytest.mark.parametrize("method", ["at", "trades"])
def test_the_loss_on_two_views_is_the_authors_loop_in_float64(tmp_path, method):
    """Our method with the consistency option, on a stacked pair of views, equals the
    authors' loss (adv_train_consistency.py / adv_trades_consistency.py), value and
    gradient."""
    cfg = validate(_config(tmp_path, method, weight=0.7, temperature=0.5))
    torch.manual_seed(0)
    ours, theirs = TinyBNNet().double(), TinyBNNet().double()
    theirs.load_state_dict(ours.state_dict())
    m = build_method(cfg, ours)
    assert isinstance(m, Consistency)
    x = torch.rand(8, 1, 8, 8, dtype=torch.float64)  # 4 images, two views each
    y = torch.randint(0, 10, (4,))
    x_adv = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    ours.train(), theirs.train()
    loss = m.loss(ours, x, x_adv, y.repeat(2)).loss
    ref = (at_consistency(theirs, x_adv, y, 0.7, 0.5) if method == "at" else
           trades_consistency(theirs, x, x_adv, y, cfg.beta, 0.7, 0.5))
    assert torch.allclose(loss, ref, rtol=1e-12)
    loss.backward(), ref.backward()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("perturbation", [None, "awp", "rwp", "sam"])
@pytest.mark.parametrize("method", ["at", "trades", "mart"])
def test_consistency_trains_with_every_method_and_weight_perturbation(tmp_path, method,
                                                                      perturbation):
    """A step with the term moves the weights elsewhere than the same step without it; with
    a weight perturbation the ascent climbs the whole loss (the term included)."""
    cfg = _config(tmp_path, method)
    cfg.perturbation.name, cfg.perturbation.threshold = perturbation, 100.0
    trainer = Trainer(cfg)
    _, x, y = next(iter(trainer.train_loader.batches()))
    half = len(y) // 2
    assert torch.equal(y[:half], y[half:]) and not torch.equal(x[:half], x[half:])
    start, gen = copy.deepcopy(trainer.model.state_dict()), trainer.attack_gen.get_state()
    trainer.train_step(x, y, perturbation is not None)
    with_term = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.model.load_state_dict(start)
    trainer.attack_gen.set_state(gen)
    trainer.optimizer.state.clear()
    trainer.method.weight = 0.0  # the same step without the term
    trainer.train_step(x, y, perturbation is not None)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(with_term,
                                                              trainer.model.parameters()))
    if perturbation == "awp":  # AWP climbs the whole loss, the term included
        trainer.method.weight = 1.0
        x_adv = trainer.method.craft(trainer.net, x, y, trainer.attack_gen)
        climbed = trainer.perturbation.closure(trainer.method, x, x_adv, y)(trainer.net)
        assert climbed == trainer.method.loss(trainer.net, x, x_adv, y).loss


@pytest.mark.parametrize("args,message", [
    (["--method", "standard", "--consistency.weight", "1", "--data.augment", "crop"],
     "standard crafts no adversarial examples"),
    (["--consistency.weight", "1"], "the run does not augment digits (data.augment auto)"),
    (["--consistency.weight", "1", "--data.augment", "none"], "data.augment none"),
    (["--consistency.weight", "-1"], "consistency.weight must be >= 0"),
    (["--consistency.temperature", "0"], "consistency.temperature must be > 0"),
])
def test_consistency_that_would_do_nothing_is_refused(capsys, args, message):
    code, out, err = run_cli(capsys, "train", *args, "--dry-run")
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_the_run_header_names_the_term(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--method", "at", "--perturbation", "awp",
                             "--consistency.weight", "1", "--data.augment", "crop",
                             "--model-args", "{width: 8, batchnorm: true, hidden: 32}",
                             "--epochs", "1", "--awp.warmup-epochs", "0", "--no-progress",
                             "--attack.steps", "2", "--eval.steps", "2", "--n-examples", "50",
                             "--eval.train-examples", "30", "--data.train-subset", "150",
                             "--out-dir", str(tmp_path / "r"))
    assert code == 0, err
    assert ("at on digits (small_cnn), linf eps 0.2, AWP gamma 0.01 on epochs 1-1, "
            "consistency weight 1 T 0.5") in out
