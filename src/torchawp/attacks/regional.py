"""The regional perturbation attack and its transfer (Ozbulak et al., ICML 2020 UDL workshop,
arXiv 2007.03198; authors' code ``utkuozbulak/regional-adversarial-perturbation``, MIT).

A random target class other than the true one; up to 250 steps
``x <- clip(x - (1/255) sign(grad_x CE(f_source(x), target)) * mask, 0, 1)`` with no eps ball;
an example stops as soon as a *second* model's prediction differs from its original class.
It is :class:`~torchawp.attacks.PGD` with ``eps=None``, a mask, ``targeted=True`` and an
early-stop predicate: one loop, no copy. Regions are named by their share of the image:
:func:`centre`, :func:`frame` (the centre removed), :func:`random`, and :func:`full`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..perturb import model_mode
from .pgd import PGD

KINDS = ("centre", "frame", "random", "full")


@dataclass(frozen=True)
class Region:
    """A set of pixel locations by ``kind`` and its nominal share ``area`` of the image;
    :meth:`mask` is the bool ``(height, width)`` map (the same for every channel)."""

    kind: str
    area: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS or not 0 < self.area <= 1 or (
                self.kind == "full" and self.area != 1):
            raise ConfigError(f"region {self.kind}:{self.area} is not a region; use "
                              f"centre:A, frame:A, random:A[:SEED] or full, with A the share "
                              f"of the image in (0, 1]")

    @classmethod
    def parse(cls, text: str) -> "Region":
        """``centre:0.3``, ``frame:0.3``, ``random:0.3[:SEED]`` or ``full``."""
        parts = str(text).split(":")
        try:
            if parts == ["full"]:
                return cls("full")
            if len(parts) not in (2, 3):
                raise ValueError
            return cls(parts[0], float(parts[1]), int(parts[2]) if len(parts) == 3 else 0)
        except ValueError:
            raise ConfigError(f"--regions {text!r} is not a region; use centre:A, frame:A, "
                              f"random:A[:SEED] or full (A: share of the image, e.g. "
                              f"0.3)") from None

    def mask(self, height: int, width: int) -> torch.Tensor:
        if self.kind == "full":
            return torch.ones(height, width, dtype=torch.bool)
        if self.kind == "random":
            k = max(1, round(self.area * height * width))
            flat = torch.zeros(height * width, dtype=torch.bool)
            flat[torch.randperm(height * width,
                                generator=torch.Generator().manual_seed(self.seed))[:k]] = True
            return flat.view(height, width)
        inner = self.area if self.kind == "centre" else 1 - self.area
        square = _centre_square(height, width, inner)
        return square if self.kind == "centre" else ~square

    def actual_area(self, height: int, width: int) -> float:
        """The share of pixel locations the mask covers at this size (areas round to whole
        pixels: on 8x8 images a centre square is 1x1 to 8x8)."""
        return float(self.mask(height, width).float().mean())

    def __str__(self) -> str:
        if self.kind == "full":
            return "full"
        return f"{self.kind}:{self.area:g}" + (f":{self.seed}" if self.seed else "")


def _centre_square(height: int, width: int, area: float) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.bool)
    side_h, side_w = round(math.sqrt(area) * height), round(math.sqrt(area) * width)
    top, left = (height - side_h) // 2, (width - side_w) // 2
    mask[top:top + side_h, left:left + side_w] = True
    return mask


def centre(area: float) -> Region:
    """A centred square covering ``area`` of the image."""
    return Region("centre", area)


def frame(area: float) -> Region:
    """The border left when a centred square of ``1 - area`` is removed."""
    return Region("frame", area)


def random(area: float, seed: int = 0) -> Region:
    """``area`` of the pixel locations, drawn once from ``seed``."""
    return Region("random", area, seed)


def full() -> Region:
    """Every pixel."""
    return Region("full")


class Regional(PGD):
    """Ozbulak et al.'s regional attack: targeted sign steps of ``step_size`` (1/255) inside
    ``region``, no eps ball, at most ``steps`` (250), each example stopping once ``stop_model``
    (the model the examples should transfer to; eval mode) no longer predicts its original
    class. Targets are drawn uniformly among the other classes from the call's generator.

    Example::

        attack = Regional(centre(0.3), stop_model=target_model)
        x_adv = attack(source_model, x, y)
        transferred = target_model(x_adv).argmax(1) != y
    """

    def __init__(self, region: Region = Region("full"), stop_model: Optional[nn.Module] = None,
                 steps: int = 250, step_size: float = 1 / 255, bn_mode: str = "eval"):
        super().__init__("linf", None, step_size, steps, random_start="none", loss="ce",
                         bn_mode=bn_mode, mask=region, targeted=True)
        self.stop_model = stop_model

    def perturb(self, model, x, y, generator=None, only=None):
        with torch.no_grad():
            classes = model(x[:1]).shape[1]
        offset = torch.randint(1, classes, y.shape, generator=generator, device=y.device)
        target = (y + offset) % classes
        stop = None
        if self.stop_model is not None:
            def stop(x_adv, index):
                with model_mode(self.stop_model, "eval"):
                    return self.stop_model(x_adv).argmax(1) != y[index]
        return self._run(model, x, target, None, generator, stop, only)
