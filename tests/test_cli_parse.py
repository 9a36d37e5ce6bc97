"""One way to read a command line: every command's options are a dataclass read by tyro,
spelled with hyphens, the underscore spelling read the same way everywhere, and whatever is
refused said in one line by the same table of options that tyro builds its parser from."""

import re

import pytest

from torchawp.cli import main
from torchawp.cli.backdoor import BackdoorOptions
from torchawp.cli.common import _options, parse
from torchawp.cli.concepts import ConceptsOptions
from torchawp.cli.data import ImportOptions, InfoOptions, VerifyOptions
from torchawp.cli.evaluate import EvalOptions, PseudoLabelOptions
from torchawp.cli.export import ExportOptions
from torchawp.cli.listing import ListOptions
from torchawp.cli.train import TrainOptions
from torchawp.cli.transfer import TransferOptions
from torchawp.cli.weights import FlatnessOptions, LandscapeOptions

from .test_cli import run_cli

COMMANDS = {("train",): TrainOptions, ("eval",): EvalOptions,
            ("landscape",): LandscapeOptions, ("flatness",): FlatnessOptions,
            ("backdoor",): BackdoorOptions, ("transfer",): TransferOptions,
            ("concepts",): ConceptsOptions, ("pseudo-label",): PseudoLabelOptions,
            ("data", "import"): ImportOptions, ("data", "info"): InfoOptions,
            ("data", "verify"): VerifyOptions, ("export",): ExportOptions,
            ("list",): ListOptions}


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_help_shows_hyphens_and_the_error_table_knows_every_option(capsys, command):
    """What ``--help`` lists (tyro's parser) is exactly the table :func:`explain` reads."""
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    shown = set()
    for line in out.splitlines():
        body = line[1:] if line.startswith("│") else line  # boxes, where tyro draws them
        if re.match(r"^ {1,3}--", body):  # an option's first line, not a wrapped help line
            shown.update(re.findall(r"--[a-z0-9][a-z0-9._-]*", body.strip().split("  ")[0]))
    shown.discard("--help")
    assert shown == set(_options(COMMANDS[command]))
    assert not [name for name in shown if "_" in name]


@pytest.mark.parametrize("args,message", [
    (["train", "--data.batch_size", "x"], "--data.batch-size must be an integer; got 'x'"),
    (["train", "--awp.warmup_epochs", "-1", "--dry-run"], "awp.warmup_epochs must be"),
    (["eval", "--n_examples", "0"], "--n-examples must be an integer >= 1 (got 0)"),
    (["landscape", "--n_examples", "0"], "--n-examples must be an integer >= 1 (got 0)"),
    (["flatness", "--worst_restarts", "0"], "--worst-restarts must be an integer >= 1 (got 0)"),
    (["backdoor", "x", "--batch_size", "0"], "--batch-size must be an integer >= 1 (got 0)"),
    (["transfer", "a", "b", "--n_examples", "0"], "--n-examples must be an integer >= 1"),
    (["concepts", "x", "--layer", "l", "--concept", "c", "--class", "1", "--n_concept", "2"],
     "--n-concept must be an integer >= 3 (got 2)"),
    (["pseudo-label", "x", "--out", "o.npz", "--min_confidence", "2"],
     "--min-confidence must be a number >= 0 and <= 1 (got 2.0)"),
    (["data", "import", "s.npz", "--out_dir", "o", "--num_classes", "0"],
     "--num-classes must be an integer >= 1 (got 0)"),
    (["export", "x", "--model_dir"], "--model-dir needs a value: text"),
])
def test_every_command_reads_the_underscore_spelling_as_the_hyphenated_one(capsys, args,
                                                                           message):
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert "unknown option" not in err


@pytest.mark.parametrize("args,message", [
    (["transfer", "a"], "torchawp transfer needs TARGET"),
    (["export", "a", "b"], "unexpected argument 'b'"),
    (["eval", "--which"], "--which needs a value: one of all, both, best"),
    (["eval", "--which", "middle"], "--which must be one of all, both, best, last"),
    (["eval", "--autoattack=yes", "--autoattack=maybe"],
     "--autoattack is a flag and takes no value: give --autoattack or --no-autoattack"),
    (["list", "--verbose"], "unknown option --verbose (torchawp list --help lists them)"),
    (["landscape", "--point", "3"], "unknown option --point; did you mean --points?"),
    (["train", "--gamma", "0.1"], "unknown option --gamma; did you mean --awp.gamma?"),
    (["train", "--model-args", "[1, 2]"], "--model-args must be a mapping such as {width: 16}"),
    (["concepts", "x", "--layer", "l", "--concept", "c", "--class", "-1"],
     "--class must be an integer >= 0 (got -1)"),
    (["eval", "--restarts", "0"], "--attack-restarts must be an integer >= 1 (got 0)"),
    (["landscape", "--pgd-restarts", "0"], "--attack-restarts must be an integer >= 1"),
    (["train", "--optim.lr", "inf"], "optim.lr must be a finite number (got inf)"),
    (["train", "--awp.gamma", "nan"], "awp.gamma must be a finite number (got nan)"),
    (["train", "--optim.milestones", "--dry-run"], "--optim.milestones needs a value"),
    (["eval", "--normalize", "0.5"], "--normalize must be 2 values, each text or None"),
    (["data"], "torchawp data needs an action"),
    (["data", "imprt"], "torchawp data needs an action (got 'imprt')"),
])
def test_a_refused_command_line_is_one_line_naming_what_is_allowed(capsys, args, message):
    code, _, err = run_cli(capsys, *args)
    lines = [line for line in err.splitlines() if "warning" not in line]
    assert code == 2 and len(lines) == 1 and message in lines[0], err


