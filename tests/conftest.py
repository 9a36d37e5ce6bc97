import os

import pytest
import torch
from torch import nn

from torchawp.runtime import cores_busy_elsewhere


def _threads() -> int:
    """Threads for every test's torch (and, through OMP_NUM_THREADS, its subprocesses): 2, or 1
    where other processes keep the cores busy. Two threads on two busy cores wait for each other
    at every parallel region and run many times slower, not twice (benchmarks/concurrency.py);
    one thread only shares. Each test compares runs of one thread count, so either holds."""
    if os.environ.get("TORCHAWP_TEST_THREADS"):
        return int(os.environ["TORCHAWP_TEST_THREADS"])
    busy, cores = cores_busy_elsewhere(0.5), os.cpu_count() or 1
    return 2 if busy is None or cores - busy >= 1.5 else 1


THREADS = _threads()
os.environ["TORCHAWP_TEST_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)


class TinyBNNet(nn.Module):
    """Conv + BN + linear: every kind of tensor AWP must handle (multi-dim weights, biases,
    BN affine parameters and running statistics)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = nn.functional.max_pool2d(x, 2)
        return self.fc(x.flatten(1))


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyBNNet()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    return x, y


@pytest.fixture(scope="session")
def digits_splits():
    from torchawp.data import load_splits

    return load_splits("digits", val_size=200)


@pytest.fixture(scope="session")
def digits_model(digits_splits):
    """A small CNN trained normally (no attack) on digits for 15 epochs: an undefended model."""
    from .helpers import train_plainly

    return train_plainly(digits_splits, 15, width=16)


@pytest.fixture(scope="session")
def digits_test(digits_splits):
    return digits_splits.test.tensors(0, 300)


@pytest.fixture(scope="session")
def two_epochs(tmp_path_factory):
    """A finished 2-epoch run of the tiny config, copied (``helpers.copy_run``) by the tests
    that damage it."""
    import torchawp

    from .helpers import tiny_config

    return torchawp.train(tiny_config(tmp_path_factory.mktemp("two") / "run", epochs=2))


@pytest.fixture(scope="session")
def extra_npz(tmp_path_factory):
    """RST's extra data: the digits training images a 300-image labelled subset leaves out,
    with their labels, as an .npz."""
    import numpy as np

    from torchawp.data import load_splits

    splits = load_splits("digits", val_size=200, train_subset=300)
    path = tmp_path_factory.mktemp("extra") / "extra.npz"
    images = (splits.unused.images * 255).round().to(torch.uint8)
    np.savez(path, images=images.permute(0, 2, 3, 1).numpy(), labels=splits.unused.labels.numpy())
    return path
