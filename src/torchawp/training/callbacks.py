"""What observes the training loop, as callbacks (the shape of Lightning's and the Hugging Face
Trainer's): the loop calls every hook of every callback in order and never branches on what one
does. A callback of your own subclasses :class:`Callback` and is passed as
``Trainer(cfg, callbacks=[...])``; ``docs/architecture.md`` shows one.

Hooks, in the order a run calls them: :meth:`~Callback.on_fit_start` (after the run directory is
ready; on resume, after the checkpoint is loaded), per epoch :meth:`~Callback.on_epoch_start`,
:meth:`~Callback.on_step_end` after each optimizer step (at ``w``), :meth:`~Callback.on_evaluate`
when an evaluation starts, :meth:`~Callback.on_metrics` when the epoch's row is measured (a
callback may add measurements: they are selected on, saved and logged like the others),
:meth:`~Callback.on_epoch_end` after the checkpoint; :meth:`~Callback.on_fit_end` always, last.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from ..weightspace.flatness import probe_flatness
from .estimate import announce


class Callback:
    """Does nothing at every hook; override the ones you need. ``trainer`` is the
    :class:`~torchawp.training.trainer.Trainer` (read its ``cfg``, ``model``, ``history``...);
    ``epoch`` counts from 0, a row's ``"epoch"`` from 1."""

    def on_fit_start(self, trainer) -> None:
        pass

    def on_epoch_start(self, trainer, epoch: int) -> None:
        pass

    def on_step_end(self, trainer, step: int) -> None:
        pass

    def on_evaluate(self, trainer, epoch: int) -> None:
        pass

    def on_metrics(self, trainer, epoch: int, row: dict) -> None:
        pass

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        pass

    def on_fit_end(self, trainer) -> None:
        pass

    # a callback that keeps state of the run (a weight average) says so with ``state_key``:
    # its state_dict goes into every checkpoint's training state under that key, is given back
    # on resume, and checkpoint() names the weights it writes beside the model's
    state_key: Optional[str] = None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def checkpoint(self, meta: dict, row: dict, epoch_end: bool) -> Optional[tuple]:
        """``(prefix, module, meta, is_best)``: weights written as ``{prefix}last`` (and
        ``{prefix}best``) beside the model's, or None."""
        return None

    def reported(self, trainer) -> list[tuple]:
        """``(metrics prefix, net, module, best)`` of models the run evaluates and reports
        beside its own (a weight average), evaluated with the same protocol every epoch."""
        return []


def postfix(row: dict) -> str:
    """The progress bar's summary of an epoch row."""
    parts = [f"loss {row['train_loss']:.3f}"]
    for key, name in (("val_robust_acc", "val rob"), ("test_robust_acc", "test rob"),
                      ("gap", "gap")):
        if key in row:
            parts.append(f"{name} {100 * row[key]:.1f}")
    return " | ".join(parts)


class Progress(Callback):
    """One bar over every training step of the run (and the images done while it evaluates),
    or with ``progress: false`` one plain line per epoch for a job's log; notices go above the
    bar (:meth:`say`). Silent on the ranks of a DDP run other than 0."""

    def __init__(self, enabled: bool = True, main: bool = True):
        self.enabled, self.main = enabled, main
        self.bar = None

    def on_fit_start(self, trainer) -> None:
        if self.enabled and self.main:
            cfg = trainer.cfg
            self.bar = tqdm(total=cfg.epochs * trainer.steps_per_epoch,
                            initial=trainer.start_epoch * trainer.steps_per_epoch + trainer.step,
                            unit="step", dynamic_ncols=True, desc=f"{cfg.method} {cfg.data.name}")

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=True)

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self.describe(f"epoch {epoch + 1}/{trainer.cfg.epochs}")

    def on_step_end(self, trainer, step: int) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_evaluate(self, trainer, epoch: int) -> None:
        self.describe(f"epoch {epoch + 1}/{trainer.cfg.epochs} evaluating")

    def image_counter(self, total: int):
        """``on_batch`` for an evaluation: ``done/total images`` after the bar's description
        (None without a bar)."""
        if self.bar is None:
            return None
        label, done = self.bar.desc, [0]

        def counted(n: int) -> None:
            done[0] += n
            self.describe(f"{label} {done[0]:,}/{total:,} images")

        return counted

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(postfix(row), refresh=True)
        elif self.main:  # --no-progress: one plain line per epoch
            cfg = trainer.cfg
            self.say(f"{cfg.method} {cfg.data.name} epoch {row['epoch']}/{cfg.epochs}: "
                     f"{postfix(row)} ({row['seconds']:.1f} s)")

    def say(self, text: str) -> None:
        """A one-line notice on stderr, above the bar when there is one."""
        if self.main:
            (self.bar.write if self.bar is not None else print)(f"torchawp: {text}",
                                                                 file=sys.stderr)

    def on_fit_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class TensorBoard(Callback):
    """Every number of every epoch's row in ``run_dir/tb`` (rank 0 only); a resumed run drops
    the events logged after its checkpoint and writes them again."""

    def __init__(self, run_dir: Path, main: bool = True):
        self.run_dir, self.main, self.writer = Path(run_dir), main, None

    def on_fit_start(self, trainer) -> None:
        if self.main:
            from torch.utils.tensorboard import SummaryWriter  # heavy: imported on use

            self.writer = SummaryWriter(str(self.run_dir / "tb"),
                                        purge_step=trainer.start_epoch + 1)

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.writer.add_scalar(key, value, epoch + 1)

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class Estimate(Callback):
    """The expected time of the run, from the first evaluated epoch of the process (its train
    and evaluation seconds, the first step's one-time cost kept out): kept in that row
    (``estimated_seconds``) and said when the run is long (:func:`~.estimate.announce`)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.result: Optional[dict] = None
        self.first_step_seconds: Optional[float] = None
        self._started = None

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self._started = trainer.clock()

    def on_step_end(self, trainer, step: int) -> None:
        if self.first_step_seconds is None and self._started is not None:  # one-time costs
            self.first_step_seconds = trainer.clock() - self._started

    def on_metrics(self, trainer, epoch: int, row: dict) -> None:
        if self.result is None and "eval_seconds" in row:
            self.result = announce(trainer.cfg, trainer.splits, epoch, row,
                                   self.first_step_seconds, trainer.steps_per_epoch,
                                   self.progress.say if self.progress.main else None)


class FlatnessProbe(Callback):
    """``eval.flatness_every``: Stutz et al.'s average-case flatness of the robust loss
    (``flatness_avg``) every N epochs and at the last one."""

    def __init__(self, every: int, samples: int, seed: int):
        self.every, self.samples, self.seed = every, samples, seed

    @classmethod
    def from_config(cls, trainer) -> Optional["FlatnessProbe"]:
        e = trainer.cfg.eval
        return cls(e.flatness_every, e.flatness_samples, trainer.cfg.seed) if e.flatness_every \
            else None

    def on_metrics(self, trainer, epoch: int, row: dict) -> None:
        if (epoch + 1) % self.every == 0 or epoch == trainer.cfg.epochs - 1:
            row["flatness_avg"] = probe_flatness(
                trainer.net, trainer.splits,
                trainer.eval_attack if trainer.cfg.eval.steps > 0 else None, self.samples,
                self.seed)
