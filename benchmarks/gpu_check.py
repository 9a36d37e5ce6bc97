"""GPU check, one script, under 8 minutes on one CUDA GPU; writes one JSON.

1. the CUDA-only tests (fp16 + GradScaler, bf16, channels_last, compile against fp32; the fp16
   AWP ascent through the GradScaler; an image store's batches through the loader's prefetch
   thread and pinned memory equal to memory's, EMA's averaged model on the GPU, a whole run
   from a store with EMA);
2. step-time ratios measured side by side (paired rounds, median and range), PreActResNet-18,
   batch 128, PGD-10, bf16 + channels_last: AT-AWP / AT, TRADES-AWP / TRADES, and torchawp's
   AWP against the authors' proxy-model AWP (``common.ProxyAWP``) for both;
3. peak GPU memory of an AT, a torchawp AT-AWP and a proxy-model AT-AWP step; then torchawp
   against the proxy on every model (small CNN b128, PreActResNet-18 b64, WRN-34-10 b32; fp32;
   AT-AWP and TRADES-AWP): the whole step, the AWP part alone, and peak memory;
4. one AT-AWP training epoch on CIFAR-10-shaped synthetic data (50,000 images, crop + flip on
   the GPU) in fp32, bf16 + channels_last, and bf16 + channels_last + torch.compile.

    python benchmarks/gpu_check.py                         # on the GPU
    python benchmarks/gpu_check.py --device cpu --tiny     # the CPU-side dry run (CI)

The JSON is rewritten after every section, so an interrupted run still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ProxyAWP, paired, timed_awp_part

from torchawp.config.recipes import load_recipe
from torchawp.data import ArrayDataset, DatasetInfo, Splits
from torchawp.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def synthetic_cifar(n: int, size: int) -> Splits:
    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (n,), generator=g), 10)
    empty = data.subset(torch.arange(0))
    info = DatasetInfo("synthetic-cifar10", 10, 3, size, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26],
                       augment="crop-flip")
    return Splits(data, empty, empty, info)


def make_trainer(args, method: str, precision: str, channels_last: bool, compile_: bool,
                 splits: Splits) -> Trainer:
    cfg = load_recipe("digits")  # then every field that matters is set here
    cfg.method, cfg.model, cfg.model_args = method, args.model, {}
    cfg.device, cfg.precision = args.device, precision
    cfg.channels_last, cfg.compile, cfg.progress = channels_last, compile_, False
    cfg.attack.eps, cfg.attack.step_size, cfg.attack.steps = 8 / 255, 2 / 255, 10
    cfg.awp.gamma, cfg.awp.warmup_epochs = (0.01, 0) if method.startswith("at") else (0.005, 0)
    cfg.data.batch_size = args.batch_size
    cfg.out_dir = str(ROOT / "runs" / "gpu_check_unused")  # nothing is written
    return Trainer(cfg, splits=splits)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def batch_of(trainer: Trainer):
    x, y = next(iter(trainer.train_loader))
    return x, y


def timed_steps(trainer: Trainer, x, y, perturb: bool, n: int) -> float:
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(n):
        trainer.train_step(x, y, perturb)
    sync(trainer.device)
    return (time.perf_counter() - start) / n


def ratio_section(args, splits) -> dict:
    """Paired rounds: AWP step vs plain step, and torchawp AWP vs the proxy-model AWP."""
    out = {}
    for method in ("at-awp", "trades-awp"):
        t = make_trainer(args, method, args.fast_precision, True, False, splits)
        x, y = batch_of(t)
        ours = t.perturbation
        proxy = ProxyAWP(t.net, gamma=ours.gamma)
        for awp, on in ((ours, True), (ours, False), (proxy, True)):
            t.perturbation = awp
            timed_steps(t, x, y, on, 2)  # warm
        plain, awp_steps, proxy_steps = [], [], []
        for _ in range(args.rounds):
            t.perturbation = ours
            awp_steps.append(timed_steps(t, x, y, True, args.per_round))
            plain.append(timed_steps(t, x, y, False, args.per_round))
            t.perturbation = proxy
            proxy_steps.append(timed_steps(t, x, y, True, args.per_round))
        base = method[:-4]
        out[method] = {
            "step_seconds": {base: min(plain), method: min(awp_steps),
                             f"{method} (authors' proxy)": min(proxy_steps)},
            f"{method} / {base}": paired(awp_steps, plain),
            f"proxy {method} / torchawp {method}": paired(proxy_steps, awp_steps),
        }
        print(f"  {method}: {method}/{base} = {out[method][f'{method} / {base}']}; proxy/ours "
              f"= {out[method][f'proxy {method} / torchawp {method}']}", flush=True)
    return out


def memory_section(args, splits) -> dict:
    if torch.device(args.device).type != "cuda":
        return {"skipped": "not on CUDA"}
    out = peak_memory(make_trainer(args, "at-awp", args.fast_precision, True, False, splits))
    print(f"  peak MiB: {out}", flush=True)
    return out


def peak_memory(t: Trainer) -> dict:
    """Peak CUDA memory (MiB) of a plain step, a torchawp AWP step and a proxy-model AWP step."""
    out = {}
    x, y = batch_of(t)
    ours = t.perturbation
    proxy = ProxyAWP(t.net, gamma=ours.gamma)
    method = t.cfg.method
    for name, awp, on in ((method[:-4], ours, False), (method, ours, True),
                          (f"{method} (authors' proxy)", proxy, True)):
        t.perturbation = awp
        timed_steps(t, x, y, on, 1)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        timed_steps(t, x, y, on, 2)
        out[name] = torch.cuda.max_memory_allocated() / 2**20
    t.perturbation = ours
    base = method[:-4]
    out = {k: round(v, 1) for k, v in out.items()}
    out[f"extra over {base}, MiB"] = {k: round(v - out[base], 1) for k, v in out.items()
                                      if k != base}
    out["weights, MiB"] = round(sum(p.numel() * 4 for p in t.model.parameters()) / 2**20, 1)
    return out


def proxy_section(args, splits) -> dict:
    """torchawp's AWP against the proxy-model AWP on every model, fp32, paired rounds: the whole
    step, the AWP part alone (ascent, add v, subtract v at fixed x'), and peak memory."""
    out = {}
    models = [("small_cnn", 64)] if args.tiny else [
        ("small_cnn", 128), ("preact_resnet18", 64), ("wrn34_10", 32)]
    for model, batch_size in models:
        for method in ("at-awp", "trades-awp"):
            t = make_trainer(argparse.Namespace(**{**vars(args), "model": model,
                                                   "batch_size": batch_size}),
                             method, "fp32", False, False, splits)
            x, y = batch_of(t)
            ours = t.perturbation
            proxy = ProxyAWP(t.net, gamma=ours.gamma)
            steps, parts = {ours: [], proxy: []}, {ours: [], proxy: []}
            n = min(args.per_round, 3)  # the whole section within a minute or two on a GPU
            for awp in (ours, proxy):  # warm-up
                t.perturbation = awp
                timed_steps(t, x, y, True, 2)
                timed_awp_part(t, awp, x, y, 2)
            for _ in range(args.rounds):
                for awp in (ours, proxy):
                    t.perturbation = awp
                    steps[awp].append(timed_steps(t, x, y, True, n))
                    parts[awp].append(timed_awp_part(t, awp, x, y, n))
            t.perturbation = ours
            row = {"step_seconds": {"torchawp": min(steps[ours]), "proxy": min(steps[proxy])},
                   "awp_part_seconds": {"torchawp": min(parts[ours]), "proxy": min(parts[proxy])},
                   "proxy step / torchawp step": paired(steps[proxy], steps[ours]),
                   "proxy AWP part / torchawp AWP part": paired(parts[proxy], parts[ours])}
            if t.device.type == "cuda":
                row["peak_memory"] = peak_memory(t)
            out[f"{model} b{batch_size} {method}"] = row
            print(f"  {model} b{batch_size} {method}: proxy/ours step "
                  f"{row['proxy step / torchawp step']}; AWP part "
                  f"{row['proxy AWP part / torchawp AWP part']}", flush=True)
    return out


def epoch_section(args, splits, out: dict, save) -> dict:
    """Fills ``out`` variant by variant, saving after each (compilation can take minutes)."""
    variants = [("fp32", "fp32", False, False), (f"{args.fast_precision} + channels_last",
                                                  args.fast_precision, True, False)]
    if not args.no_compile:
        variants.append((f"{args.fast_precision} + channels_last + compile",
                         args.fast_precision, True, True))
    for name, precision, channels_last, compile_ in variants:
        t = make_trainer(args, "at-awp", precision, channels_last, compile_, splits)
        x, y = batch_of(t)
        start = time.perf_counter()
        timed_steps(t, x, y, True, 3)  # warm-up (and compilation)
        warm = time.perf_counter() - start
        sync(t.device)
        start = time.perf_counter()
        row = t.train_epoch(0)
        sync(t.device)
        seconds = time.perf_counter() - start
        out[name] = {"epoch_seconds": round(seconds, 2), "images": len(splits.train),
                     "images_per_second": round(len(splits.train) / seconds, 1),
                     "steps": t.steps_per_epoch, "warmup_seconds": round(warm, 1),
                     "train_loss": row["train_loss"]}
        print(f"  AT-AWP epoch, {name}: {seconds:.1f} s ({len(splits.train) / seconds:.0f} "
              f"images/s; warm-up {warm:.1f} s)", flush=True)
        save()
    return out


def tests_section() -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "tests/test_cuda.py", "tests/test_speed_switches.py"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    print(f"  tests: {summary}", flush=True)
    return {"returncode": proc.returncode, "summary": summary,
            "failures": [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true",
                   help="small CNN on 256 16x16 images: checks the script, not the GPU")
    p.add_argument("--out", default=None, help="the JSON (default gpu_check.json here; with "
                   "--tiny, a file in the temporary folder: a dry run leaves nothing behind)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=10)
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args()
    tiny = args.tiny
    args.model = "small_cnn" if tiny else "preact_resnet18"
    args.batch_size = 64 if tiny else 128
    args.fast_precision = "bf16" if torch.device(args.device).type == "cuda" else "fp32"
    if tiny:
        args.rounds, args.per_round = min(args.rounds, 2), 1
    splits = synthetic_cifar(256, 16) if tiny else synthetic_cifar(50_000, 32)
    report = {"device": (torch.cuda.get_device_name() if args.device.startswith("cuda")
                         else "cpu"),
              "torch": torch.__version__, "cuda": torch.version.cuda,
              "tf32_convolutions": torch.backends.cudnn.allow_tf32,
              "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
              "model": args.model, "batch_size": args.batch_size, "pgd_steps": 10}
    out = Path(args.out or (Path(tempfile.gettempdir()) / "gpu_check_tiny.json" if tiny
                            else "gpu_check.json"))
    start = time.perf_counter()

    def save():
        report["seconds"] = round(time.perf_counter() - start, 1)
        out.write_text(json.dumps(report, indent=2))

    report["epochs"] = {}
    sections = [("tests", lambda: tests_section() if not args.skip_tests else {"skipped": True}),
                ("ratios", lambda: ratio_section(args, splits)),
                ("peak_memory", lambda: memory_section(args, splits)),
                ("proxy_every_model", lambda: proxy_section(args, splits)),
                ("epochs", lambda: epoch_section(args, splits, report["epochs"], save))]
    for name, run in sections:
        print(f"{name} ...", flush=True)
        report[name] = run()
        save()
    print(f"wrote {out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
