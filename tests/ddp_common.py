"""What the DDP test and its torchrun workers share."""

import torch

from .helpers import tiny_config

STEPS = 3


def ddp_config(out_dir, **overrides):
    cfg = tiny_config(out_dir, **overrides)
    cfg.model_args = {"width": 8, "batchnorm": False, "hidden": 32}  # BN statistics are per rank
    cfg.data.batch_size = 64
    cfg.device = "cpu"
    cfg.threads = 1
    return cfg


def global_batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
