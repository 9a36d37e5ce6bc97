"""Small configs for fast end-to-end runs on digits."""

import dataclasses

from torchawp.recipes import load_recipe


def tiny_config(out_dir, **overrides):
    cfg = load_recipe("digits")
    cfg.model_args = {"width": 8, "batchnorm": True, "hidden": 32}
    cfg.epochs = 2
    cfg.progress = False
    cfg.threads = 2  # bit-reproducibility holds for a fixed thread count
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
