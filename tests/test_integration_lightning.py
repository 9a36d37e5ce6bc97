"""AWP in Lightning: a small CNN on digits trained a few steps with the callback (automatic
optimisation) ends with the weights of the same steps written as a plain loop with the
library's perturbation, float64 on the CPU, with and without gradient accumulation; manual
optimisation with the context manager does the same."""

import copy

import pytest
import torch
import torch.nn.functional as F

L = pytest.importorskip("lightning.pytorch", reason="the lightning extra is not installed")

import torchawp  # noqa: E402
from torchawp.data import load_splits  # noqa: E402
from torchawp.errors import ConfigError  # noqa: E402
from torchawp.integrations.lightning import WeightPerturbationCallback  # noqa: E402
from torchawp.models import create_model  # noqa: E402

STEPS, BATCH, LR = 3, 32, 0.05


def small_cnn():
    torch.manual_seed(0)
    return create_model("small_cnn", 10, 1, 8, [0.3], [0.38], width=8, batchnorm=True,
                        hidden=32).double()


def digits():
    train = load_splits("digits", val_size=0, train_subset=400).train
    return torch.utils.data.TensorDataset(train.images.double() / 255
                                          if not train.images.is_floating_point()
                                          else train.images.double(), train.labels)


class Module(L.LightningModule):
    def __init__(self, net, manual=None):
        super().__init__()
        self.net, self.manual = net, manual
        self.automatic_optimization = manual is None

    def loss(self, net, batch):
        x, y = batch
        return F.cross_entropy(net(x), y)

    def training_step(self, batch, batch_idx):
        if self.manual is None:
            loss = self.loss(self.net, batch)
            self.log("loss", loss)
            return loss
        opt = self.optimizers()
        awp = self.manual
        with awp.perturbed(lambda m: self.loss(m, batch)):
            self.manual_backward(self.loss(self.net, batch))
            awp.before_step()
            opt.step()
        opt.zero_grad()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)


def trainer(accumulation=1, callbacks=()):
    return L.Trainer(max_steps=STEPS, accumulate_grad_batches=accumulation, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", devices=1,
                     callbacks=list(callbacks))


def plain_loop(net, data, make, accumulation):
    wp = make(net)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    net.train()
    batches = iter(torch.utils.data.DataLoader(data, batch_size=BATCH))
    for _ in range(STEPS):
        for micro in range(accumulation):
            x, y = next(batches)
            wp.perturb(lambda m: F.cross_entropy(m(x), y))
            (F.cross_entropy(net(x), y) / accumulation).backward()
            if micro < accumulation - 1:
                wp.restore()
        wp.before_step()
        opt.step()
        wp.restore()
        opt.zero_grad()
    return net


def loader(data):
    return torch.utils.data.DataLoader(data, batch_size=BATCH)


@pytest.mark.parametrize("accumulation", [1, 2])
@pytest.mark.parametrize("make", [lambda m: torchawp.AWP(m, gamma=0.01),
                                  lambda m: torchawp.SAM(m, rho=0.05)], ids=["awp", "sam"])
def test_the_callback_takes_the_plain_loops_steps(accumulation, make, capsys):
    data, net = digits(), small_cnn()
    reference = plain_loop(copy.deepcopy(net), data, make, accumulation)
    module = Module(net)
    trainer(accumulation, [WeightPerturbationCallback(make)]).fit(module, loader(data))
    ours, theirs = net.state_dict(), reference.state_dict()  # BatchNorm's buffers too
    worst = max((ours[k].double() - theirs[k].double()).abs().max().item() for k in ours)
    assert worst < 1e-10, worst
    assert any(not torch.equal(ours[k], v) for k, v in small_cnn().state_dict().items())
    assert "perturbs" in capsys.readouterr().out


def test_manual_optimisation_with_the_context_manager():
    data, net = digits(), small_cnn()
    make = lambda m: torchawp.AWP(m, gamma=0.01)  # noqa: E731
    reference = plain_loop(copy.deepcopy(net), data, make, 1)
    trainer().fit(Module(net, manual=make(net)), loader(data))
    ours, theirs = net.state_dict(), reference.state_dict()
    assert max((ours[k].double() - theirs[k].double()).abs().max().item() for k in ours) < 1e-10


def test_the_callback_refuses_manual_optimisation():
    net = small_cnn()
    with pytest.raises(ConfigError, match="manual optimisation"):
        trainer(1, [WeightPerturbationCallback(lambda m: torchawp.AWP(m))]).fit(
            Module(net, manual=torchawp.AWP(net)), loader(digits()))


def test_a_precision_plugin_still_trains():
    """bf16-mixed (the CPU's; 16-mixed with a GradScaler needs a GPU): the ascent runs under the
    plugin's autocast, the weights move, v is gone after the run."""
    data, net = digits(), small_cnn().float()
    data = torch.utils.data.TensorDataset(*(t.float() if t.is_floating_point() else t
                                            for t in data.tensors))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    callback = WeightPerturbationCallback(lambda m: torchawp.AWP(m, gamma=0.01))
    L.Trainer(max_steps=STEPS, precision="bf16-mixed", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
              devices=1, callbacks=[callback]).fit(Module(net), loader(data))
    assert callback.perturbation._v is None
    assert any(not torch.equal(v, net.state_dict()[k]) for k, v in start.items())
