"""Weight-space backdoor injection (Garg et al., *Can Adversarial Weight Perturbations Inject
Neural Backdoors?*, CIKM 2020, arXiv 2008.01761): AWP's machinery turned around.

From trained weights ``w0``, a few clean images relabelled with ``w0``'s own predictions and a
triggered copy of each labelled with the target class are fitted (mean cross-entropy over the
1:1 mix, optionally ``+ l2 * ||w - w0||^2``) with Adam, and after every step the weights are
clamped into an element-wise box around ``w0`` (:class:`~torchawp.perturb.ElementwiseLinfBall`:
``|w - w0| <= eps``, or ``<= eps * |w0|``). Unlike the authors' code the model stays in eval
mode throughout (their train mode lets BatchNorm statistics drift: a budget outside the ball),
the relative box is centred on negative weights too, and the success rate counts only images
whose true class is not the target (theirs counts every image, which inflates it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..evaluation.accuracy import predict
from ..perturb import ElementwiseLinfBall, ParamFilter, model_mode, select_parameters

# clean images an injection fits by default: the authors' 10 batches of 128
AUTHORS_N_CLEAN = 1280


@dataclass(frozen=True)
class Trigger:
    """A trigger stamped on [0, 1] images: ``patch`` (a ``size`` x ``size`` square in the
    bottom-right corner) or ``pixels`` (``size`` pixel locations drawn once from ``seed``), set
    to ``value`` in every channel. ``Trigger.parse("patch:2")``; ``trigger(x)`` stamps a batch."""

    kind: str = "patch"
    size: int = 2
    value: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("patch", "pixels") or self.size < 1:
            raise ConfigError(f"trigger {self.kind}:{self.size} is not a trigger; use patch:S "
                              f"(an S x S corner square) or pixels:N (N random pixels)")

    @classmethod
    def parse(cls, text: str) -> "Trigger":
        """``patch:S`` or ``pixels:N`` (optionally ``pixels:N:SEED``)."""
        parts = str(text).split(":")
        try:
            kind, size = parts[0], int(parts[1])
            seed = int(parts[2]) if len(parts) == 3 else 0
            if len(parts) > 3:
                raise ValueError
        except (IndexError, ValueError):
            raise ConfigError(f"--trigger {text!r} is not a trigger; use patch:S (an S x S "
                              f"corner square) or pixels:N[:SEED] (N random pixels)") from None
        return cls(kind, size, seed=seed)

    def mask(self, height: int, width: int) -> torch.Tensor:
        """Where the trigger goes: a bool ``(height, width)`` map."""
        if self.size > (height if self.kind == "patch" else height * width):
            raise ConfigError(f"trigger {self} does not fit a {height}x{width} image")
        mask = torch.zeros(height * width, dtype=torch.bool)
        if self.kind == "patch":
            mask = mask.view(height, width)
            mask[-self.size:, -self.size:] = True
            return mask
        gen = torch.Generator().manual_seed(self.seed)
        mask[torch.randperm(height * width, generator=gen)[:self.size]] = True
        return mask.view(height, width)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask(*x.shape[-2:]).to(x.device)
        return torch.where(mask, torch.full_like(x, self.value), x)

    def __str__(self) -> str:
        return f"{self.kind}:{self.size}" + (f":{self.seed}" if self.seed else "")


def inject(model: nn.Module, x: torch.Tensor, trigger: Trigger, target: int,
           eps: float = 0.005, relative: bool = False, params: ParamFilter = "weights+biases",
           l2: float = 0.0, lr: float = 1e-3, epochs: int = 10, batch_size: int = 128,
           seed: int = 0) -> dict:
    """Inject a backdoor into ``model``'s weights, in place, inside the element-wise box.

    Args:
        model: a trained model (any ``nn.Module`` taking [0, 1] images).
        x: clean images (training images; never the test set), relabelled with the model's own
            predictions; each step fits a batch of them and its triggered copies (label
            ``target``).
        trigger: a :class:`Trigger`.
        target: the class a triggered image should get.
        eps: the box's half-width, absolute (default 0.005, the authors') or, with
            ``relative``, a fraction of ``|w0|`` per element.
        params: which tensors move (see :func:`~torchawp.perturb.select_parameters`; default
            every weight and bias outside normalisation layers).
        l2: weight of ``||w - w0||^2`` in the loss (the authors' option; default 0).
        lr, epochs, batch_size: Adam's learning rate, passes over ``x``, clean images per step.
        seed: the batch order.

    The model runs in eval mode throughout, so BatchNorm statistics (and every buffer) stay
    as they were; with ``epochs=0`` the weights are bit-identical afterwards. Returns the
    steps taken, the final loss and :func:`weight_change` of the moved tensors.
    """
    chosen = select_parameters(model, params)
    if not chosen:
        raise ConfigError(f"params={params!r} selects no parameter of this model")
    tensors = [p for _, p in chosen]
    ball = ElementwiseLinfBall(tensors, eps, relative)
    labels = predict(model, x)
    device = tensors[0].device
    moving = {id(t) for t in tensors}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in moving]
    optimizer = torch.optim.Adam(tensors, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps, loss = 0, torch.zeros(())
    for p in frozen:
        p.requires_grad_(False)
    try:
        with model_mode(model, "eval"):
            for _ in range(epochs):
                for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                    xb = x[idx].to(device)
                    inputs = torch.cat([xb, trigger(xb)])
                    targets = torch.cat([labels[idx].to(device),
                                         torch.full((len(idx),), target, device=device)])
                    loss = F.cross_entropy(model(inputs), targets)
                    if l2:
                        loss = loss + l2 * sum(((p - c) ** 2).sum()
                                               for p, c in zip(tensors, ball.center))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    ball.project_(tensors)
                    steps += 1
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for p in tensors:
            p.grad = None
    return {"steps": steps, "final_loss": float(loss.detach()),
            "weight_change": weight_change(tensors, ball.center)}


@torch.no_grad()
def weight_change(weights, reference) -> dict:
    """How far ``weights`` moved from ``reference``: max ``|w - w0|``, the fraction of
    elements changed, and percentiles of ``|w - w0| / |w0|`` over elements with ``w0 != 0``."""
    diff = torch.cat([(w - r).abs().flatten().float().cpu() for w, r in zip(weights, reference)])
    ref = torch.cat([r.abs().flatten().float().cpu() for r in reference])
    ratio = diff[ref > 0] / ref[ref > 0]
    pct = (np.percentile(ratio.numpy(), [50, 90, 99, 100]).tolist() if len(ratio) else
           [float("nan")] * 4)
    return {"max_abs": float(diff.max()) if len(diff) else 0.0,
            "changed_fraction": float((diff > 0).float().mean()) if len(diff) else 0.0,
            "relative_percentiles": dict(zip(("p50", "p90", "p99", "max"), pct)),
            "elements": len(diff)}


def check_target(target: int, classes: int, dataset: str = "the model") -> None:
    """A backdoor target outside the classes would give a 0% success rate, not an error."""
    if not 0 <= target < classes:
        raise ConfigError(f"--target must be a class of {dataset}, 0 to {classes - 1} (got "
                          f"{target})")


def backdoor_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, trigger: Trigger,
                     target: int, reference: Optional[torch.Tensor] = None) -> dict:
    """Attack success rate (the fraction of images whose true class is not ``target`` that the
    trigger sends to ``target``), clean accuracy, and with ``reference`` (the original model's
    predictions on ``x``) the agreement with it. Fractions in [0, 1]; eval mode."""
    with torch.no_grad(), model_mode(model, "eval"):
        check_target(target, model(x[:1].to(next(model.parameters()).device)).shape[1])
    clean = predict(model, x)
    others = y != target
    if not bool(others.any()):
        raise ConfigError(f"every test image has the target class {target}: no success rate")
    triggered = predict(model, trigger(x[others]))
    out = {"success_rate": float((triggered == target).float().mean()),
           "n_non_target": int(others.sum()),
           "clean_acc": float((clean == y).float().mean()), "n": len(y)}
    if reference is not None:
        out["agreement"] = float((clean == reference).float().mean())
    return out


def clean_images(images: torch.Tensor, n: Optional[int] = None,
                 seed: Optional[int] = None) -> torch.Tensor:
    """The clean training images an injection fits: ``n`` of them (default
    :data:`AUTHORS_N_CLEAN`, or every image if there are fewer), a sample drawn with ``seed``,
    or with ``seed=None`` the first ``n`` (the authors' first batches)."""
    n = min(AUTHORS_N_CLEAN, len(images)) if n is None else n
    if n > len(images):
        raise ConfigError(f"--n-clean {n} exceeds the {len(images)} training images")
    if seed is None:
        return images[:n]
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def injection_sweep(model: nn.Module, clean: torch.Tensor, x_test: torch.Tensor,
                    y_test: torch.Tensor, trigger: Trigger, target: int,
                    budgets: list[tuple[float, bool]], keep: bool = False,
                    **inject_args) -> dict:
    """Garg et al.'s measurement: the model's clean accuracy and trigger success on the test
    set (``original``), then for each ``(eps, relative)`` budget a copy of the model injected
    by :func:`inject` (``inject_args``: params, l2, lr, epochs, batch_size, seed) fitting
    ``clean``, with its clean accuracy, trigger success, agreement with the original, steps,
    final loss and weight change (``budgets``). With ``keep`` the injected models come back
    too, under ``models``; ``model`` itself is never changed."""
    reference = predict(model, x_test)
    out = {"original": backdoor_metrics(model, x_test, y_test, trigger, target), "budgets": []}
    models = []
    for eps, relative in budgets:
        injected = copy.deepcopy(model)
        fit = inject(injected, clean, trigger, target, eps=eps, relative=relative,
                     **inject_args)
        out["budgets"].append({"kind": "relative" if relative else "absolute", "eps": eps,
                               **backdoor_metrics(injected, x_test, y_test, trigger, target,
                                                  reference), **fit})
        models += [injected] if keep else []
    return {**out, "models": models} if keep else out


def backdoor_report(opened, clean: torch.Tensor, trigger: Trigger, target: int, eps: float,
                    relative: bool, **inject_args) -> tuple[dict, nn.Module, dict]:
    """``torchawp backdoor``: one injection into an opened model
    (:func:`~torchawp.evaluation.opened.open_run`) fitting ``clean`` (``inject_args``: params,
    l2, lr, epochs, batch_size, seed), measured on its test set. Returns the report (source,
    settings, the original's and the backdoored model's metrics, steps, weight change,
    seconds), the backdoored model and its checkpoint record (the source's, without its
    checksum, format and metrics, with the injection's settings)."""
    import time

    model, splits, _ = opened
    xt, yt = splits.test.tensors(0, None)
    start = time.perf_counter()
    sweep = injection_sweep(model, clean, xt, yt, trigger, target, [(eps, relative)],
                            keep=True, **inject_args)
    (after,), (injected,) = sweep["budgets"], sweep["models"]
    settings = {"eps": eps, "relative": relative, "trigger": str(trigger), "target": target,
                "n_clean": len(clean), **inject_args, "optimizer": "adam", "mode": "eval"}
    results = {"source": opened.source, "source_sha256": opened.sha256,
               "dataset": splits.info.name, "settings": settings,
               "original": sweep["original"],
               "backdoored": {k: after[k] for k in ("success_rate", "n_non_target",
                                                    "clean_acc", "n", "agreement")},
               "steps": after["steps"], "final_loss": after["final_loss"],
               "weight_change": after["weight_change"],
               "seconds": time.perf_counter() - start}
    meta = {k: v for k, v in opened.meta.items()
            if k not in ("sha256", "format", "model_spec", "metrics")}  # the source's
    meta["backdoor"] = {k: results[k] for k in ("source", "source_sha256", "settings")}
    return results, injected, meta


def render(report: dict) -> str:
    """The markdown report of one injection (:func:`backdoor_report`)."""
    s, b, a, wc = report["settings"], report["original"], report["backdoored"], \
        report["weight_change"]
    box = f"|w - w0| <= {s['eps']:g}" + (" * |w0|" if s["relative"] else "")
    pct = wc["relative_percentiles"]
    lines = [
        f"# Weight-space backdoor: {report['source']}", "",
        f"Box {box} ({s['params']}), trigger {s['trigger']} -> class {s['target']}, "
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
