"""What each weight perturbation costs a training step, against the floor its passes set.

Every step goes through the same ``Trainer.train_step`` (PGD-10 crafting, the method's loss,
SGD) on the same model and batch; only ``trainer.perturbation`` changes. The steps alternate in
rounds so that drift in machine speed hits all alike, and each ratio is the median of the
per-round ratios to the AT step of the same round.

The floor: a perturbation cannot cost less than the passes it must make. An AT-10 step is 10
attack passes and one training pass (forward and backward each), about 11 passes; AWP, SAM,
ASAM and the practitioners' AWP add one ascent pass (12/11), RWP ten (21/11 = 1.91), random
noise none (it draws v). The floor printed is measured, not counted: one training pass is timed
at fixed adversarial inputs, and the floor is ``1 + ascent passes x pass / AT step``.

Extra memory: the peak of one step with the perturbation over an AT step's, each in a fresh
process (``benchmarks/memory.py``: PreActResNet-18, batch 32; CUDA's peak allocation, on a
CPU the peak resident set), in units of the model's weights. A copy of the model would be 1.0
or more (the authors' RWP keeps two proxies; the proxy-model AWP one).

    python benchmarks/perturbation_cost.py                     # small CNN on 28x28, 6 minutes
    python benchmarks/perturbation_cost.py --report-only       # re-render the committed JSON

Writes benchmarks/results/perturbation_cost.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch
from awp_overhead import synthetic_splits, timed, timed_train_pass
from common import paired
from memory import peak

from torchawp.config.recipes import load_recipe
from torchawp.perturbations import PERTURBATIONS
from torchawp.training.trainer import Trainer

RESULTS = Path(__file__).parent / "results" / "perturbation_cost.json"
# ascent passes each must make in a step (forward and backward of the ascent loss)
PASSES = {"awp": 1, "rwp": 10, "sam": 1, "asam": 1, "awp-practitioners": 1, "random-noise": 0}


def make_trainer(args, name: str) -> Trainer:
    cfg = load_recipe("digits")
    cfg.method, cfg.model, cfg.model_args = "at", args.model, {"batchnorm": True, "width": 16}
    cfg.perturbation.name, cfg.perturbation.threshold = name, 100.0  # RWP: every example
    cfg.attack.eps, cfg.attack.step_size, cfg.attack.steps = 0.1, 0.025, 10
    cfg.awp.gamma, cfg.awp.warmup_epochs = 0.01, 0
    cfg.data.batch_size, cfg.progress, cfg.device = args.batch_size, False, args.device
    cfg.out_dir = "/dev/null/unused"  # nothing is written
    return Trainer(cfg, splits=synthetic_splits(args.batch_size, 1, args.image_size))


def held(trainer: Trainer, x, y) -> float:
    """What the perturbation holds while applied (``v``), in units of the weights it touches:
    exact, from the tensors themselves."""
    wp, m = trainer.perturbation, trainer.method
    x_adv = m.craft(trainer.net, x, y, trainer.attack_gen)
    v = wp.perturb(wp.closure(m, x, x_adv, y))
    wp.restore()
    return (sum(t.numel() * t.element_size() for t in v)
            / sum(p.numel() * p.element_size() for p in wp.params))


def extra_memory(names, model: str = "preact_resnet18", batch_size: int = 32,
                 repeats: int = 3) -> dict:
    """Peak memory of a step over an AT step's, in units of the weights' bytes, per name: the
    median over ``repeats`` fresh processes each (a CPU's peak resident set moves by tens of
    MiB from one process to the next)."""
    def median_peak(name):
        return statistics.median(peak(name, model, batch_size, 2)["peak"] for _ in range(repeats))

    at, weights = median_peak("at"), peak("at", model, batch_size, 2)["weights"]
    return {name: (median_peak(name) - at) / weights for name in names}


def measure(args) -> dict:
    trainers = {name: make_trainer(args, name) for name in PERTURBATIONS}
    base = trainers["awp"]
    for t in trainers.values():  # one model: every trainer steps the same weights
        t.model.load_state_dict(base.model.state_dict())
    x, y = next(iter(base.train_loader))
    for t in trainers.values():
        timed(t, x, y, True, 1)  # warm-up every path
    timed(base, x, y, False, 1)
    at, one_pass, steps = [], [], {name: [] for name in trainers}
    for _ in range(args.rounds):
        at.append(timed(base, x, y, False, args.per_round))
        one_pass.append(timed_train_pass(base, x, y, args.per_round))
        for name, t in trainers.items():
            steps[name].append(timed(t, x, y, True, args.per_round))
    at_ms, pass_ms = statistics.median(at), statistics.median(one_pass)
    memory = extra_memory([*trainers, "proxy"])
    rows = {}
    for name in trainers:
        ratios = sorted(s / a for s, a in zip(steps[name], at))
        rows[name] = {"ratio": statistics.median(ratios), "low": ratios[0],
                      "high": ratios[-1], "passes": PASSES[name],
                      "floor": 1 + PASSES[name] * pass_ms / at_ms,
                      "extra_memory": memory[name], "held": held(trainers[name], x, y),
                      "paired": paired(steps[name], at, digits=3)}
    return {"setup": f"{args.model} (width 16, BatchNorm), 1x{args.image_size}x{args.image_size}, "
                     f"batch {args.batch_size}, AT with PGD-10, fp32, {base.device}, "
                     f"{torch.get_num_threads()} threads, {platform.processor() or 'cpu'}",
            "at_step_ms": 1e3 * at_ms, "training_pass_ms": 1e3 * pass_ms,
            "memory_setup": "preact_resnet18, 3x32x32, batch 32, PGD-2, the median of 3 fresh "
                            "processes each",
            "proxy_awp_memory": memory["proxy"],
            "rounds": args.rounds, "per_round": args.per_round, "rows": rows}


def render(data: dict) -> str:
    lines = [f"{data['setup']}; AT step {data['at_step_ms']:.1f} ms, one training pass "
             f"{data['training_pass_ms']:.1f} ms; medians of {data['rounds']} paired rounds.",
             "",
             "| perturbation | step / AT step (range) | ascent passes | floor | above the floor "
             "| held while applied (x its weights) | extra peak memory (x all weights) |",
             "|---|---|---|---|---|---|---|"]
    for name, r in data["rows"].items():
        lines.append(f"| {name} | {r['ratio']:.2f} ({r['low']:.2f}-{r['high']:.2f}) | "
                     f"{r['passes']} | {r['floor']:.2f} | "
                     f"{100 * (r['ratio'] / r['floor'] - 1):+.1f}% | {r['held']:.2f} | "
                     f"{r['extra_memory']:.2f} |")
    lines += ["", f"Held while applied: the bytes of `v` over those of the tensors it "
                  f"perturbs, exact. Extra peak memory: {data['memory_setup']}, over an AT "
                  f"step's; a CPU's resident set is coarse (freed memory is not always given "
                  f"back), the ascent's transient gradient counts here. The authors' "
                  f"proxy-model AWP for comparison: {data['proxy_awp_memory']:.2f} x weights."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--per-round", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(RESULTS), help="where the JSON goes")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    if not args.report_only:
        Path(args.out).write_text(json.dumps(measure(args), indent=1) + "\n")
    print(render(json.loads(Path(args.out).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
