"""Render docs/cli.md, the command-line reference, from the parsers themselves: each command's
``--help`` as the installed torchawp prints it, at a fixed width. The reference cannot drift:
``tests/test_docs_site.py`` checks that the committed page equals this rendering.

    python docs/gen_cli.py            # rewrite docs/cli.md
    python docs/gen_cli.py --check    # exit 1 if docs/cli.md is stale
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

PAGE = Path(__file__).with_name("cli.md")
WIDTH = "100"
# every command, and the data command's subcommands, in the order `torchawp --help` lists them
COMMANDS = [["train"], ["eval"], ["landscape"], ["flatness"], ["backdoor"], ["transfer"],
            ["concepts"], ["pseudo-label"], ["data", "import"], ["data", "info"],
            ["data", "verify"], ["export"], ["list"]]


def help_text(command: list[str]) -> str:
    """What ``torchawp COMMAND --help`` prints."""
    from torchawp.cli import main

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # tyro wraps at $COLUMNS
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([*command, "--help"])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip().splitlines())


def versions() -> str:
    """What the help text depends on besides torchawp: tyro lays it out."""
    import importlib.metadata
    import platform

    return (f"Python {'.'.join(platform.python_version_tuple()[:2])}, tyro "
            f"{importlib.metadata.version('tyro')}")


def render() -> str:
    parts = ["# Command-line reference", "",
             "Generated from the parsers by `python docs/gen_cli.py` (" + versions() + "); every "
             "command's `--help`, verbatim. `torchawp --help` lists the commands.", "",
             "Conventions: every command's options are a dataclass read by tyro. Options are "
             "spelled with hyphens, and the underscore spelling is read the same way in every "
             "command (`--n_examples` is `--n-examples`); `train`'s options are the config's "
             "fields, `--group.field`, except the concepts every command shares, spelled as "
             "everywhere: `--dataset`, `--data-dir`, `--eps`, `--norm`, `--step-size`, "
             "`--n-examples`, `--attack-restarts`. A "
             "yes/no option is a flag pair (`--progress` / `--no-progress`); None is spelled "
             "`None`; a list is given as words (`--optim.milestones 100 150`) or as one YAML "
             "list (`[100, 150]`), a mapping as YAML (`--model-args '{width: 16}'`). "
             "`--out-dir` names a directory and `--out` a file; `--which` picks a run's "
             "checkpoints with the same words everywhere (`all`, the default where several are "
             "measured; `both`: best and last; `ema`: both averages; or one of them, `best` "
             "by default where one is read); `--n-examples` counts the images measured; `--data-dir` is where the "
             "dataset's files are and `--dataset` names one; `--steps` and `--attack-restarts` "
             "are the attack's steps and random restarts. A spelling of the last release "
             "(an option renamed for one name per concept, `--progress false`, `null`) keeps "
             "working for one release, with a one-line notice; the help lists a renamed "
             "option's former name first (`--attack.eps FLOAT, --eps FLOAT`), then its name.", ""]
    for command in COMMANDS:
        parts += [f"## torchawp {' '.join(command)}", "", "```text", help_text(command), "```", ""]
    return "\n".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        stale = not PAGE.exists() or PAGE.read_text() != text
        print(f"{PAGE} is {'stale: run python docs/gen_cli.py' if stale else 'up to date'}")
        return int(stale)
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
