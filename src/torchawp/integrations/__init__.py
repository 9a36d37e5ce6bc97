"""Weight perturbations inside the trainers people already use: the Hugging Face ``Trainer``
(:mod:`torchawp.integrations.hf`, extra ``torchawp[hf]``) and Lightning
(:mod:`torchawp.integrations.lightning`, extra ``torchawp[lightning]``); and what they share
here: the parameter rules for transformers and the one-time report of what a rule touches.

The step every integration runs, per micro-batch of a gradient-accumulation cycle: ``v`` from
the ascent of that micro-batch's loss at ``w`` (BatchNorm statistics frozen), the forward and
backward at ``w + v``, then back to ``w`` before the next micro-batch; on the micro-batch the
optimizer steps after, ``v`` stays for the step where the perturbation steps at ``w + v``
(AWP, RWP, random noise; :meth:`~torchawp.perturbations.WeightPerturbation.before_step` takes
SAM and the practitioners' AWP back to ``w`` first) and goes once the step is taken. Without
accumulation that is exactly the training loop of each perturbation's paper.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from typing import Callable, Optional, Sequence

from torch import nn

from ..perturbations import WeightPerturbation

__all__ = ["by_name", "parameter_report", "TRANSFORMER_RULES"]


def by_name(include: Sequence[str] = ("*",), exclude: Sequence[str] = (),
            min_dim: int = 1) -> Callable[[str, nn.Parameter], bool]:
    """A parameter rule by name patterns (``fnmatch``, e.g. ``"*.attention.*"``): a tensor is
    perturbed when its name matches one of ``include``, none of ``exclude``, and it has at
    least ``min_dim`` dimensions. Pass it as ``params=`` to any perturbation."""
    def keep(name: str, param: nn.Parameter) -> bool:
        return (param.dim() >= min_dim and any(fnmatch.fnmatchcase(name, p) for p in include)
                and not any(fnmatch.fnmatchcase(name, p) for p in exclude))
    return keep


# rules for BERT-like models (names as Hugging Face writes them), beside the built-in
# "weights" (AWP's rule: every tensor with dim > 1 named *weight*: embeddings, attention and
# MLP linears, the classifier; never LayerNorm or biases), "weights+biases" and "all"
TRANSFORMER_RULES = {
    # the linears of the encoder and the head: no embeddings, no LayerNorm, no biases
    "linears": by_name(exclude=["*embeddings*"], min_dim=2),
    # attention only: query, key, value and their output projection
    "attention": by_name(include=["*.attention.*"], min_dim=2),
}


def _kind(module: Optional[nn.Module], name: str) -> str:
    if isinstance(module, nn.Embedding):
        return "embeddings"
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "LayerNorm" in type(module).__name__:
        return "LayerNorm"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "BatchNorm"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "convolutions"
    if isinstance(module, nn.Linear):
        return "attention linears" if ".attention." in f".{name}" else "linears"
    return type(module).__name__ if module is not None else "other"


def parameter_report(model: nn.Module, perturbation: WeightPerturbation) -> str:
    """One line: how many tensors and values ``perturbation`` touches, by kind (embeddings,
    attention and other linears, convolutions, LayerNorm, BatchNorm), and the kinds it leaves
    alone. Tied weights (one tensor under two names) are counted, and perturbed, once."""
    modules = dict(model.named_modules())
    chosen = {id(p) for p in perturbation.params}
    touched, left = Counter(), Counter()
    values = 0
    for name, param in model.named_parameters():  # tied tensors appear once here
        owner, _, leaf = name.rpartition(".")
        kind = _kind(modules.get(owner), owner) + (" (biases)" if leaf == "bias" else "")
        if id(param) in chosen:
            touched[kind] += 1
            values += param.numel()
        elif param.requires_grad:
            left[kind] += 1
    said = lambda counts: ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))  # noqa: E731
    return (f"{perturbation.title} perturbs {sum(touched.values())} tensors ({values:,} "
            f"values): {said(touched) or 'none'}; leaves {said(left) or 'nothing'}")
