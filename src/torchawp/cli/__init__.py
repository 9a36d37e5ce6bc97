"""torchawp: adversarial training with Adversarial Weight Perturbation (AWP; Wu, Xia & Wang,
NeurIPS 2020), and the evaluations the field reports.

usage: torchawp COMMAND [options]      (torchawp COMMAND --help for a command's options)

commands:
  train          train AT, TRADES, MART or RST, each with or without AWP; with no options,
                 AT-AWP on the offline digits dataset (about a minute on 2 CPU cores)
  eval           robustness of a run's best and last checkpoints: clean, FGSM, PGD-20/100,
                 CW, AutoAttack, per-example worst case, robust generalization gap, checks
  landscape      robust weight loss landscapes along filter-normalised directions
  flatness       average- and worst-case flatness of the robust loss (Stutz et al.)
  backdoor       inject a backdoor into a trained model's weights inside a small box
                 (Garg et al.) and report its success rate and cost
  transfer       adversarial examples crafted on one model, measured on another: the regional
                 attack (Ozbulak et al.) per pixel region, or pgd20, fgsm ...
  concepts       concept activation vectors at a layer: TCAV beside Soni et al.'s A-CAV and
                 Gram-Schmidt random sets, and their spread over random sets
  pseudo-label   label unlabelled images with a standard model, for RST
  data           image stores: import millions of images once, train from disk; info, verify
  export         a trained model as a state dict with a JSON card, or a torch.export program
  list           methods, models, datasets, attacks and shipped recipes

examples:
  torchawp train                                      # the default job
  torchawp train --method trades-awp --epochs 40      # another method, same recipe
  torchawp train --config cifar10_prn18_at_awp --data-dir ~/data
  torchawp train --resume runs/RUN                    # continue a stopped run
  torchawp eval runs/RUN --autoattack
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
import warnings
from typing import Optional, Sequence

from ..errors import TorchAWPError

# command -> (module of this package, function); a command's module is imported when it runs,
# so `torchawp --help`, `--version` and a mistyped command answer without loading torch
COMMANDS = {"train": ("train", "cmd_train"), "eval": ("evaluate", "cmd_eval"),
            "landscape": ("weights", "cmd_landscape"), "flatness": ("weights", "cmd_flatness"),
            "backdoor": ("backdoor", "cmd_backdoor"),
            "transfer": ("transfer", "cmd_transfer"),
            "concepts": ("concepts", "cmd_concepts"),
            "pseudo-label": ("evaluate", "cmd_pseudo_label"), "export": ("export", "cmd_export"),
            "data": ("data", "cmd_data"),
            "list": ("listing", "cmd_list")}


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"torchawp: warning: {message}", file=file or sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"torchawp {importlib.metadata.version('torchawp')}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        hint = difflib.get_close_matches(command, list(COMMANDS), n=1)
        print(f"torchawp: error: unknown command {command!r}"
              + (f"; did you mean {hint[0]!r}?" if hint else f" ({', '.join(COMMANDS)})"),
              file=sys.stderr)
        return 2
    module, function = COMMANDS[command]
    shown, warnings.showwarning = warnings.showwarning, _one_line_warning  # notices: one line
    try:
        run = getattr(importlib.import_module(f"{__name__}.{module}"), function)
        return run(rest)
    except TorchAWPError as exc:
        code = getattr(exc, "exit_code", 2)
        here = os.path.join(os.getcwd(), "")  # paths below here are shown relative
        print(f"torchawp: {'stopped' if code == 130 else 'error'}: "
              f"{str(exc).replace(here, '') if here != os.sep else exc}", file=sys.stderr)
        return code
    except (FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # the commands check their paths first; this is the net under what they could not
        print(f"torchawp: error: cannot use {exc.filename}: {exc.strerror}; check the path",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("torchawp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `torchawp train --help | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = shown
