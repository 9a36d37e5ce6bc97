"""``torchawp eval`` (the checkpoint suite) and ``torchawp pseudo-label``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..attacks import attack_names, autoattack_available
from ..checkpoint import resolve_checkpoint, same_weights
from ..errors import ConfigError
from ..evaluate import EVAL_SEED
from ..pseudo_label import pseudo_label_file
from ..report import format_table, write_report
from ..rundir import exclusive_lock
from ..suite import DEFAULT_ATTACKS, evaluate_checkpoint
from .common import log, parse


def cmd_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="torchawp eval", description="Robustness of a checkpoint: clean, FGSM, PGD-20/100, "
        "CW-inf, AutoAttack, per-example worst case, gap and gradient-masking checks.")
    parser.add_argument("path", help="run directory (best and last) or .safetensors checkpoint")
    parser.add_argument("--which", choices=["best", "last", "both"], default="both",
                        help="for a run directory: which checkpoint(s) (default both)")
    parser.add_argument("--attacks", nargs="+", default=None,
                        help=f"{attack_names()} (K: steps; default: "
                             f"{' '.join(DEFAULT_ATTACKS)}; torchawp list explains each)")
    parser.add_argument("--autoattack", action="store_true",
                        help="add standard AutoAttack (needs the autoattack extra; slow on CPU)")
    parser.add_argument("--n-examples", type=int, default=None, help="first N test images")
    parser.add_argument("--restarts", type=int, default=1, help="PGD/CW random restarts")
    parser.add_argument("--eps", type=float, default=None, help="default: the training eps")
    parser.add_argument("--norm", choices=["linf", "l2"], default=None)
    parser.add_argument("--seed", type=int, default=EVAL_SEED,
                        help=f"seed of the attacks' random starts (default {EVAL_SEED}, as in "
                             f"training's per-epoch evaluation)")
    parser.add_argument("--no-checks", action="store_true", help="skip the sanity checks")
    parser.add_argument("--out", default=None,
                        help="where eval.json / eval.md go (default: the run directory, or "
                             "beside the checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = parse(parser, argv)
    attacks = list(args.attacks or DEFAULT_ATTACKS)
    if args.autoattack and "autoattack" not in attacks:
        attacks.append("autoattack")
    if "autoattack" in attacks and not autoattack_available():
        raise ConfigError("AutoAttack needs the optional extra: pip install "
                          "'torchawp[autoattack]' (the pyautoattack package)")
    path = Path(args.path)
    whiches = ["best", "last"] if args.which == "both" else [args.which]
    if not path.is_dir():
        whiches = whiches[:1]
    out_dir = Path(args.out) if args.out else (path if path.is_dir() else path.parent)
    files = [resolve_checkpoint(path, w) for w in whiches]
    same = len(files) == 2 and same_weights(*files)  # the last epoch was the best
    evaluated = whiches[:1] if same else whiches
    with exclusive_lock(out_dir / "eval_state", "evaluation state"):
        results = [evaluate_checkpoint(
            path, which, attacks, args.n_examples, args.device, args.data_dir,
            restarts=args.restarts, eps=args.eps, norm=args.norm, seed=args.seed,
            checks=not args.no_checks, state_dir=out_dir / "eval_state" / which, log=log)
            for which in evaluated]
        if same:  # one evaluation serves both rows
            results.append(dict(results[0], which="last", checkpoint=str(files[1])))
        json_path, md_path = write_report(results, out_dir)
    first = results[0]
    tm = first["threat_model"]
    print(f"{args.path}: {first['dataset']} test set, {first['n']} images, {tm['norm']} eps "
          f"{tm['eps']:.4g}" + ("" if "autoattack" in attacks else
                                "; AutoAttack not run (add --autoattack)"))
    print(format_table(results))
    if same:
        print("best and last are the same weights: evaluated once")
    for r in results[:len(evaluated)]:
        for c in r["checks"]:
            print(f"  [{c['status']:>7}] {r['which']} {c['name']}: {c['detail']}")
    print(f"report: {md_path}, {json_path}")
    return 0




def cmd_pseudo_label(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="torchawp pseudo-label",
        description="Label unlabelled images with a trained (standard) model, for RST.")
    parser.add_argument("checkpoint", help="run directory or .safetensors checkpoint")
    parser.add_argument("--out", required=True, help="extra-data .npz to write")
    parser.add_argument("--images", default=None,
                        help=".npz with an 'images' array (default: the training images the "
                             "checkpoint's run left out with data.train_subset)")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="keep only predictions at least this confident")
    parser.add_argument("--device", default="auto")
    args = parse(parser, argv)
    r = pseudo_label_file(args.checkpoint, args.out, args.images, args.min_confidence,
                          args.device)
    line = f"labelled {r['labelled']} of {r['total']} images -> {r['out']}"
    if "agreement" in r:
        line += f"; agreement with the hidden true labels {100 * r['agreement']:.1f}%"
    print(line)
    return 0
