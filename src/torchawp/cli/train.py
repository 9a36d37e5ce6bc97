"""``torchawp train``: the config's fields as options (read by :func:`~.common.parse`),
recipes, resume."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Annotated, Optional

import tyro
import yaml

from ..config import TrainConfig
from ..config.recipes import from_dict, load_recipe, merged_recipes, starting_recipe, to_dict
from ..config.resolve import validate
from ..errors import ConfigError
from ..training.log import describe, summary_table
from ..training.run import dry_run as check_and_price, train
from ..training.rundir import read_run_config
from .common import BOOL_WORDS, parse


@dataclasses.dataclass
class TrainOptions(TrainConfig):
    """Adversarial training with or without AWP. Every option below is a field of the run's
    config and can also be set in a YAML recipe (--config). With no --config, a run on digits,
    Fashion-MNIST or MNIST starts from that dataset's shipped recipe, any other from the
    paper's CIFAR protocol; --dry-run prints every value that would run.

    Args:
        resume: continue the run in this directory from its newest checkpoint, as it was
            configured in its own config.yaml; only epochs may grow. (The config's resume, a
            bool, is set from it.)
        config: YAML recipe, a path or the name of a shipped recipe (torchawp list); it fills
            the fields it names, the paper's CIFAR protocol the others, and the command line
            wins over both. Repeated, the recipes are merged in order (a later one wins).
        dry_run: print the resolved config (what would run) and exit.
    """

    resume: Optional[str] = None
    config: Annotated[list[str], tyro.conf.UseAppendAction] = dataclasses.field(
        default_factory=list)
    dry_run: bool = False


# the help's first paragraph: the docstring's, as one line
ABOUT = " ".join(TrainOptions.__doc__.split("\n\n")[0].split())

def _base(opts: TrainOptions, run_dir: Optional[str]) -> tuple[TrainConfig, str]:
    """The config the command line's options override, and what it is: the resumed run's own
    config.yaml, the --config recipe, the dataset's shipped recipe, or the paper's protocol."""
    if run_dir is not None:
        if opts.config:
            raise ConfigError("--resume continues a run with its own config.yaml, so --config "
                              "cannot be given too; drop --config")
        saved = Path(run_dir) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume: {run_dir} holds no torchawp run (no config.yaml); "
                              f"check the path, or drop --resume to start a new run there")
        with warnings.catch_warnings():  # the trainer reads it again and says each notice
            warnings.simplefilter("ignore", FutureWarning)
            return (from_dict(read_run_config(saved), source=str(saved)),
                    f"the run's own {saved}")
    if opts.config:
        return (merged_recipes(opts.config),
                f"the recipe{'s' * (len(opts.config) > 1)} {' + '.join(opts.config)}")
    default = starting_recipe(opts.data.name, opts.method)
    if default is None:
        return TrainConfig(), "the paper's CIFAR protocol"
    return load_recipe(default), f"the shipped '{default}' recipe"


def _run_dir(opts: TrainOptions) -> Optional[str]:
    """The run ``--resume`` continues: its directory, or (the spelling a release ago)
    ``--resume true`` with ``--out-dir``; None for a new run."""
    resume = opts.resume
    word = BOOL_WORDS.get((resume or "").lower())
    if resume is None or word is False:
        return None
    if word is True:
        if opts.out_dir is None:
            raise ConfigError("--resume needs the run to continue; pass its directory: "
                              "torchawp train --resume RUN_DIR")
        warnings.warn("--resume with --out-dir RUN is now --resume RUN; the old spelling is "
                      "read until the next release", FutureWarning)
        return opts.out_dir
    if opts.out_dir is not None and Path(resume) != Path(opts.out_dir):
        raise ConfigError(f"--resume {resume} and --out-dir {opts.out_dir} name different "
                          f"runs; give the run to continue once: torchawp train --resume "
                          f"RUN_DIR")
    return resume


def _bare_resume(argv: list[str]) -> list[str]:
    """A bare ``--resume`` (with ``--out-dir``, the spelling a release ago) as ``--resume
    true``, which :func:`_run_dir` reads with a notice."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--resume" and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out.append("true")
    return out


def _as_options(cfg: TrainConfig) -> TrainOptions:
    """``cfg`` as the command's defaults."""
    return TrainOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)
                           if f.name != "resume"})


def train_options(argv: list[str]) -> tuple[TrainConfig, bool]:
    """The run ``torchawp train ARGV`` configures (not yet validated), and whether it is a dry
    run. The command line is read twice: once to find the config it starts from (--resume,
    --config, or the dataset's recipe; digits unless --dataset says otherwise), then over
    that config's values."""
    argv = _bare_resume(list(argv))
    helped = [a for a in argv if a not in ("-h", "--help")]
    try:
        first = parse(TrainOptions, helped, "torchawp train", default=_as_options(load_recipe()),
                      check=False)
        run_dir = _run_dir(first)
        base, source = _base(first, run_dir)
    except ConfigError:
        if helped == argv:
            raise
        run_dir, base, source = None, load_recipe(), "the shipped 'digits' recipe"  # --help
    with warnings.catch_warnings():  # the first reading said each notice already
        warnings.simplefilter("ignore", FutureWarning)
        opts = parse(TrainOptions, argv, "torchawp train", default=_as_options(base),
                     description=f"{ABOUT} The defaults shown are those of {source}.",
                     check=False)  # validate checks the config, in the config's names
    values = {f.name: getattr(opts, f.name) for f in dataclasses.fields(TrainConfig)}
    if run_dir is not None:
        values.update(out_dir=str(run_dir), resume=True)
    else:
        values["resume"] = False
    return TrainConfig(**values), opts.dry_run


def cmd_train(argv: list[str]) -> int:
    cfg, dry_run = train_options(argv)
    if dry_run:  # the config first, then what the run needs, checked, and its time
        cfg = validate(cfg)
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="", flush=True)
        for line in check_and_price(cfg):
            print(f"# {line}")
        return 0
    result = train(cfg)
    _leave_process_group()  # on success only: a failed rank exits and torchrun stops the rest
    if int(os.environ.get("RANK", 0)) == 0:
        cfg = result.config
        print(f"\n{describe(cfg)}; PGD-{cfg.eval.steps} (eval mode); run: {result.run_dir}")
        print(summary_table(result))
    return 0


def _leave_process_group() -> None:
    """Under torchrun: wait for every rank, then close the process group cleanly."""
    import torch.distributed as dist  # only after a run, which has loaded torch already

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
