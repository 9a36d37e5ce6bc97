"""AT-AWP step time / AT step time, measured side by side in one process.

Both steps run through the same Trainer.train_step (PGD-10 crafting, the method's loss, SGD),
on the same model and batch; the AWP step adds the ascent pass, perturb and restore. Steps
alternate in blocks so drift in machine speed hits both alike; the median of the per-round
ratios is printed with their range, and with the floor the ratio could reach: AWP's ascent is a
forward and a parameter backward, about one training pass, so the ratio cannot go below
1 + (training pass / AT step).

    python benchmarks/awp_overhead.py                                  # small CNN, 8x8 digits
    python benchmarks/awp_overhead.py --model small_cnn --image-size 28
    python benchmarks/awp_overhead.py --model preact_resnet18 --image-size 32 --precision bf16 \
        --channels-last --method trades-awp
    python benchmarks/awp_overhead.py --proxy ...    # also the authors' proxy-model AWP step

With ``--proxy`` every round also times the AWP step of the authors' code (a proxy copy of the
model, ``common.ProxyAWP``) in the same trainer, and prints proxy step / torchawp AWP step; and
the AWP part alone (ascent, add v, subtract v, at fixed adversarial inputs: where the two differ),
proxy / torchawp, free of the attack's share of the noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import ProxyAWP, paired, timed_awp_part

from torchawp.config.recipes import load_recipe
from torchawp.data import ArrayDataset, DatasetInfo, Splits
from torchawp.training.trainer import Trainer


def synthetic_splits(n: int, channels: int, size: int, classes: int = 10) -> Splits:
    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8,
                                      generator=g),
                        torch.randint(0, classes, (n,), generator=g), classes)
    info = DatasetInfo("synthetic", classes, channels, size, [0.5] * channels, [0.25] * channels)
    return Splits(data, data.subset(torch.arange(0)), data.subset(torch.arange(0)), info)


def make_trainer(args) -> Trainer:
    cfg = load_recipe("digits")
    cfg.method, cfg.model, cfg.model_args = args.method, args.model, {}
    cfg.precision, cfg.channels_last, cfg.device = args.precision, args.channels_last, args.device
    cfg.attack.eps, cfg.attack.step_size, cfg.attack.steps = 8 / 255, 2 / 255, args.steps
    cfg.awp.gamma, cfg.awp.warmup_epochs, cfg.awp.ascent = 0.01, 0, args.ascent
    cfg.data.batch_size, cfg.progress = args.batch_size, False
    cfg.out_dir = "/dev/null/unused"  # nothing is written
    return Trainer(cfg, splits=synthetic_splits(args.batch_size, args.channels, args.image_size))


def timed(trainer: Trainer, x, y, perturb: bool, n: int) -> float:
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(n):
        loss, _ = trainer.train_step(x, y, perturb)
    loss.item()
    sync()
    return (time.perf_counter() - start) / n


def timed_train_pass(trainer: Trainer, x, y, n: int) -> float:
    """The AT step without its attack (fixed adversarial inputs): one training forward,
    backward and optimizer step, what the AWP ascent pass is compared with."""
    attack = trainer.method.attack
    x_adv = attack(trainer.net, x, y, trainer.attack_gen)
    trainer.method.attack = lambda model, x, y, generator=None: x_adv
    try:
        return timed(trainer, x, y, False, n)
    finally:
        trainer.method.attack = attack


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--method", default="at-awp", help="X-awp; the baseline is X")
    p.add_argument("--image-size", type=int, default=8)
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="PGD steps")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--per-round", type=int, default=5)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--ascent", default="exact", choices=["exact", "last-pgd-step"],
                   help="torchawp's AWP ascent (awp.ascent; at-awp only for last-pgd-step)")
    p.add_argument("--proxy", action="store_true",
                   help="also time the authors' proxy-model AWP step, in the same rounds")
    args = p.parse_args()
    if args.channels is None:
        args.channels = 1 if args.model == "small_cnn" else 3
    trainer = make_trainer(args)
    x, y = next(iter(trainer.train_loader))
    ours = trainer.perturbation
    proxy = ProxyAWP(trainer.net, gamma=ours.gamma) if args.proxy else None
    timed(trainer, x, y, True, 2)  # warm-up every path
    timed(trainer, x, y, False, 2)
    base, awp, one_pass, proxied, part, proxy_part = [], [], [], [], [], []
    for _ in range(args.rounds):
        base.append(timed(trainer, x, y, False, args.per_round))
        awp.append(timed(trainer, x, y, True, args.per_round))
        one_pass.append(timed_train_pass(trainer, x, y, args.per_round))
        if proxy is not None:
            trainer.perturbation = proxy
            if len(proxied) == 0:
                timed(trainer, x, y, True, 1)  # warm-up
            proxied.append(timed(trainer, x, y, True, args.per_round))
            trainer.perturbation = ours
            part.append(timed_awp_part(trainer, ours, x, y, args.per_round))
            proxy_part.append(timed_awp_part(trainer, proxy, x, y, args.per_round))
    b, a, t = (statistics.median(v) for v in (base, awp, one_pass))
    name = args.method.removesuffix("-awp")
    print(f"{args.model} {args.channels}x{args.image_size}x{args.image_size}, batch "
          f"{args.batch_size}, AWP ascent {args.ascent}, PGD-{args.steps}, {args.precision}"
          f"{', channels_last' if args.channels_last else ''}, {trainer.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{name} step {b * 1e3:.1f} ms, {name}-awp step {a * 1e3:.1f} ms, "
          f"ratio {name}-awp / {name} = {paired(awp, base, digits=3)}")
    print(f"AWP's extra time per step = {(a - b) / t:.2f} x one training pass ({t * 1e3:.1f} ms); "
          f"floor for the ratio (AWP's ascent costing one training pass) = {1 + t / b:.3f}")
    if proxied:
        print(f"authors' proxy-model {name}-awp step {statistics.median(proxied) * 1e3:.1f} ms, "
              f"ratio proxy / torchawp = {paired(proxied, awp, digits=3)}")
        ours_ms, proxy_ms = (statistics.median(v) * 1e3 for v in (part, proxy_part))
        print(f"the AWP part alone (ascent, add v, subtract v; fixed x'): torchawp "
              f"{ours_ms:.1f} ms, proxy {proxy_ms:.1f} ms, ratio proxy / torchawp = "
              f"{paired(proxy_part, part, digits=3)}")


if __name__ == "__main__":
    main()
