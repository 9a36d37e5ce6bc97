"""Concept activation vectors of robust models: TCAV (Kim et al., ICML 2018) through captum's
``captum.concept``, with Soni et al.'s two fixes ("Adversarial TCAV", arXiv 2002.03549).

A concept classifier separates a layer's activations of concept images from those of random
images; its normal is the CAV, and the TCAV score is the share of a class's images whose logit
grows along it (captum computes activations, layer gradients and the score). Soni et al. report
that such classifiers recall few held-out concept images and that the result swings with the
random set, and propose (1) A-CAV, a classifier trained on adversarial examples for a larger
margin, and (2) random examples made orthogonal to the concept by a Gram-Schmidt step, with
the classifiers of several random draws averaged. The paper gives no code; our choices:

- **adversarial training in activation space**: each training activation may move by
  ``eps * (mean activation norm)`` in L2 towards the other class. For a linear classifier the
  worst move is known exactly, so the adversarial logistic loss is
  ``softplus(-y (w.a + b) + eps_abs ||w||)``, a margin of ``eps_abs`` enforced;
- **Gram-Schmidt random sets**: the random images' activations with their component along the
  concept direction (the unit mean of the concept activations) removed, ``r - (r.u) u``;
- **averaging**: ``average`` classifiers, each on a seeded half of those random activations,
  their unit normals averaged (and renormalised) into one CAV;
- **recall**: the share of held-out concept images (a third of the concept set, seeded) that
  the classifier puts on the concept side; beside it the **specificity**, the share of
  held-out random images (as they are, not orthogonalised) on the other side, since a
  classifier that calls everything the concept recalls all of it.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

REGIONS = ("top", "bottom", "left", "right", "centre")


def _captum():
    try:
        import captum.concept as concept
    except ImportError:
        raise ConfigError("concept vectors need captum: pip install 'torchawp[concepts]'") from None
    return concept


def region_mask(region: str, height: int, width: int) -> torch.Tensor:
    """A 0/1 mask of a named image region: a half (top, bottom, left, right) or the centre
    half-size square."""
    mask = torch.zeros(height, width)
    h, w = height // 2, width // 2
    if region == "top":
        mask[:h] = 1
    elif region == "bottom":
        mask[height - h:] = 1
    elif region == "left":
        mask[:, :w] = 1
    elif region == "right":
        mask[:, width - w:] = 1
    elif region == "centre":
        mask[height // 4:height // 4 + h, width // 4:width // 4 + w] = 1
    else:
        raise ConfigError(f"concept mask region must be one of {', '.join(REGIONS)} "
                          f"(got {region!r})")
    return mask


def rule_members(rule: str, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Which images of ``(x, y)`` a concept rule selects (bool per image):
    ``classes:0,8`` (those classes) or ``mask:REGION:SHARE`` (images with at least SHARE of
    their ink, the sum of pixel values, inside REGION: a stroke pattern)."""
    kind, _, spec = rule.partition(":")
    if kind == "classes":
        try:
            wanted = sorted({int(c) for c in spec.split(",")})
        except ValueError:
            wanted = []
        if not wanted or not all(0 <= c < num_classes for c in wanted):
            raise ConfigError(f"concept classes:{spec} must list classes in [0, "
                              f"{num_classes - 1}], such as classes:0,8")
        return torch.isin(y, torch.tensor(wanted))
    if kind == "mask":
        region, _, share = spec.partition(":")
        try:
            share = float(share)
        except ValueError:
            share = -1.0
        if not 0 < share < 1:
            raise ConfigError(f"concept mask:{spec} needs a share in (0, 1), such as "
                              f"mask:top:0.6")
        ink = x.sum(1)  # N x H x W
        inside = (ink * region_mask(region, *ink.shape[1:])).sum((1, 2))
        return inside >= share * ink.sum((1, 2)).clamp_min(1e-12)
    raise ConfigError(f"concept {rule!r} is neither a folder of images nor a rule: "
                      f"classes:K1,K2 or mask:REGION:SHARE (regions {', '.join(REGIONS)})")


