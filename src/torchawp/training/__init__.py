"""Training, as a pipeline: ``run.py`` (``torchawp.train``: lock, prepare the data, run; the
``--dry-run`` checks) -> ``trainer.py`` (build the parts once from the resolved config, one step,
the epoch loop) with ``data.py`` (splits and the training loader), ``schedules.py`` (optimizer
and learning rate), ``ema.py`` (the weight average), ``estimate.py`` (the time a run takes),
``log.py`` (progress, TensorBoard, the final table), ``rundir.py`` (a run directory: config,
metrics, crash-safe checkpoints, the resume rule) and ``pseudo_label.py`` (RST's labels).

The parts it trains with live beside it: ``methods/``, ``perturbations/``, ``attacks/``,
``models/``, ``data/``."""
