"""What a weight perturbation costs inside the trainers people use: the Hugging Face Trainer
on a small randomly initialised BERT, and Lightning on the small CNN, each step with AWP (and
the practitioners' AWP, SAM) against the same trainer's plain step, side by side in one
process; and the extra peak memory of a step in units of the perturbed weights.

The floor is one more forward and backward (the ascent) per step: 2x a step that is all
forward and backward, less where the optimizer and the trainer's own work take a share. The
goal is a step at most 2.05x the plain one and at most one copy of the perturbed weights.

    python benchmarks/trainer_cost.py                 # about 6 minutes on 2 cores
    python benchmarks/trainer_cost.py --report-only   # re-render the committed JSON

Writes benchmarks/results/trainer_cost.json. Needs the hf and lightning extras.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "trainer_cost.json"
VARIANTS = {"plain": None, "awp": "AWP", "awp-practitioners": "PractitionersAWP", "sam": "SAM"}


def make(variant: str):
    import torchawp

    name = VARIANTS[variant]
    return None if name is None else (lambda m: getattr(torchawp, name)(m))


def bert(hidden: int, layers: int):
    import transformers

    config = transformers.BertConfig(vocab_size=1000, hidden_size=hidden,
                                     num_hidden_layers=layers, num_attention_heads=4,
                                     intermediate_size=4 * hidden, max_position_embeddings=64,
                                     num_labels=3)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int, length: int = 64):
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 1000, (n, length), generator=g)
        self.labels = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def hf_trainer(variant: str, steps: int, hidden: int = 128, layers: int = 2, batch: int = 16):
    import transformers

    from torchawp.integrations.hf import PerturbedTrainer

    args = transformers.TrainingArguments(
        output_dir="/tmp/torchawp_trainer_cost", per_device_train_batch_size=batch,
        max_steps=steps, report_to=[], save_strategy="no", logging_strategy="no",
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    return PerturbedTrainer(model=bert(hidden, layers), args=args,
                            train_dataset=Rows(steps * batch), perturbation=make(variant))


class StepTimer:
    """Seconds of every optimizer step, from the Trainer's or Lightning's own hooks."""

    def __init__(self):
        self.seconds, self._start = [], None

    def start(self, *args, **kwargs):
        self._start = time.perf_counter()

    def stop(self, *args, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def hf_step_seconds(variant: str, steps: int) -> float:
    import transformers

    timer = StepTimer()
    callback = type("Timer", (transformers.TrainerCallback,),
                    {"on_step_begin": lambda self, *a, **k: timer.start(),
                     "on_step_end": lambda self, *a, **k: timer.stop()})()
    trainer = hf_trainer(variant, steps)
    trainer.add_callback(callback)
    trainer.train()
    return statistics.median(timer.seconds[2:])  # the first steps pay one-time costs


def lightning_step_seconds(variant: str, steps: int) -> float:
    import lightning.pytorch as L
    import torch.nn.functional as F

    from torchawp.integrations.lightning import WeightPerturbationCallback
    from torchawp.models import create_model

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = create_model("small_cnn", 10, 1, 28, [0.3], [0.35], width=16,
                                    batchnorm=True)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    timer = StepTimer()
    callback = type("Timer", (L.Callback,), {
        "on_train_batch_start": lambda self, *a, **k: timer.start(),
        "on_train_batch_end": lambda self, *a, **k: timer.stop()})()
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(steps * 128, 1, 28, 28, generator=g),
                                          torch.randint(0, 10, (steps * 128,), generator=g))
    callbacks = [callback] + ([WeightPerturbationCallback(make(variant))]
                              if VARIANTS[variant] else [])
    L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
              devices=1, callbacks=callbacks).fit(
        Module(), torch.utils.data.DataLoader(data, batch_size=128))
    return statistics.median(timer.seconds[2:])


def child(variant: str) -> dict:
    """Peak resident memory of a few Trainer steps on a larger BERT (6 layers, hidden 512),
    in this fresh process; and the bytes of the tensors the perturbation touches."""
    trainer = hf_trainer(variant, 4, hidden=512, layers=6, batch=8)
    held = []
    if trainer.perturbation is not None:  # the bytes of v, each time one is added
        wp, perturb = trainer.perturbation, trainer.perturbation.perturb
        wp.perturb = lambda *a, **k: held.append(
            sum(t.numel() * t.element_size() for t in perturb(*a, **k)))
    trainer.train()
    wp = trainer.perturbation
    touched = sum(p.numel() * p.element_size() for p in (wp.params if wp is not None else []))
    return {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "touched": touched, "held": max(held) / touched if held else 0.0}


def peak(variant: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", variant], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def measure(rounds: int, steps: int) -> dict:
    timings = {kind: {v: [] for v in VARIANTS} for kind in ("hf", "lightning")}
    for _ in range(rounds):  # every variant once a round: drift hits all alike
        for v in VARIANTS:
            timings["hf"][v].append(hf_step_seconds(v, steps))
            timings["lightning"][v].append(lightning_step_seconds(v, steps))
    plain = statistics.median(peak("plain")["peak"] for _ in range(3))
    memory = {}
    for v in (v for v, name in VARIANTS.items() if name):
        runs = [peak(v) for _ in range(3)]
        memory[v] = {"peak": (statistics.median(r["peak"] for r in runs) - plain)
                     / runs[0]["touched"], "held": runs[0]["held"]}
    rows = {}
    for kind, per in timings.items():
        rows[kind] = {}
        for v in VARIANTS:
            if VARIANTS[v] is None:
                continue
            ratios = sorted(a / b for a, b in zip(per[v], per["plain"]))
            rows[kind][v] = {"ratio": statistics.median(ratios), "low": ratios[0],
                             "high": ratios[-1],
                             "plain_ms": 1e3 * statistics.median(per["plain"])}
    return {"setup": {"hf": "BertForSequenceClassification, 2 layers, hidden 128, 64 tokens, "
                            "batch 16, AdamW",
                      "lightning": "small CNN (width 16, BatchNorm), 1x28x28, batch 128, SGD",
                      "memory": "BERT with 6 layers, hidden 512, batch 8; the median peak "
                                "resident set of 3 fresh processes each"},
            "threads": torch.get_num_threads(), "rounds": rounds, "steps": steps,
            "rows": rows, "memory": memory}


def render(data: dict) -> str:
    lines = ["| trainer | perturbation | step / plain step (range) | plain step |",
             "|---|---|---|---|"]
    for kind, rows in data["rows"].items():
        name = {"hf": "Hugging Face Trainer", "lightning": "Lightning"}[kind]
        for v, r in rows.items():
            lines.append(f"| {name} | {v} | {r['ratio']:.2f} ({r['low']:.2f}-{r['high']:.2f}) "
                         f"| {r['plain_ms']:.1f} ms |")
    held = ", ".join(f"{v} {m['held']:.2f}" for v, m in data["memory"].items())
    peak = ", ".join(f"{v} {m['peak']:.2f}" for v, m in data["memory"].items())
    lines += ["", f"Setups: the Trainer, {data['setup']['hf']}; Lightning, "
                  f"{data['setup']['lightning']}; CPU, {data['threads']} threads, medians of "
                  f"{data['rounds']} rounds of {data['steps']} steps. Memory, in units of the "
                  f"weights the perturbation touches ({data['setup']['memory']}): held while "
                  f"applied (`v`, exact) {held}; extra peak resident memory of a step (coarse: "
                  f"the ascent's transient gradient and what the allocator keeps) {peak}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--child", default=None)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    if not args.report_only:
        RESULTS.write_text(json.dumps(measure(args.rounds, args.steps), indent=1) + "\n")
    print(render(json.loads(RESULTS.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
