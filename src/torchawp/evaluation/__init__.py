"""Evaluation, as the field reports it: ``accuracy.py`` (clean and robust accuracy, the per-epoch
evaluation of a run and per-example correctness), ``suite.py`` (``torchawp eval``: a checkpoint
opened with its data and threat model, the cascade of attacks, the gap), ``checks.py``
(gradient-masking checks), ``report.py`` (tables, ``eval.json``, ``eval.md``)."""
