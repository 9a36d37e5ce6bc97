"""Any torchawp weight perturbation in the Hugging Face ``Trainer`` (``pip install
'torchawp[hf]'``).

    from torchawp.integrations.hf import PerturbedTrainer

    trainer = PerturbedTrainer(model=model, args=args, train_dataset=train,
                               perturbation=lambda m: torchawp.AWP(m, gamma=0.01))
    trainer.train()

or, beside a ``Trainer`` subclass of your own, ``class MyTrainer(PerturbationMixin, Trainer)``.
``perturbation`` builds one from the model (``torchawp.AWP``, ``SAM``, ``ASAM``,
``PractitionersAWP``, ``RandomWeightNoise``, or your own subclass); its ``warmup_epochs``
counts the Trainer's epochs. A callback cannot do this (it never sees the loss), so the
training step is overridden: per micro-batch, ``v`` from the ascent of that micro-batch's loss
(``compute_loss`` at ``w``), the Trainer's own forward and backward at ``w + v`` (its
gradient accumulation, ``accelerate`` mixed precision and loss scaling, DDP), back to ``w``
before the next micro-batch; on the micro-batch before an optimizer step ``v`` stays for the
step where the perturbation steps at ``w + v`` (``max_grad_norm`` clips the gradient from
``w + v``), and goes once the step is taken. The perturbation's settings go into every
checkpoint (``torchawp_perturbation.json``); ``train(resume_from_checkpoint=...)`` refuses a
perturbation other than the checkpoint's and restores its random draws.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional, Union

import torch

try:
    from transformers import Trainer, TrainerCallback
except ImportError as exc:  # the optional extra
    raise ImportError(f"torchawp.integrations.hf needs the Hugging Face extra: pip install "
                      f"'torchawp[hf]' ({exc})") from None

from ..errors import ConfigError
from ..perturbations import RWP, WeightPerturbation
from . import parameter_report

STATE_FILE = "torchawp_perturbation.json"

Factory = Callable[[torch.nn.Module], WeightPerturbation]


def perturbation_state(wp: WeightPerturbation) -> dict:
    """What a checkpoint records of a perturbation: its class, its settings (numbers, words and
    the names of the tensors it perturbs) and its random draws' state."""
    names = [n for n, _ in wp.named_params]
    settings = {k: v for k, v in vars(wp).items()
                if isinstance(v, (int, float, str, bool)) and not k.startswith("_")}
    state = {"class": type(wp).__name__, "settings": settings, "params": names}
    if wp.generator is not None:
        state["generator"] = wp.generator.get_state().tolist()
    return state


class _AfterStep(TrainerCallback):
    """Back to ``w`` once the optimizer has stepped; the settings into each checkpoint."""

    def __init__(self, trainer: "PerturbationMixin"):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.trainer.perturbation is not None:
            self.trainer.perturbation.restore()

    def on_save(self, args, state, control, **kwargs):
        wp = self.trainer.perturbation
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if wp is not None and state.is_world_process_zero and os.path.isdir(folder):
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump(perturbation_state(wp), f, indent=1)


class PerturbationMixin:
    """Mix into a ``transformers.Trainer`` (before it): ``perturbation=`` builds the weight
    perturbation from the model; the training step runs it (see the module)."""

    def __init__(self, *args, perturbation: Optional[Union[Factory, WeightPerturbation]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        wp = perturbation(self.model) if callable(perturbation) else perturbation
        if isinstance(wp, RWP):
            raise ConfigError("RWP climbs per-example losses of adversarial examples; a "
                              "Trainer's loss is one number per batch: use AWP, SAM, ASAM, "
                              "PractitionersAWP or RandomWeightNoise here")
        self.perturbation: Optional[WeightPerturbation] = wp
        self._said = False
        if wp is not None:
            self.add_callback(_AfterStep(self))

    def _epoch(self) -> int:
        return int(self.state.epoch or 0)

    def training_step(self, model, inputs, *args, **kwargs):
        wp = self.perturbation
        if wp is None or not wp.applies_in(self._epoch()):
            return super().training_step(model, inputs, *args, **kwargs)
        if not self._said and self.is_world_process_zero():
            print(f"torchawp: {parameter_report(self.model, wp)}", flush=True)
            self._said = True
        inputs = self._prepare_inputs(inputs)
        scaler = getattr(self.accelerator, "scaler", None)
        wp.loss_scale = scaler.scale if scaler is not None else (lambda loss: loss)

        def ascent_loss(net):
            with self.compute_loss_context_manager():
                return self.compute_loss(net, inputs)

        wp.perturb(ascent_loss)
        try:
            loss = super().training_step(model, inputs, *args, **kwargs)
        except BaseException:
            wp.restore()
            raise
        if self.accelerator.sync_gradients:  # the optimizer steps next
            wp.before_step()
        else:  # more micro-batches of this step: each climbs from w
            wp.restore()
        return loss

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        wp = self.perturbation
        if wp is not None and isinstance(resume_from_checkpoint, (str, os.PathLike)):
            self._check_resume(os.path.join(resume_from_checkpoint, STATE_FILE), wp)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    @staticmethod
    def _check_resume(path: str, wp: WeightPerturbation) -> None:
        """The checkpoint's perturbation must be this one; its random draws continue."""
        if not os.path.isfile(path):
            raise ConfigError(f"{path} not found: the checkpoint was not written by a trainer "
                              f"with a weight perturbation, so resuming with one would change "
                              f"the experiment")
        with open(path) as f:
            saved = json.load(f)
        now = perturbation_state(wp)
        for key in ("class", "settings", "params"):
            if saved[key] != now[key]:
                raise ConfigError(f"resume_from_checkpoint: the checkpoint trained with "
                                  f"{saved['class']} {saved['settings']}, this trainer has "
                                  f"{now['class']} {now['settings']} ({key} differs); resume "
                                  f"with the checkpoint's perturbation")
        if "generator" in saved:
            wp.generator.set_state(torch.tensor(saved["generator"], dtype=torch.uint8))


class PerturbedTrainer(PerturbationMixin, Trainer):
    """``transformers.Trainer`` with a weight perturbation (``perturbation=``)."""
