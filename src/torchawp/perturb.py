"""The one weight-perturbation primitive that AWP, the landscape and flatness build on.

Pieces, each small:

* :func:`select_parameters` picks the tensors to perturb (AWP: ``dim > 1`` tensors whose name
  contains ``weight``; flatness: everything but normalisation layers).
* :class:`RelativeL2Ball` is the geometry of a per-tensor ball ``||v_l|| <= radius * ||w_l||``
  (or one global ball): ``step`` (normalised-gradient ascent), ``project``, ``sample``.
  :class:`ElementwiseLinfBall` is the box ``|w - w0| <= eps`` (or ``eps * |w0|``) element by
  element, the weight-space backdoor's budget.
* :func:`frozen_bn_stats` runs train-mode forwards without touching BatchNorm running statistics.
* :func:`add_` / :func:`snapshot` / :func:`restore_exact` apply and undo a perturbation. Training
  subtracts (the authors' semantics); measurements copy the saved tensors back, because in
  float32 ``(w + v) - v`` differs from ``w`` in a few percent of entries. :func:`exact_snapshot`
  is the context manager every measurement uses.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence, Union

import torch
from torch import nn

ParamFilter = Union[str, Callable[[str, nn.Parameter], bool]]

_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _awp_weights(name: str, param: nn.Parameter) -> bool:
    return param.dim() > 1 and "weight" in name


def _norm_param_names(model: nn.Module) -> set[str]:
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _NORM_LAYERS):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + n for n, _ in module.named_parameters(recurse=False))
    return names


def select_parameters(
    model: nn.Module, which: ParamFilter = "weights"
) -> list[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs a perturbation acts on.

    Args:
        model: any ``nn.Module``.
        which: ``"weights"`` (AWP, the authors' rule: ``dim > 1`` and ``"weight"`` in the name;
            conv and linear weights, never biases or BN affine parameters), ``"weights+biases"``
            (every parameter outside normalisation layers: the flatness measures of Stutz et
            al.), ``"all"``, or a callable ``(name, param) -> bool``.

    Only parameters with ``requires_grad`` are returned.
    """
    if callable(which):
        keep = which
    elif which == "weights":
        keep = _awp_weights
    elif which == "weights+biases":
        norm_names = _norm_param_names(model)
        keep = lambda name, p: name not in norm_names  # noqa: E731
    elif which == "all":
        keep = lambda name, p: True  # noqa: E731
    else:
        raise ValueError(f"unknown parameter filter {which!r}: weights, weights+biases, all")
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and keep(n, p)]


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Train-mode forwards that leave BatchNorm running statistics (and counters) untouched.

    A BatchNorm in train mode with ``track_running_stats = False`` normalises with the batch
    statistics, exactly as in train mode, but neither reads nor updates its buffers. This is what
    the authors get from a throw-away proxy copy of the model, without the copy.
    """
    changed = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            module.track_running_stats = False
            changed.append(module)
    try:
        yield
    finally:
        for module in changed:
            module.track_running_stats = True


@contextlib.contextmanager
def model_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run with the model in ``"eval"`` mode, ``"train"`` mode with BatchNorm running
    statistics frozen, or ``"train-update"`` (plain train mode: every forward updates them, as
    in the authors' AT loop), and restore each module's own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(mode in ("train", "train-update"))
    try:
        if mode == "train":
            with frozen_bn_stats(model):
                yield
        else:
            yield
    finally:
        for module, training in modes:
            module.training = training


def norms(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per-tensor L2 norms as 0-d tensors (one fused kernel, no host sync)."""
    return list(torch._foreach_norm(list(tensors)))


def add_(params: Sequence[torch.Tensor], deltas: Sequence[torch.Tensor], alpha: float = 1.0):
    """``params += alpha * deltas`` in place, without autograd."""
    with torch.no_grad():
        torch._foreach_add_(list(params), list(deltas), alpha=alpha)


