"""``torchawp backdoor``: inject a backdoor into a trained model's weights inside an
element-wise box (Garg et al.), and report what it did."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..backdoor import Trigger, backdoor_metrics, check_target, inject
from ..evaluate import predict
from ..checkpoint import atomic_write, resolve_checkpoint, save_weights
from ..errors import ConfigError
from ..rundir import exclusive_lock
from ..suite import load_for_eval
from .common import integer, log, number, option, parse

WEIGHTS = "backdoored.safetensors"
AUTHORS_N_CLEAN = 1280


def cmd_backdoor(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="torchawp backdoor", description="Inject a backdoor into a trained model by "
        "perturbing its weights inside |w - w0| <= eps (Garg et al., CIKM 2020), fitting a few "
        "training images (relabelled with the model's own predictions) and their triggered "
        "copies (labelled --target); eval mode throughout. Writes the weights and a report.")
    parser.add_argument("path", help="run directory or .safetensors checkpoint")
    parser.add_argument("--which", choices=["best", "last"], default="best")
    option(parser, "--budget", former=("--eps",), dest="eps", type=number(), default=0.005,
           help="half-width of the weight box: absolute (default 0.005), or with --relative a "
                "fraction of |w0| per element")
    parser.add_argument("--relative", action="store_true", help="|w - w0| <= budget * |w0|")
    parser.add_argument("--target", type=integer(0), default=1, help="class of triggered images")
    parser.add_argument("--trigger", default="patch:2",
                        help="patch:S (S x S square, bottom-right corner, white) or "
                             "pixels:N[:SEED] (N random pixel locations, white); default patch:2")
    parser.add_argument("--n-clean", type=integer(1), default=None,
                        help="training images fitted, each with its triggered copy (default "
                             f"{AUTHORS_N_CLEAN}, the authors' 10 batches of 128, or every "
                             "training image if there are fewer); the test set is never read "
                             "while injecting")
    parser.add_argument("--params", choices=["weights+biases", "weights", "all"],
                        default="weights+biases",
                        help="tensors that move (default: all outside normalisation layers)")
    parser.add_argument("--epochs", type=integer(0), default=10, help="passes over the images")
    parser.add_argument("--lr", type=number(), default=1e-3, help="Adam's learning rate")
    parser.add_argument("--batch-size", type=integer(1), default=128)
    parser.add_argument("--l2", type=number(strict=False), default=0.0,
                        help="weight of ||w - w0||^2")
    parser.add_argument("--seed", type=int, default=0,
                        help="which training images, and their order")
    option(parser, "--out-dir", former=("--out",), dest="out", default=None, metavar="DIR",
           help="directory to write (default: beside the checkpoint, named after the settings)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = parse(parser, argv)
    trigger = Trigger.parse(args.trigger)
    source = resolve_checkpoint(args.path, args.which)
    base = Path(args.path) if Path(args.path).is_dir() else source.parent
    out = Path(args.out) if args.out else base / (
        f"backdoor_{args.which}_{str(trigger).replace(':', '')}_t{args.target}_eps{args.eps:g}"
        + ("rel" if args.relative else ""))
    if (out / WEIGHTS).exists():
        raise ConfigError(f"{out} already holds a backdoored model; pass another --out or "
                          f"delete that directory")
    model, splits, _ = load_for_eval(args.path, args.which, args.device, args.data_dir)
    check_target(args.target, splits.info.num_classes, splits.info.name)
    n_train = len(splits.train)
    if args.n_clean is None:
        args.n_clean = min(AUTHORS_N_CLEAN, n_train)
    if args.n_clean > n_train:
        raise ConfigError(f"--n-clean {args.n_clean} exceeds the {n_train} training images")
    with exclusive_lock(out, "backdoor directory"):
        xtr, _ = splits.train.tensors(0, None)
        pick = torch.randperm(n_train, generator=torch.Generator().manual_seed(args.seed))
        x = xtr[pick[:args.n_clean]]
        xt, yt = splits.test.tensors(0, None)
        before = backdoor_metrics(model, xt, yt, trigger, args.target)
        reference = predict(model, xt)
        log(f"injecting: {args.n_clean} images + triggered copies, {args.epochs} epochs, "
            f"eps {args.eps:g}{' relative' if args.relative else ''}")
        start = time.perf_counter()
        fit = inject(model, x, trigger, args.target, args.eps, args.relative, args.params,
                     args.l2, args.lr, args.epochs, args.batch_size, args.seed)
        seconds = time.perf_counter() - start
        after = backdoor_metrics(model, xt, yt, trigger, args.target, reference)
        meta = dict(model.checkpoint_meta)
        for key in ("sha256", "format", "model_spec", "metrics"):  # the source's, not these
            meta.pop(key, None)
        settings = {"eps": args.eps, "relative": args.relative, "trigger": str(trigger),
                    "target": args.target, "n_clean": args.n_clean, "params": args.params,
                    "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                    "l2": args.l2, "seed": args.seed, "optimizer": "adam", "mode": "eval"}
        report = {"source": str(source), "source_sha256": model.checkpoint_meta.get("sha256"),
                  "dataset": splits.info.name, "settings": settings, "original": before,
                  "backdoored": after, "steps": fit["steps"], "final_loss": fit["final_loss"],
                  "weight_change": fit["weight_change"], "seconds": seconds}
        meta["backdoor"] = {k: report[k] for k in ("source", "source_sha256", "settings")}
        save_weights(out / WEIGHTS, model, meta)
        text = json.dumps(report, indent=2)
        atomic_write(out / "backdoor.json", lambda tmp: tmp.write_text(text))
        md = render(report)
        atomic_write(out / "backdoor.md", lambda tmp: tmp.write_text(md))
    print(md.split("\n", 2)[2].rstrip())
    print(f"weights: {out / WEIGHTS}; report: {out / 'backdoor.md'}, {out / 'backdoor.json'}")
    return 0


def render(report: dict) -> str:
    """The markdown report of one injection."""
    s, b, a, wc = report["settings"], report["original"], report["backdoored"], \
        report["weight_change"]
    box = f"|w - w0| <= {s['eps']:g}" + (" * |w0|" if s["relative"] else "")
    pct = wc["relative_percentiles"]
    lines = [
        f"# Weight-space backdoor: {report['source']}", "",
        f"{box} ({s['params']}), trigger {s['trigger']} -> class {s['target']}, "
        f"{s['n_clean']} training images + triggered copies, Adam lr {s['lr']:g}, "
        f"{report['steps']} steps, eval mode; {report['seconds']:.1f} s.", "",
        "| model | clean acc | trigger success | agreement with original |", "|---|---|---|---|",
        f"| original | {100 * b['clean_acc']:.2f} | {100 * b['success_rate']:.2f} | 100.00 |",
        f"| backdoored | {100 * a['clean_acc']:.2f} | {100 * a['success_rate']:.2f} | "
        f"{100 * a['agreement']:.2f} |", "",
        f"Test set of {report['dataset']}: {a['n']} images; trigger success counts the "
        f"{a['n_non_target']} whose true class is not {s['target']}.", "",
        f"Weight change: max |w - w0| {wc['max_abs']:.3g}; {100 * wc['changed_fraction']:.1f}% "
        f"of {wc['elements']} elements moved; |w - w0| / |w0| percentiles p50 {pct['p50']:.3g}, "
        f"p90 {pct['p90']:.3g}, p99 {pct['p99']:.3g}, max {pct['max']:.3g}.",
    ]
    return "\n".join(lines) + "\n"