def test_spellings_of_the_last_release_are_read_with_a_notice_each(capsys):
    code, out, err = run_cli(capsys, "train", "--progress", "false", "--channels_last=true",
                             "--data.train_subset", "null", "--probe-flatness-every", "2",
                             "--dry-run")
    assert code == 0, err
    assert "\nprogress: false\n" in out and "\nchannels_last: true\n" in out
    assert "  train_subset: null\n" in out and "  flatness_every: 2\n" in out
    for notice in ("--progress false is now --no-progress",
                   "--channels_last true is now --channels_last",
                   "--data.train_subset null is now --data.train_subset None",
                   "--probe-flatness-every is now --eval.flatness-every"):
        assert err.count(notice) == 1, err


def test_lists_and_mappings_read_as_words_or_as_yaml(capsys):
    for milestones in (["3", "5"], ["[3, 5]"]):
        code, out, err = run_cli(capsys, "train", "--optim.milestones", *milestones,
                                 "--model-args", "{width: 8}", "--dry-run")
        assert code == 0, err
        assert "  milestones:\n  - 3\n  - 5\n" in out and "model_args:\n  width: 8\n" in out


def test_the_command_line_wins_over_the_recipe_in_either_order(capsys):
    """A recipe fills the defaults; an option given before or after --config still wins."""
    for args in (["--epochs", "17", "--config", "digits"],
                 ["--config", "digits", "--epochs", "17"]):
        code, out, err = run_cli(capsys, "train", *args, "--dry-run")
        assert code == 0 and "\nepochs: 17\n" in out, err


def test_positional_lists_and_repeatable_options():
    args = parse(FlatnessOptions, ["r1", "r2", "--robustbench", "A", "--robustbench=B",
                                   "--kept_epochs", "1,2"], "torchawp flatness")
    assert (args.paths, args.robustbench, args.kept_epochs) == (["r1", "r2"], ["A", "B"], "1,2")
    assert parse(FlatnessOptions, [], "torchawp flatness").robustbench == []


@pytest.mark.parametrize("args", [["train", "--epochs", "x", "--help"],
                                  ["eval", "--autoattack=maybe", "-h"]])
def test_help_is_shown_even_beside_a_bad_option(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("usage: torchawp")


def test_a_recipe_is_type_checked_and_reads_5e_3_as_a_number(tmp_path, capsys):
    """YAML 1.1 reads ``5e-3`` as text; a number field takes it as the command line would.
    A value of the wrong type is one line naming the field, the value and the file."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {name: digits}\nawp: {gamma: 5e-3}\noptim: {weight_decay: 1e-4}\n")
    code, out, err = run_cli(capsys, "train", "--config", str(recipe), "--dry-run")
    assert code == 0, err
    assert "  gamma: 0.005\n" in out and "  weight_decay: 0.0001\n" in out
    recipe.write_text("optim: {momentum: nan}\n")  # text, not a number, in a recipe
    code, _, err = run_cli(capsys, "train", "--config", str(recipe), "--dry-run")
    assert code == 2 and "optim.momentum must be a number; got 'nan'" in err
    recipe.write_text("epochs: 1e3\n")
    code, _, err = run_cli(capsys, "train", "--config", str(recipe), "--dry-run")
    assert code == 2 and f"epochs must be an integer; got '1e3' in {recipe}" in err


def test_repeated_recipes_merge_in_order(tmp_path, capsys):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("data: {name: digits, batch_size: 64}\nepochs: 12\n"
                     "awp: {warmup_epochs: 2}\nmodel_args: {width: 8, batchnorm: true}\n")
    second.write_text("data: {val_size: 100}\nepochs: 14\nmodel_args: {width: 4}\n")
    code, out, err = run_cli(capsys, "train", "--config", str(first), "--config", str(second),
                             "--dry-run")
    assert code == 0, err
    assert "\nepochs: 14\n" in out and "  batch_size: 64\n" in out and "  val_size: 100\n" in out
    assert "model_args:\n  width: 4\nmethod_args" in out  # a mapping value is replaced whole
    second.write_text("data: {val_sise: 100}\n")
    code, _, err = run_cli(capsys, "train", "--config", str(first), "--config", str(second))
    assert code == 2 and f"unknown key data.val_sise in {second}" in err
