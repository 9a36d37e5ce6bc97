"""Weight averaging: an exponential moving average (EMA) of the weights, as the strongest
robust models on RobustBench keep (Gowal et al. 2020; Rebuffi et al. 2021; Wang et al. 2023).

Built on PyTorch's own :class:`torch.optim.swa_utils.AveragedModel`. After every optimizer step,
at the unperturbed weights ``w`` (with AWP: after ``v`` is removed, never at ``w + v``)::

    ema <- tau * ema + (1 - tau) * w,   tau = min(decay, (1 + n) / (10 + n))

where ``n`` counts the updates so far (the first update copies ``w``: ``n = 0``). This is
the warm-up of Wang et al.'s ``ema_update`` (``dynamic_decay``) with their ``warmup_steps`` 0.
BatchNorm buffers are **copied** from the model at every update (``use_buffers=False``), as
their ``update_bn`` copies them, not averaged and not recalibrated.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..runtime import DistEnv, execution_nets
from .callbacks import Callback
from .log import Best, unprefixed


def ema_multi_avg_fn(decay: float):
    """``AveragedModel``'s ``multi_avg_fn`` for the EMA with warm-up above; ``n`` stays a
    tensor (no host sync)."""

    @torch.no_grad()
    def update(averaged: list, current: list, n: torch.Tensor) -> None:
        n = n.to(torch.float64)
        tau = torch.clamp((1 + n) / (10 + n), max=decay).to(averaged[0].dtype)
        torch._foreach_mul_(averaged, tau)
        torch._foreach_add_(averaged, torch._foreach_mul(current, 1 - tau))

    return update


class EMA(Callback):
    """The average of ``model``'s weights (module: :attr:`module`, in eval mode when used), and
    the callback that keeps it in a run: updated after every optimizer step (at ``w``),
    evaluated and selected on like the model (metrics ``ema_*``, its own best epoch), written
    as ``ema_last`` / ``ema_best`` and resumed exactly.

    Args:
        model: the trained model (unwrapped: no DDP or compile wrapper).
        decay: e.g. 0.995 (Wang et al.), in (0, 1).

    ``best`` tracks the average's own best epoch on the validation split; ``net`` is what
    evaluates it: ``wrap(module)`` (a trainer's autocast wrapper), or the module itself.
    """

    def __init__(self, model: nn.Module, decay: float, wrap=None):
        self.decay = decay
        self.best = Best("ema_")
        self.averaged = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(decay),
                                      use_buffers=False)
        # the update counter lives on the CPU: AveragedModel tests it in Python every update,
        # which would be a device sync per step on a GPU
        self.averaged.n_averaged = self.averaged.n_averaged.cpu()
        self.net = wrap(self.module) if wrap is not None else self.module

    @classmethod
    def from_config(cls, trainer) -> "EMA | None":
        """The run's weight average (``ema``: its decay), evaluated with the model's precision
        and memory format; None without one."""
        cfg = trainer.cfg
        if not cfg.ema:
            return None
        return cls(trainer.model, cfg.ema, wrap=lambda m: execution_nets(
            m, cfg.precision, False, False, trainer.device, DistEnv())[0])

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    state_key = "ema"  # the average's resume copy in the training state

    def update(self, model: nn.Module) -> None:
        """Average in ``model``'s current weights (call at w, after the step)."""
        self.averaged.update_parameters(model)

    def on_step_end(self, trainer, step: int) -> None:
        self.update(trainer.model)  # the average of w, never of w + v

    def on_metrics(self, trainer, epoch: int, row: dict) -> None:
        self.best.update(row, trainer.selection_key, has_val=len(trainer.splits.val) > 0)

    def reported(self, trainer) -> list[tuple]:
        return [("ema_", self.net, self.module, self.best)]

    def state_dict(self) -> dict:
        """The averaged weights and buffers, the update counter and the best epoch so far (for
        an exact resume)."""
        return {"module": {k: v.detach().clone() for k, v in self.module.state_dict().items()},
                "n_averaged": self.averaged.n_averaged.clone(), "best_epoch": self.best.epoch,
                "best_val": self.best.value}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.averaged.n_averaged = state["n_averaged"].cpu().clone()
        self.best = Best("ema_", state["best_epoch"], state["best_val"])

    def checkpoint(self, meta: dict, row: dict, epoch_end: bool) -> tuple:
        """``("ema_", module, meta, is_best)`` for :meth:`~.rundir.RunDir.save`: the run's
        checkpoint meta with the average's metrics and its decay and update count."""
        meta = dict(meta, metrics=unprefixed(row, "ema_"), ema_decay=self.decay,
                    ema_updates=int(self.averaged.n_averaged))
        return "ema_", self.module, meta, epoch_end and self.best.epoch == meta["epoch"]