def gram_schmidt(random: torch.Tensor, concept: torch.Tensor) -> torch.Tensor:
    """The random activations with their component along the concept direction (the unit
    mean of the concept activations) removed: orthogonal to it."""
    u = F.normalize(concept.mean(0), dim=0)
    return random - (random @ u)[:, None] * u[None]


def _fit_linear(a: torch.Tensor, y: torch.Tensor, eps: float, steps: int, lr: float,
                weight_decay: float, generator: torch.Generator):
    """A logistic classifier (``y`` in {-1, +1}) by full-batch Adam; with ``eps > 0`` on the
    worst-case activations of the L2 ball of radius ``eps`` (exact for a linear model)."""
    w = (0.01 * torch.randn(a.shape[1], generator=generator)).requires_grad_(True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        margin = y * (a @ w + b) - eps * w.norm()
        loss = F.softplus(-margin).mean() + weight_decay * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach(), b.detach()


class ConceptClassifier:
    """A concept classifier with the interface of captum's ``Classifier`` (``train_and_eval``,
    ``weights``, ``classes``), which captum's TCAV trains on each experimental set: linear,
    plain (Kim et al.) or adversarially trained (A-CAV), optionally on Gram-Schmidt random
    sets averaged over ``average`` classifiers. Each fit returns ``recall`` (held-out concept
    images on the concept side), ``specificity`` (held-out random images, as they are, on the
    other side) and their mean as ``accs``; captum keeps them with the CAV.

    Args:
        concept_id: the concept's id in captum's experimental sets (the other id is random).
        eps: A-CAV's margin, relative to the mean activation norm (0: plain CAV).
        gram_schmidt: make the random activations orthogonal to the concept direction.
        average: classifiers averaged into the CAV (each on a seeded half of the randoms).
        seed: with the random set's id, the train/test split and the initialisation.
    """

    def __init__(self, concept_id: int, eps: float = 0.0, gram_schmidt: bool = False,
                 average: int = 1, steps: int = 300, lr: float = 0.01,
                 weight_decay: float = 1e-4, test_share: float = 0.33, seed: int = 0):
        self.concept_id, self.eps = concept_id, eps
        self.use_gs, self.average = gram_schmidt, average
        self.steps, self.lr, self.weight_decay = steps, lr, weight_decay
        self.test_share, self.seed = test_share, seed
        self._w: Optional[torch.Tensor] = None
        self._classes: list[int] = []

    def train_and_eval(self, dataloader, **kwargs) -> dict:
        batches = list(dataloader)
        a = torch.cat([x for x, _ in batches]).float().cpu()
        labels = torch.cat([y for _, y in batches]).cpu()
        other = int(next(c for c in labels.unique().tolist() if c != self.concept_id))
        self._classes = [self.concept_id, other]
        g = torch.Generator().manual_seed(self.seed * 100_003 + other)
        is_concept = labels == self.concept_id
        pos_train, pos_test = self._split(a[is_concept], g)
        neg, neg_test = self._split(a[~is_concept], g)
        if self.use_gs:
            neg = gram_schmidt(neg, pos_train)
        eps_abs = self.eps * a.norm(dim=1).mean().item()
        normals, biases = [], []
        for k in range(self.average):
            part = (neg if self.average == 1 else
                    neg[torch.randperm(len(neg), generator=g)[:max(1, len(neg) // 2)]])
            x = torch.cat([pos_train, part])
            y = torch.cat([torch.ones(len(pos_train)), -torch.ones(len(part))])
            w, b = _fit_linear(x, y, eps_abs, self.steps, self.lr, self.weight_decay, g)
            normals.append(w / w.norm().clamp_min(1e-12))
            biases.append(b / w.norm().clamp_min(1e-12))
        self._w = F.normalize(torch.stack(normals).mean(0), dim=0)
        bias = torch.stack(biases).mean()
        recall = ((pos_test @ self._w + bias) > 0).float().mean().item()
        specificity = ((neg_test @ self._w + bias) <= 0).float().mean().item()
        return {"accs": torch.tensor((recall + specificity) / 2), "recall": recall,
                "specificity": specificity}

    def _split(self, t: torch.Tensor, g: torch.Generator):
        """``(train, held out)``: a seeded ``test_share`` of the rows held out."""
        t = t[torch.randperm(len(t), generator=g)]
        n_test = max(1, round(self.test_share * len(t)))
        return t[n_test:], t[:n_test]

    def weights(self) -> torch.Tensor:
        """captum's C x F layout: a row per class, the concept's pointing towards it."""
        return torch.stack([self._w, -self._w])

    def classes(self) -> list[int]:
        return self._classes


@dataclass
class Variant:
    """One way of learning the CAV: ``eps`` (A-CAV's margin; 0 plain), Gram-Schmidt random
    sets, classifiers averaged."""

    name: str
    eps: float = 0.0
    gram_schmidt: bool = False
    average: int = 1


@dataclass
class ConceptResult:
    variant: str
    tcav: list[float] = field(default_factory=list)   # per random set (seed)
    recall: list[float] = field(default_factory=list)
    specificity: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        def spread(v):
            return {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                    "min": min(v), "max": max(v)}
        return {"variant": self.variant, "tcav": spread(self.tcav),
                "recall": spread(self.recall), "specificity": spread(self.specificity),
                "seeds": len(self.tcav)}


def check_layer(model: nn.Module, layer: str) -> None:
    """``layer`` names a module of ``model``; otherwise one line with the nearest names."""
    import difflib

    names = [n for n, _ in model.named_modules() if n]
    if layer not in names:
        near = difflib.get_close_matches(layer, names, n=3)
        raise ConfigError(f"the model has no layer {layer!r}; "
                          + (f"did you mean {', '.join(near)}?" if near else
                             f"its layers: {', '.join(names[:12])}"))


def concept_scores(model: nn.Module, layer: str, concept: torch.Tensor,
                   randoms: Sequence[torch.Tensor], class_images: torch.Tensor, target: int,
                   variants: Sequence[Variant], batch_size: int = 256) -> list[ConceptResult]:
    """TCAV score of ``class_images`` for class ``target`` and the concept classifier's recall,
    one per random set, for every variant. captum computes the activations (cached in a
    temporary folder that lives as long as this call), the layer gradients and the scores."""
    cc = _captum()
    check_layer(model, layer)
    model.eval()
    batches = lambda t: [t[i:i + batch_size] for i in range(0, len(t), batch_size)]  # noqa
    concept_c = cc.Concept(0, "concept", batches(concept))
    random_cs = [cc.Concept(i + 1, f"random{i}", batches(r)) for i, r in enumerate(randoms)]
    sets = [[concept_c, r] for r in random_cs]
    results = []
    for v in variants:
        # captum reloads any CAV it finds under save_path: a fresh folder per variant
        with tempfile.TemporaryDirectory(prefix="torchawp_cav_") as tmp:
            tcav = cc.TCAV(model, [layer], model_id="model", save_path=tmp + "/",
                           classifier=ConceptClassifier(0, v.eps, v.gram_schmidt, v.average))
            scores = tcav.interpret(class_images, sets, target=target)
            result = ConceptResult(v.name)
            for concept_set in sets:
                key = f"0-{concept_set[1].id}"
                result.tcav.append(scores[key][layer]["sign_count"][0].item())
                stats = tcav.cavs[key][layer].stats
                result.recall.append(stats["recall"])
                result.specificity.append(stats["specificity"])
            results.append(result)
    return results


def folder_images(folder, channels: int, size: int) -> torch.Tensor:
    """A folder of concept images (png, jpg, ...) as N x C x H x W in [0, 1]; they must have
    the data's size, and are converted to its channels."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    files = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif"))
    images = []
    for f in files:
        img = Image.open(f).convert("L" if channels == 1 else "RGB")
        if img.size != (size, size):
            raise ConfigError(f"concept image {f} is {img.size[0]}x{img.size[1]}; the model "
                              f"takes {size}x{size}: resize the folder's images")
        arr = np.asarray(img, dtype=np.float32) / 255.0
        images.append(torch.from_numpy(arr).reshape(size, size, channels).permute(2, 0, 1))
    if not images:
        raise ConfigError(f"concept folder {folder} holds no images (png, jpg, bmp, gif, tif)")
    return torch.stack(images)


def concept_study(model: nn.Module, splits, layer: str, concept: str, target: int,
                  variants: Sequence[Variant], seeds: int = 20, n_concept: int = 100,
                  n_random: int = 100, n_class: int = 200, progress=None) -> dict:
    """TCAV and the concept classifier's recall over ``seeds`` random sets, per variant: the
    concept from a rule on the training images (:func:`rule_members`) or a folder, the random
    images drawn (seeded) from the other training images, the scored images the test images
    of class ``target``. Raises a one-line :class:`ConfigError` for a class out of range, a
    layer the model lacks or an empty concept set; then says what it runs to ``progress``."""
    from pathlib import Path

    info = splits.info
    if not 0 <= target < info.num_classes:
        raise ConfigError(f"--class must be a class of {info.name}, 0 to "
                          f"{info.num_classes - 1} (got {target})")
    check_layer(model, layer)
    x, y = splits.train.tensors(0, None)
    if Path(concept).is_dir():
        images, members = folder_images(concept, info.in_channels, info.image_size), None
    else:
        members = rule_members(concept, x, y, info.num_classes)
        images = x[members]
    if len(images) < 3:
        raise ConfigError(f"concept {concept} selects {len(images)} images of {info.name}; a "
                          f"concept classifier needs at least 3 (and a held-out third)")
    g = torch.Generator().manual_seed(0)
    images = images[torch.randperm(len(images), generator=g)[:n_concept]]
    pool = x if members is None else x[~members]
    randoms = [pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(s))
                    [:n_random]] for s in range(seeds)]
    xt, yt = splits.test.tensors(0, None)
    scored = xt[yt == target][:n_class]
    if progress is not None:
        progress(f"concepts: {len(variants)} variant(s) x {seeds} random sets at {layer}")
    device = next(model.parameters()).device
    results = concept_scores(model, layer, images.to(device), [r.to(device) for r in randoms],
                             scored.to(device), target, variants)
    return {"layer": layer, "concept": concept, "class": target, "dataset": info.name,
            "n_concept": len(images), "n_random": n_random, "n_class": len(scored),
            "seeds": seeds, "variants": [vars(v) for v in variants],
            "results": [r.summary() for r in results],
            "per_seed": {r.variant: {"tcav": r.tcav, "recall": r.recall,
                                     "specificity": r.specificity} for r in results}}


def render(study: dict) -> str:
    """The markdown table of :func:`concept_study`: mean ± std (min-max) over random sets."""
    lines = [f"Concept `{study['concept']}` ({study['n_concept']} images) at layer "
             f"`{study['layer']}`, class {study['class']} ({study['n_class']} test images of "
             f"{study['dataset']}), {study['seeds']} random sets of {study['n_random']} images.",
             "", "| variant | TCAV score | recall % | specificity % |", "|---|---|---|---|"]
    for r in study["results"]:
        t, rc, sp = r["tcav"], r["recall"], r["specificity"]
        lines.append(f"| {r['variant']} | {t['mean']:.2f} ± {t['std']:.2f} ({t['min']:.2f}-"
                     f"{t['max']:.2f}) | {100 * rc['mean']:.1f} ± {100 * rc['std']:.1f} | "
                     f"{100 * sp['mean']:.1f} ± {100 * sp['std']:.1f} |")
    return "\n".join(lines) + "\n"
