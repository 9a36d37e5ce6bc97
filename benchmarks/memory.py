"""Peak memory of one AT step, one torchawp AT-AWP step and one proxy-model AWP step (the
authors' and ART's approach), each measured in a fresh process on the same model and batch;
``--child NAME`` measures any weight perturbation (``benchmarks/perturbation_cost.py`` asks
for each).

On CUDA it reads torch.cuda.max_memory_allocated; on CPU the process's peak resident set size.
The printed numbers are the increase over the AT step, next to the size of the model's weights.

    python benchmarks/memory.py                      # PreActResNet-18, 32x32, batch 32
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F
from common import ProxyAWP


def child(variant: str, args) -> dict:
    from torchawp.attacks import PGD
    from torchawp.models import create_model
    from torchawp.perturbations import PERTURBATIONS

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = create_model(args.model, 10, 3, 32).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    pgd = PGD(steps=args.steps, bn_mode="train")
    awp = (ProxyAWP(model, gamma=0.01) if variant == "proxy" else
           PERTURBATIONS[variant](model) if variant in PERTURBATIONS else None)
    reduction = "none" if variant == "rwp" else "mean"  # RWP climbs per-example losses

    def step():
        x_adv = pgd(model, x, y)
        perturbed = (awp.perturbed(lambda m: F.cross_entropy(m(x_adv), y, reduction=reduction))
                     if awp is not None else contextlib.nullcontext())
        with perturbed:
            model.train()
            loss = F.cross_entropy(model(x_adv), y)
            opt.zero_grad()
            loss.backward()
            if awp is not None:
                awp.before_step()
            opt.step()

    step()  # allocator and optimizer state warm
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"peak": peak, "weights": weights, "device": str(device)}


def peak(variant: str, model: str, batch_size: int, steps: int) -> dict:
    """:func:`child`'s numbers for ``variant`` (at, proxy or a perturbation's name), from a
    fresh process."""
    cmd = [sys.executable, __file__, "--child", variant, "--model", model,
           "--batch-size", str(batch_size), "--steps", str(steps)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                     check=True).stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="preact_resnet18")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="PGD steps (memory does not grow)")
    p.add_argument("--child", default=None)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    out = {variant: peak(variant, args.model, args.batch_size, args.steps)
           for variant in ("at", "awp", "proxy")}
    mb = lambda b: b / 2**20  # noqa: E731
    base = out["at"]["peak"]
    print(f"{args.model}, batch {args.batch_size}, {out['at']['device']}; weights "
          f"{mb(out['at']['weights']):.0f} MiB; peak over AT: torchawp AWP "
          f"+{mb(out['awp']['peak'] - base):.0f} MiB, proxy-model AWP "
          f"+{mb(out['proxy']['peak'] - base):.0f} MiB")


if __name__ == "__main__":
    main()
