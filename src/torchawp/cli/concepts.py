"""``torchawp concepts``: concept activation vectors of a trained model, TCAV (Kim et al.)
beside Soni et al.'s A-CAV and Gram-Schmidt random sets, with their spread over random sets."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import tyro

from ..config.ranges import bounded
from ..evaluation.opened import open_run
from ..io.checkpoint import one_checkpoint
from ..io.paths import beside
from ..io.report import report
from ..studies.concepts import Variant, concept_study, render
from .common import DATA_DIR, DEVICE, ONE, PATH, log, parse


@dataclasses.dataclass
class ConceptsOptions:
    """Concept activation vectors at one layer (TCAV, Kim et al. 2018, through captum): the
    TCAV score of a class's test images and the concept classifier's recall of held-out
    concept images, over --seeds random sets; with --acav also Soni et al.'s adversarially
    trained classifier (A-CAV), with --gram-schmidt their Gram-Schmidt random sets and
    averaged classifiers."""

    # run directory or .safetensors checkpoint
    path: PATH
    # a module name of the model, e.g. net.features.7
    layer: str
    # a folder of concept images, or a rule on the training images: classes:K1,K2 or
    # mask:REGION:SHARE (images with at least SHARE of their ink in REGION: top, bottom, left,
    # right, centre)
    concept: str
    # the class whose test images are scored
    target: Annotated[int, tyro.conf.arg(name="class")] = bounded(dataclasses.MISSING, 0)
    which: ONE = "best"
    # A-CAV beside TCAV's plain CAV
    acav: bool = False
    # also Gram-Schmidt random sets with --average classifiers
    gram_schmidt: bool = False
    # A-CAV's L2 margin in activation space, as a fraction of the mean activation norm
    acav_margin: float = bounded(0.1, 0, strict=True)
    # classifiers averaged with --gram-schmidt
    average: int = bounded(5, 1)
    # random sets
    seeds: int = bounded(20, 2)
    # concept images
    n_concept: int = bounded(100, 3)
    # images of each random set
    n_random: int = bounded(100, 3)
    # test images of the class scored
    n_class: int = bounded(200, 1)
    # where concepts.json / concepts.md go; None: in the run directory, named after the
    # layer, concept and class
    out_dir: Optional[str] = None
    device: DEVICE = "auto"
    data_dir: DATA_DIR = None


def cmd_concepts(argv: list[str]) -> int:
    args = parse(ConceptsOptions, argv, "torchawp concepts")
    args.which = one_checkpoint(args.path, args.which, "torchawp concepts")
    variants = [Variant("cav")]
    if args.acav:
        variants.append(Variant("a-cav", eps=args.acav_margin))
    if args.gram_schmidt:
        variants.append(Variant("cav+gs", gram_schmidt=True, average=args.average))
        if args.acav:
            variants.append(Variant("a-cav+gs", eps=args.acav_margin, gram_schmidt=True,
                                    average=args.average))
    opened = open_run(args.path, args.which, args.device, args.data_dir)
    model, splits, _ = opened
    path = Path(args.path)
    tag = "".join(c if c.isalnum() else "_" for c in Path(args.concept).name)
    out = beside(path, args.out_dir, f"concepts_{args.which}_{args.layer}_{tag}_c{args.target}")
    study = concept_study(model, splits, args.layer, args.concept, args.target, variants,
                          args.seeds, args.n_concept, args.n_random, args.n_class, progress=log)
    study["source"] = {"path": str(path), "which": args.which,
                       "sha256": opened.sha256}
    text = render(study)
    with report(out, "concepts directory") as written:
        written.json("concepts.json", study)
        written.text("concepts.md", text)
    print(text.rstrip())
    print(f"report: {out / 'concepts.md'}, {out / 'concepts.json'}")
    return 0
