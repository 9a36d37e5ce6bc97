"""Any torchawp weight perturbation in Lightning (``pip install 'torchawp[lightning]'``).

Automatic optimisation, one line:

    from torchawp.integrations.lightning import WeightPerturbationCallback

    trainer = L.Trainer(callbacks=[WeightPerturbationCallback(
        lambda module: torchawp.AWP(module, gamma=0.01))])

Per micro-batch (``accumulate_grad_batches`` included): before Lightning's training step,
``v`` from the ascent of the module's own ``training_step`` loss at ``w`` (its logging muted,
BatchNorm statistics frozen, under the precision plugin's autocast and loss scale); the
training step and backward then run at ``w + v``; the optimizer, when it steps after this
micro-batch, steps there (AWP, random noise; SAM and the practitioners' AWP go back to ``w``
first, ``before_step``); back to ``w`` at the end of the batch, so that the next micro-batch
climbs from ``w``. DDP and the precision plugins are Lightning's own. ``warmup_epochs`` counts
Lightning's epochs.

Manual optimisation: the perturbation in your ``training_step``, as in any loop::

    with self.awp.perturbed(lambda m: self.loss(m, batch)):
        self.manual_backward(self.loss(self, batch))
        self.awp.before_step()
        opt.step()
    opt.zero_grad()
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

try:
    from lightning.pytorch import Callback
except ImportError as exc:  # the optional extra
    raise ImportError(f"torchawp.integrations.lightning needs the Lightning extra: pip install "
                      f"'torchawp[lightning]' ({exc})") from None

from ..errors import ConfigError
from ..perturbations import RWP, WeightPerturbation
from . import parameter_report


class WeightPerturbationCallback(Callback):
    """Train a ``LightningModule`` (automatic optimisation) with the weight perturbation
    ``make(module)`` builds (see the module)."""

    def __init__(self, make: Callable[[torch.nn.Module], WeightPerturbation]):
        self.make = make
        self.perturbation: Optional[WeightPerturbation] = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if not pl_module.automatic_optimization:
            raise ConfigError("WeightPerturbationCallback drives automatic optimisation; with "
                              "manual optimisation put the perturbation in training_step "
                              "(torchawp.integrations.lightning's docstring shows how)")
        self.perturbation = wp = self.make(pl_module)
        if isinstance(wp, RWP):
            raise ConfigError("RWP climbs per-example losses of adversarial examples; a "
                              "training_step's loss is one number: use AWP, SAM, ASAM, "
                              "PractitionersAWP or RandomWeightNoise here")
        if trainer.is_global_zero:
            print(f"torchawp: {parameter_report(pl_module, wp)}", flush=True)

    def _ascent_loss(self, trainer, pl_module, batch, batch_idx) -> Callable:
        precision = trainer.strategy.precision_plugin
        scaler = getattr(precision, "scaler", None)
        self.perturbation.loss_scale = scaler.scale if scaler is not None else (lambda x: x)

        def loss(net) -> torch.Tensor:
            log, log_dict = pl_module.log, pl_module.log_dict
            pl_module.log = pl_module.log_dict = lambda *a, **k: None  # the real step logs
            try:
                with precision.forward_context():
                    out = pl_module.training_step(batch, batch_idx)
            finally:
                pl_module.log, pl_module.log_dict = log, log_dict
            return out["loss"] if isinstance(out, dict) else out
        return loss

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        wp = self.perturbation
        if wp is None or not wp.applies_in(trainer.current_epoch):
            return
        wp.perturb(self._ascent_loss(trainer, pl_module, batch, batch_idx))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.perturbation is not None:
            self.perturbation.before_step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.perturbation is not None:  # after the step, or before the next micro-batch
            self.perturbation.restore()  # of an accumulation: each climbs from w

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.perturbation is not None:
            self.perturbation.restore()


__all__ = ["WeightPerturbationCallback"]
