"""How long a run will take, said before it is long: the evaluation plan of a config (which
epochs evaluate which splits, how many images), and the expected time of the whole run from the
first epoch's measured step and per-image evaluation times.

Evaluation is priced per image (an attacked image costs the same on every split), so the first
evaluation prices all the others, whichever splits they measure.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..evaluation.accuracy import evaluate

SAY_ABOVE_SECONDS = 120  # runs expected to take longer get the estimate line


def eval_images(cfg, splits, which) -> int:
    """Images one per-epoch evaluation of ``which`` splits attacks (``eval.train_examples`` of
    train, up to ``eval.max_examples`` of val and test)."""
    limits = {"train": cfg.eval.train_examples, "val": cfg.eval.max_examples,
              "test": cfg.eval.max_examples}
    total = 0
    for split in which:
        n = len(getattr(splits, split))
        total += n if limits[split] is None else min(n, limits[split])
    return total


def evaluation_plan(cfg, splits, first_epoch: int = 0) -> list[int]:
    """Images evaluated after each epoch from ``first_epoch`` (0-based) on, the final best
    evaluation included (once, when curves are not measured every epoch; it runs unless the
    best epoch measured its curves, so the plan is an upper bound), the weight average's
    evaluations too."""
    e, copies = cfg.eval, 2 if cfg.ema else 1
    images = []
    for epoch in range(first_epoch, cfg.epochs):
        last = epoch == cfg.epochs - 1
        if (epoch + 1) % e.every == 0 or last:
            curves = (epoch + 1) % e.curve_every == 0 or last
            images.append(copies * eval_images(cfg, splits, ("train", "val", "test") if curves
                                               else ("val",)))
        else:
            images.append(0)
    if e.curve_every > 1 and cfg.eval.steps > 0:  # the best epoch is measured on train + test
        images.append(copies * eval_images(cfg, splits, ("train", "test")))
    return images


def estimate(cfg, splits, epoch: int, train_seconds: float, eval_seconds: float,
             eval_done: int, steady_epoch_seconds: Optional[float] = None) -> Optional[dict]:
    """The expected seconds of the run from the start of epoch ``epoch`` (0-based, just
    trained in ``train_seconds`` and evaluated in ``eval_seconds`` on ``eval_done`` images;
    later epochs train in ``steady_epoch_seconds``, default the same): training, evaluation,
    total. None without an evaluation to price."""
    if not eval_done:
        return None
    steady = train_seconds if steady_epoch_seconds is None else steady_epoch_seconds
    train = train_seconds + steady * (cfg.epochs - epoch - 1)
    evaluation = eval_seconds / eval_done * sum(evaluation_plan(cfg, splits, epoch))
    return {"train_seconds": train, "eval_seconds": evaluation,
            "total_seconds": train + evaluation}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def estimate_line(est: dict, first_epoch: int, epochs: int, done_seconds: float = 0.0) -> str:
    """One line: the expected time of epochs ``first_epoch + 1`` to ``epochs`` (what ``est``
    covers) and how it splits, with what is left once ``done_seconds`` of it are spent; when
    evaluation is most of it, the options that make it cheaper."""
    total, evaluation = est["total_seconds"], est["eval_seconds"]
    span = (f"the whole run ({epochs} epochs)" if first_epoch == 0
            else f"epochs {first_epoch + 1}-{epochs}")
    text = (f"expected time of {span}: {_minutes(total)} (training "
            f"{_minutes(est['train_seconds'])}, evaluation {_minutes(evaluation)})")
    if done_seconds:
        text += f", about {_minutes(max(total - done_seconds, 0.0))} to go"
    if evaluation > 0.5 * total:
        text += ("; evaluation is most of it: --eval.curve-every N measures train and test "
                 "every N epochs only, --n-examples and --eval.train-examples evaluate "
                 "fewer images, --eval.every N validates every N epochs")
    return text


def plan_line(cfg, splits, steps_per_epoch: int) -> str:
    """What ``--dry-run`` can say without running: steps, evaluations and images."""
    plan = evaluation_plan(cfg, splits)
    evaluations = sum(1 for n in plan if n)
    from ..methods import get_method

    attack = ("no attack" if get_method(cfg.method)[0].attack_loss == "none"
              else f"PGD-{cfg.attack.steps} each")
    return (f"plan: {cfg.epochs} epochs x {steps_per_epoch} steps = "
            f"{cfg.epochs * steps_per_epoch} training steps ({attack}); "
            f"{evaluations} evaluations attacking {sum(plan):,} images in all (PGD-"
            f"{cfg.eval.steps})")


def announce(cfg, splits, epoch: int, row: dict, first_step_seconds: Optional[float],
             steps_per_epoch: int, say) -> Optional[dict]:
    """After the first evaluated epoch of a process (0-based ``epoch``, its ``row`` holding
    ``train_seconds`` and ``eval_seconds``): the estimate of the run from that epoch on, later
    epochs priced without the first step's one-time costs; said with ``say`` when longer than
    :data:`SAY_ABOVE_SECONDS` (``say`` None: silent), and kept in the row
    (``estimated_seconds``)."""
    steady = None
    if first_step_seconds is not None and steps_per_epoch > 1:
        steady = ((row["train_seconds"] - first_step_seconds) * steps_per_epoch
                  / (steps_per_epoch - 1))
    done = evaluation_plan(cfg, splits, epoch)[0]
    est = estimate(cfg, splits, epoch, row["train_seconds"], row["eval_seconds"], done, steady)
    if est is not None:
        row["estimated_seconds"] = est["total_seconds"]
        if say is not None and est["total_seconds"] > SAY_ABOVE_SECONDS:
            say(estimate_line(est, epoch, cfg.epochs,
                              row["train_seconds"] + row["eval_seconds"]))
    return est


def measure(trainer, timed_steps: int = 3) -> dict:
    """The whole run's expected time from a few timed steps of ``trainer`` (which they train:
    use a throw-away one) and one timed evaluation batch of the validation split."""
    cfg, clock = trainer.cfg, trainer.clock
    wp = trainer.perturbation
    perturbed = [wp is not None and wp.applies_in(e) for e in range(cfg.epochs)]
    batches = iter(trainer.train_loader.batches())
    step_seconds = {}
    for perturb in sorted(set(perturbed)):
        seconds = []
        for _ in range(timed_steps + (0 if step_seconds else 1)):
            _, x, y = next(batches, (None, None, None))
            if x is None:  # a tiny set: start its epoch again
                batches = iter(trainer.train_loader.batches())
                _, x, y = next(batches)
            start = clock()
            trainer.train_step(x, y, perturb)
            seconds.append(clock() - start)
        step_seconds[perturb] = sum(seconds[-timed_steps:]) / timed_steps
    train = sum(step_seconds[on] for on in perturbed) * trainer.steps_per_epoch
    data = trainer.splits.val if len(trainer.splits.val) else trainer.splits.test
    images = min(len(data), 128)
    attacks = [("pgd", trainer.eval_attack)] if cfg.eval.steps > 0 else []
    start = clock()
    evaluate(trainer.net, data, attacks, max_examples=images, device=trainer.device,
             generator=torch.Generator(trainer.device).manual_seed(0))
    evaluation = (clock() - start) / max(images, 1) * sum(evaluation_plan(cfg, trainer.splits))
    return {"train_seconds": train, "eval_seconds": evaluation,
            "total_seconds": train + evaluation}