def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of ``params`` to restore bit-exactly with :func:`restore_exact`."""
    with torch.no_grad():
        return [p.detach().clone() for p in params]


def restore_exact(params: Sequence[torch.Tensor], saved: Sequence[torch.Tensor]) -> None:
    """Copy the saved tensors back (bit-identical, unlike subtracting the perturbation)."""
    with torch.no_grad():
        torch._foreach_copy_(list(params), list(saved))


class ExactSnapshot:
    """The saved tensors of :func:`exact_snapshot`; :meth:`restore` copies them back."""

    def __init__(self, params: Sequence[torch.Tensor]):
        self.params = list(params)
        self.saved = snapshot(self.params)

    def restore(self) -> None:
        restore_exact(self.params, self.saved)


@contextlib.contextmanager
def exact_snapshot(params: Sequence[torch.Tensor]) -> Iterator[ExactSnapshot]:
    """Save ``params``, run the block (which may perturb them and call ``.restore()`` between
    measurements), and copy the saved tensors back on the way out, also on error: the weights
    are bit-identical afterwards."""
    saved = ExactSnapshot(params)
    try:
        yield saved
    finally:
        saved.restore()


class RelativeL2Ball:
    """Ball ``||v_l|| <= radius * ||w_l||`` per tensor (``scale="layer"``), or
    ``||v|| <= radius * ||w||`` over all tensors at once (``scale="global"``, as in RWP).

    The radii are fixed from the weights at construction (the centre of the ball), so steps and
    projections taken at ``w + v`` still refer to ``w``.
    """

    def __init__(self, weights: Sequence[torch.Tensor], radius: float, scale: str = "layer",
                 eps: float = 1e-20):
        if scale not in ("layer", "global"):
            raise ValueError(f"scale must be 'layer' or 'global' (got {scale!r})")
        self.radius = float(radius)
        self.scale = scale
        self.eps = eps
        with torch.no_grad():
            self.weight_norms = self._norms(weights)

    def _norms(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        per_tensor = norms(tensors)
        if self.scale == "layer":
            return per_tensor
        total = torch.linalg.vector_norm(torch.stack([n.float() for n in per_tensor]))
        return [total] * len(per_tensor)

    def step(self, grads: Sequence[torch.Tensor], step_size: float,
             inplace: bool = False) -> list[torch.Tensor]:
        """The ascent step ``step_size * ||w_l|| * g_l / (||g_l|| + eps)`` for every tensor
        (written over ``grads`` with ``inplace``, so no second set of buffers is allocated)."""
        grad_norms = self._norms(grads)
        scales = [step_size * wn / (gn + self.eps) for wn, gn in zip(self.weight_norms, grad_norms)]
        if inplace:
            torch._foreach_mul_(list(grads), scales)
            return list(grads)
        return torch._foreach_mul(list(grads), scales)

    def project(self, deltas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Shrink each ``v_l`` (or the global ``v``) back into the ball."""
        delta_norms = self._norms(deltas)
        factors = [torch.clamp(self.radius * wn / (dn + self.eps), max=1.0)
                   for wn, dn in zip(self.weight_norms, delta_norms)]
        return torch._foreach_mul(list(deltas), factors)

    def sample(self, like: Sequence[torch.Tensor], generator: torch.Generator | None = None,
               surface: bool = True) -> list[torch.Tensor]:
        """A random ``v``: uniform on the sphere (``surface``) or in the ball of each tensor."""
        # drawn on the CPU so a seed gives the same sample on every device
        gauss = [torch.randn(t.shape, generator=generator).to(t) for t in like]
        on_sphere = self.step(gauss, self.radius)
        if surface:
            return on_sphere
        if self.scale == "global":
            n = sum(t.numel() for t in like)
            u = torch.rand((), generator=generator).item() ** (1.0 / n)
            return torch._foreach_mul(on_sphere, u)
        return [v * torch.rand((), generator=generator).item() ** (1.0 / v.numel())
                for v in on_sphere]


class ElementwiseLinfBall:
    """The box ``|w_i - w0_i| <= eps`` for every element (``relative=False``), or
    ``|w_i - w0_i| <= eps * |w0_i|`` (``relative=True``), around the weights ``w0`` at
    construction.

    The bounds ``w0 - r`` and ``w0 + r`` are computed once and :meth:`project_` clamps into
    them, so projecting is idempotent, ``w0`` itself is inside (zero steps leave the weights
    bit-identical), and the relative box is centred on ``w0`` for negative weights too (the
    authors' ``w0 * (1 -+ eps)`` bounds swap sides there).
    """

    def __init__(self, weights: Sequence[torch.Tensor], eps: float, relative: bool = False):
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0 (got {eps})")
        self.eps, self.relative = float(eps), bool(relative)
        with torch.no_grad():
            self.center = snapshot(weights)
            radii = [w.abs() * self.eps if self.relative else torch.full_like(w, self.eps)
                     for w in self.center]
            self.lower = torch._foreach_sub(self.center, radii)
            self.upper = torch._foreach_add(self.center, radii)

    def project_(self, params: Sequence[torch.Tensor]) -> None:
        """Clamp ``params`` into the box in place."""
        with torch.no_grad():
            torch._foreach_maximum_(list(params), self.lower)
            torch._foreach_minimum_(list(params), self.upper)

    def contains(self, params: Sequence[torch.Tensor]) -> bool:
        """Whether every element lies inside the box."""
        with torch.no_grad():
            return all(bool(((p >= lo) & (p <= hi)).all())
                       for p, lo, hi in zip(params, self.lower, self.upper))
