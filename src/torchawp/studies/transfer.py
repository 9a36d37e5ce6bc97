"""Transfer of adversarial examples from a source model to a target model: the rate at which
examples crafted on one model fool another, and how large the perturbations were."""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch import nn

from ..attacks import Attack, build_attack
from ..attacks.regional import Region, Regional
from ..evaluation.accuracy import EVAL_BATCH_SIZE, EVAL_SEED, predict


def _median(values: torch.Tensor) -> Optional[float]:
    return float(values.median()) if len(values) else None


def transfer(source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
             attack: Attack, batch_size: int = EVAL_BATCH_SIZE, seed: int = EVAL_SEED) -> dict:
    """Craft ``attack`` on ``source`` for the images both models classify correctly, and
    measure on ``target``.

    Returns the number of images, how many both models got right (the attacked ones), the
    ``transfer_rate`` (fraction of attacked images the target now misclassifies), the
    ``source_rate`` (the same on the source), and over the transferred examples the medians of
    L0 (the fraction of pixel locations changed in any channel), L2 and L-inf of ``x_adv - x``
    in [0, 1] pixel units. Fractions in [0, 1].
    """
    device = next(source.parameters()).device
    correct = (predict(source, x) == y) & (predict(target, x) == y)
    xs, ys = x[correct], y[correct]
    gen = torch.Generator(device).manual_seed(seed)
    fooled, fooled_source, l0, l2, linf = [], [], [], [], []
    for start in range(0, len(ys), batch_size):
        xb = xs[start:start + batch_size].to(device)
        yb = ys[start:start + batch_size].to(device)
        x_adv = attack(source, xb, yb, gen)
        fooled.append(predict(target, x_adv) != yb.cpu())
        fooled_source.append(predict(source, x_adv) != yb.cpu())
        diff = (x_adv - xb).detach().cpu()
        l0.append((diff.abs().amax(1) > 0).flatten(1).float().mean(1))
        l2.append(diff.flatten(1).norm(dim=1))
        linf.append(diff.flatten(1).abs().amax(1))
    cat = lambda parts: torch.cat(parts) if parts else torch.zeros(0)  # noqa: E731
    fooled_all = cat(fooled).bool()
    n = len(ys)
    return {"n": len(y), "attacked": n,
            "transfer_rate": float(fooled_all.float().mean()) if n else None,
            "source_rate": float(cat(fooled_source).float().mean()) if n else None,
            "median_l0": _median(cat(l0)[fooled_all]),
            "median_l2": _median(cat(l2)[fooled_all]),
            "median_linf": _median(cat(linf)[fooled_all])}


def regional_sweep(source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   regions: list[Region], steps: int = 250, seed: int = EVAL_SEED,
                   log: Optional[Callable[[str], None]] = None) -> list[dict]:
    """Ozbulak et al.'s measurement: for each region, the regional attack on ``source`` (each
    image stopping once ``target``'s prediction changes) and :func:`transfer`'s row, with the
    region, its family, its actual share of the image and the seconds it took."""
    rows = []
    for region in regions:
        start = time.perf_counter()
        r = transfer(source, target, x, y, Regional(region, stop_model=target, steps=steps),
                     seed=seed)
        r.update(seconds=time.perf_counter() - start, region=str(region), kind=region.kind,
                 area=region.actual_area(*x.shape[-2:]))
        rows.append(r)
        if log is not None:
            log(f"{region}: transfer {100 * (r['transfer_rate'] or 0):.1f}% of "
                f"{r['attacked']} ({r['seconds']:.1f} s)")
    return rows


def transfer_report(source, target, n_examples: Optional[int], attack: str = "regional",
                    regions: Optional[list[Region]] = None, steps: int = 250,
                    seed: int = EVAL_SEED, log: Optional[Callable[[str], None]] = None,
                    names: Optional[tuple[str, str]] = None) -> dict:
    """``torchawp transfer``: examples crafted on the opened ``source``
    (:func:`~torchawp.evaluation.opened.open_run`) from its first ``n_examples`` test images,
    measured on the opened ``target``; ``attack`` is ``regional`` (:func:`regional_sweep` over
    ``regions``, at most ``steps`` steps) or an evaluation attack on the source's threat
    model. The report: source and target (``names``, or the files read), checkpoint, dataset,
    attack, settings, seed, rows."""
    x, y = source.splits.test.tensors(0, n_examples)
    if attack == "regional":
        rows = regional_sweep(source.model, target.model, x, y, regions, steps, seed, log)
        settings = {"steps": steps, "step_size": 1 / 255, "targeted": True, "eps": None,
                    "stop": "target prediction differs"}
    else:
        threat = source.threat
        start = time.perf_counter()
        rows = [transfer(source.model, target.model, x, y, build_attack(attack, threat),
                         seed=seed)]
        rows[0]["seconds"] = time.perf_counter() - start
        if log is not None:
            log(f"{attack}: transfer {100 * (rows[0]['transfer_rate'] or 0):.1f}% of "
                f"{rows[0]['attacked']} ({rows[0]['seconds']:.1f} s)")
        settings = {"norm": threat.norm, "eps": threat.eps, "step_size": threat.step_size}
    names = names or (source.source, target.source)
    return {"source": names[0], "target": names[1], "which": source.which,
            "dataset": source.splits.info.name, "attack": attack, "settings": settings,
            "seed": seed, "rows": rows}


def render(report: dict) -> str:
    """The markdown report of one transfer measurement (:func:`transfer_report`)."""
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    rows = report["rows"]
    lines = [f"# Transfer: {report['source']} -> {report['target']}", "",
             f"{report['attack']} on the {report['which']} checkpoints, {report['dataset']} test "
             f"set: {rows[0]['n']} images, {rows[0]['attacked']} classified correctly by both "
             f"(the ones attacked). Transfer: the share of those the target then misclassifies; "
             f"L0 (share of pixel locations changed), L2 and L-inf are medians over the "
             f"transferred ones, in [0, 1] pixel units.", "",
             "| region | area | transfer % | source fooled % | L0 | L2 | L-inf |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('region', '-')} | {pct(r.get('area'))} | "
                     f"{pct(r['transfer_rate'])} | {pct(r['source_rate'])} | "
                     f"{num(r['median_l0'])} | {num(r['median_l2'])} | {num(r['median_linf'])} |")
    return "\n".join(lines) + "\n"
