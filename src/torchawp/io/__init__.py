"""What goes in and out of files: ``checkpoint.py`` (safetensors weights and training state,
atomic and checksummed, safe loading), ``paths.py`` (directory locks, ``mkdir`` as one line),
``robustbench.py`` (zoo checkpoints in, RobustBench's layout and cards out), ``export.py`` (a
state dict with a card, a ``torch.export`` program)."""
