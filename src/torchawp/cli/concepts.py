"""``torchawp concepts``: concept activation vectors of a trained model, TCAV (Kim et al.)
beside Soni et al.'s A-CAV and Gram-Schmidt random sets, with their spread over random sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..checkpoint import atomic_write
from ..concepts import Variant, concept_study, render
from ..rundir import exclusive_lock
from ..suite import load_for_eval
from .common import integer, log, number, parse


def cmd_concepts(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="torchawp concepts", description="Concept activation vectors at one layer (TCAV, "
        "Kim et al. 2018, through captum): the TCAV score of a class's test images and the "
        "concept classifier's recall of held-out concept images, over --seeds random sets; "
        "with --acav also Soni et al.'s adversarially trained classifier (A-CAV), with "
        "--gram-schmidt their Gram-Schmidt random sets and averaged classifiers.")
    parser.add_argument("path", help="run directory or .safetensors checkpoint")
    parser.add_argument("--which", choices=["best", "last"], default="best")
    parser.add_argument("--layer", required=True,
                        help="a module name of the model, e.g. net.features.7")
    parser.add_argument("--concept", required=True,
                        help="a folder of concept images, or a rule on the training images: "
                             "classes:K1,K2 or mask:REGION:SHARE (images with at least SHARE "
                             "of their ink in REGION: top, bottom, left, right, centre)")
    parser.add_argument("--class", dest="target", type=integer(0), required=True,
                        help="the class whose test images are scored")
    parser.add_argument("--acav", action="store_true", help="A-CAV beside TCAV's plain CAV")
    parser.add_argument("--gram-schmidt", action="store_true",
                        help="also Gram-Schmidt random sets with --average classifiers")
    parser.add_argument("--acav-margin", type=number(), default=0.1,
                        help="A-CAV's L2 margin in activation space, as a fraction of the mean "
                             "activation norm (default 0.1)")
    parser.add_argument("--average", type=integer(1), default=5,
                        help="classifiers averaged with --gram-schmidt (default 5)")
    parser.add_argument("--seeds", type=integer(2), default=20, help="random sets (default 20)")
    parser.add_argument("--n-concept", type=integer(3), default=100)
    parser.add_argument("--n-random", type=integer(3), default=100)
    parser.add_argument("--n-class", type=integer(1), default=200)
    parser.add_argument("--out-dir", default=None, metavar="DIR",
                        help="where concepts.json / concepts.md go (default: in the run "
                             "directory, named after the layer, concept and class)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = parse(parser, argv)
    variants = [Variant("cav")]
    if args.acav:
        variants.append(Variant("a-cav", eps=args.acav_margin))
    if args.gram_schmidt:
        variants.append(Variant("cav+gs", gram_schmidt=True, average=args.average))
        if args.acav:
            variants.append(Variant("a-cav+gs", eps=args.acav_margin, gram_schmidt=True,
                                    average=args.average))
    model, splits, _ = load_for_eval(args.path, args.which, args.device, args.data_dir)
    path = Path(args.path)
    tag = "".join(c if c.isalnum() else "_" for c in Path(args.concept).name)
    out = Path(args.out_dir) if args.out_dir else (path if path.is_dir() else path.parent) / (
        f"concepts_{args.which}_{args.layer}_{tag}_c{args.target}")
    study = concept_study(model, splits, args.layer, args.concept, args.target, variants,
                          args.seeds, args.n_concept, args.n_random, args.n_class, progress=log)
    study["source"] = {"path": str(path), "which": args.which,
                       "sha256": model.checkpoint_meta.get("sha256")}
    text = render(study)
    with exclusive_lock(out, "concepts directory"):
        atomic_write(out / "concepts.json",
                     lambda tmp: tmp.write_text(json.dumps(study, indent=2)))
        atomic_write(out / "concepts.md", lambda tmp: tmp.write_text(text))
    print(text.rstrip())
    print(f"report: {out / 'concepts.md'}, {out / 'concepts.json'}")
    return 0
