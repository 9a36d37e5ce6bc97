"""Small configs for fast end-to-end runs on digits, and small models trained normally."""

import dataclasses
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from torchawp.data import BatchLoader
from torchawp.models import create_model
from torchawp.config.recipes import load_recipe

THREADS = int(os.environ.get("TORCHAWP_TEST_THREADS", 2))  # conftest's choice for this machine


def tiny_config(out_dir, **overrides):
    cfg = load_recipe("digits")
    cfg.model_args = {"width": 8, "batchnorm": True, "hidden": 32}
    cfg.epochs = 2
    cfg.progress = False
    cfg.threads = THREADS  # bit-reproducibility holds for a fixed thread count
    cfg.out_dir = str(out_dir)
    cfg.attack.steps = 3
    cfg.attack.step_size = 0.08
    cfg.eval.steps = 3
    cfg.eval.train_examples = 100
    cfg.eval.max_examples = 150
    cfg.eval.curve_every = 1
    cfg.awp.warmup_epochs = 0
    cfg.optim.milestones = [1]
    cfg.data.train_subset = 400
    return dataclasses.replace(cfg, **overrides)


def train_plainly(splits, epochs, batch_size=64, weight_decay=0.0, **model_args):
    """A small CNN trained normally (no attack) with SGD; eval mode."""
    torch.manual_seed(0)
    info = splits.info
    model = create_model("small_cnn", 10, 1, 8, info.mean, info.std, **model_args)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=weight_decay)
    loader = BatchLoader(splits.train, batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run directory, for a test that damages it."""
    shutil.copytree(src, dst)
    return dst


def flip_bytes(path: Path, start_fraction: float = 0.6, count: int = 1000) -> None:
    """XOR ``count`` bytes in the middle of the file (inside the tensor data), same length."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * start_fraction)
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
