"""``torchawp list``: the registries."""

from __future__ import annotations

import dataclasses

from ..attacks import ATTACKS
from ..config.recipes import RECIPE_DIR
from ..data import DATASETS
from ..io.robustbench import ZOO
from ..methods import METHODS, method_names
from ..models import MODELS
from ..perturbations import PERTURBATIONS
from .common import parse


@dataclasses.dataclass
class ListOptions:
    """Methods, weight perturbations, models, datasets, attacks, shipped recipes and the
    RobustBench entries torchawp maps."""


def cmd_list(argv: list[str]) -> int:
    parse(ListOptions, argv, "torchawp list")
    print("methods:  " + ", ".join(method_names()))
    print("  (AWP gamma / warm-up: the method's default, used when the config leaves awp.gamma "
          "/ awp.warmup_epochs unset;\n   the digits recipes set 0.01 / 10 for every method, "
          "the paper recipes the authors' values)")
    for spec in METHODS.values():
        awp = (f"AWP gamma {spec.awp_gamma} warm-up {spec.awp_warmup}"
               if spec.attack_loss != "none" else "no attack")
        print(f"  {spec.name:<8} attack loss {spec.attack_loss}, BN {spec.bn_mode} while "
              f"crafting, {awp}; {spec.paper}")
    print("weight perturbations (--perturbation NAME with any method; X-awp is X with awp; "
          "size and warm-up from awp.gamma / awp.warmup_epochs):")
    for name, cls in PERTURBATIONS.items():
        print(f"  {name:<17} {cls.summary}")
    print("models:   " + ", ".join(sorted(MODELS)))
    print("datasets: " + ", ".join(sorted(DATASETS)))
    print("attacks (torchawp eval --attacks; K: steps):")
    for name, entry in ATTACKS.items():
        print(f"  {name:<10} {entry.meaning}")
    print("recipes:  " + ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))))
    print("RobustBench entries torchawp maps onto its WideResNet (--robustbench NAME):")
    for (dataset, threat), entries in ZOO.items():
        print(f"  {dataset} {threat}: " + ", ".join(sorted(entries)))
    return 0
