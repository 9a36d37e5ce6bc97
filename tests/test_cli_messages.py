"""What the commands say: AWP settings that would make AWP a no-op refused and the ones that run
shown, parser and YAML errors as one complete sentence, tables and reports that stay readable,
help and version."""

import stat

import pytest
import yaml

import torchawp
from torchawp.cli import main

from .helpers import copy_run
from .test_cli import TINY, run_cli


# ------------------------------------------------------------------ AWP that never switches on
@pytest.mark.parametrize("args,message", [
    (["--method", "trades-awp", "--epochs", "3"],
     "awp.warmup_epochs 10 leaves no epoch of a 3-epoch run with AWP, so trades-awp would train "
     "as trades"),
    (["--awp.gamma", "0"], "awp.gamma 0 turns AWP off, so at-awp would train as at"),
])
def test_awp_settings_that_make_awp_a_no_op_are_refused(capsys, args, message):
    code, _, err = run_cli(capsys, "train", *args, "--dry-run")
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("args,gamma,warmup", [
    (["--method", "trades-awp"], 0.01, 10),  # the digits recipe sets them for every method
    (["--config", "cifar10_prn18_trades_awp"], 0.005, 9),  # the script counts epochs from 1
    (["--config", "cifar10_prn18_at_awp"], 0.01, 0),
    (["--dataset", "cifar10", "--method", "mart-awp"], 0.005, 10),  # the method's defaults
])
def test_dry_run_shows_the_awp_settings_that_will_run(capsys, args, gamma, warmup):
    code, out, err = run_cli(capsys, "train", *args, "--dry-run")
    cfg = yaml.safe_load(out)
    # the resolved config is printed before the checks (CIFAR-10's files are not here)
    assert code == (0 if cfg["data"]["name"] == "digits" else 2), err
    assert (cfg["awp"]["gamma"], cfg["awp"]["warmup_epochs"]) == (gamma, warmup)
    assert cfg["attack"]["bn_mode"] in ("train", "eval", "train-update")


def test_final_table_header_names_the_awp_settings(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--out-dir", str(tmp_path / "r"), *TINY,
                             "--awp.warmup_epochs", "1")
    assert code == 0, err
    assert "at-awp on digits (small_cnn), linf eps 0.2, AWP gamma 0.01 on epochs 2-2" in out


def test_files_of_a_run_share_one_permission_mode(two_epochs):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in two_epochs.run_dir.iterdir()
             if p.is_file()}
    assert len(set(modes.values())) == 1, modes


def test_eval_report_has_no_links_that_break_inside_a_run_directory(tmp_path, capsys,
                                                                    two_epochs):
    run = copy_run(two_epochs.run_dir, tmp_path / "run")
    code, _, err = run_cli(capsys, "eval", str(run), "--which", "last", "--attacks", "pgd2",
                           "--n-examples", "30")
    assert code == 0, err
    md = (run / "eval.md").read_text()
    assert "](docs/" not in md and "| steps | " in md and "does not converge" in md
    assert "torchawp: last:" in err and "pgd2:" in err  # progress lines on stderr


def test_flatness_table_columns_stay_apart(tmp_path, capsys, two_epochs):
    long = copy_run(two_epochs.run_dir, tmp_path / ("a_run_directory_with_a_long_name" * 2))
    code, out, err = run_cli(capsys, "flatness", str(long), "--n-examples", "20", "--samples",
                             "1", "--passes", "1", "--restarts", "1", "--steps", "1", "--out",
                             str(tmp_path / "fl"))
    assert code == 0, err
    # the options' former names still work, each with a one-line notice
    assert "--restarts is now --worst-restarts" in err and "--out is now --out-dir" in err
    row = next(line for line in out.splitlines() if line.startswith("a_run"))
    assert len(row.split()) == 5  # checkpoint, split, loss, average, worst


# ------------------------------------------------------------------ error text and help
@pytest.mark.parametrize("args,message", [
    (["--optim.lr", "abc"], "--optim.lr must be a number; got 'abc'"),
    (["--epochs", "1.5"], "--epochs must be an integer; got '1.5'"),
    (["--optim.milestones", "3", "x"],
     "--optim.milestones must be a list of values, each an integer; got '3 x'"),
    (["--no-such"], "unknown option --no-such"),
    (["--epochs"], "--epochs needs a value: an integer"),
    (["--progress=maybe"], "--progress is a flag and takes no value"),
    (["--data.dataset", "x"], "unknown option --data.dataset; did you mean --dataset?"),
    (["--batch-size", "0"], "did you mean --data.batch-size?"),
    (["--resume"], "--resume needs the run to continue"),
])
def test_parser_errors_are_complete_sentences(capsys, args, message):
    code, _, err = run_cli(capsys, "train", *args, "--dry-run")
    assert code == 2 and err.count("\n") == 1 and message in err


def test_yaml_errors_name_the_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: at\nawp:\n  gamma: [0.1\n")
    code, _, err = run_cli(capsys, "train", "--config", str(bad), "--dry-run")
    assert code == 2 and err.count("\n") == 1
    assert f"{bad}, line 4, column 1: not valid YAML" in err
    bad.write_text("awp:\n  gamma: abc\n")
    code, _, err = run_cli(capsys, "train", "--config", str(bad), "--dry-run")
    assert code == 2 and f"awp.gamma must be a number or null; got 'abc' in {bad}" in err
    bad.write_text("awp:\n  gama: 0.01\n")
    code, _, err = run_cli(capsys, "train", "--config", str(bad), "--dry-run")
    assert code == 2 and f"unknown key awp.gama in {bad}; did you mean 'gamma'?" in err


def test_help_and_version_are_written_for_users(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "usage: torchawp COMMAND" in out and "``" not in out
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"torchawp {torchawp.__version__}"
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "(default: 30)" in out and "'digits' recipe" in out  # the values that run
    assert "standard" in out.split("--method")[1][:200] and "``" not in out


def test_options_are_read_in_either_spelling_in_every_command(capsys, two_epochs):
    """``--n_examples`` is ``--n-examples``, as ``train`` reads ``--out_dir`` as ``--out-dir``:
    the refusal names the option's value, not an unknown option."""
    code, _, err = run_cli(capsys, "eval", str(two_epochs.run_dir), "--n_examples", "0")
    assert code == 2 and "--n-examples must be an integer >= 1 (got 0)" in err
    assert "unknown option" not in err



# ------------------------------------------------------------------ output paths
@pytest.mark.parametrize("command, message", [
    (["train", "--out-dir", "{file}", *TINY], "run directory {file} cannot be made: {file} is "
                                              "a file"),
    (["train", "--out-dir", "{file}/run", *TINY], "cannot be made: {file} is a file"),
    (["eval", "{run}", "--out-dir", "{file}", "--attacks", "pgd2"], "{file} is a file"),
    (["flatness", "{run}", "--out-dir", "{file}"], "--out-dir {file} cannot be made"),
    (["export", "{run}", "--out", "{dir}"], "--out {dir} is a directory"),
    (["export", "{run}", "--out", "{file}"], "{file} exists; pass --overwrite"),
    (["export", "{run}", "--robustbench", "Mine", "--out", "{dir}/rb"],
     "so --out {dir}/rb would be ignored"),
    (["pseudo-label", "{run}", "--out", "{file}"], "{file} exists; pass --overwrite"),
    (["pseudo-label", "{run}", "--out", "{file}/x.npz"], "{file} is a file"),
])
def test_an_output_path_that_cannot_or_must_not_be_written_is_one_line(
        tmp_path, capsys, two_epochs, command, message):
    places = {"file": tmp_path / "taken.pt", "dir": tmp_path / "folder",
              "run": two_epochs.run_dir}
    places["file"].write_bytes(b"keep me")
    places["dir"].mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = run_cli(capsys, *[a.format(**places) if a not in TINY else a
                                     for a in command])
    assert code == 2 and err.count("\n") == 1, err
    assert message.format(**places) in err
    assert places["file"].read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing made or lost


def test_export_overwrites_only_when_asked(tmp_path, capsys, two_epochs):
    out = tmp_path / "model.pt"
    assert run_cli(capsys, "export", str(two_epochs.run_dir), "--out", str(out))[0] == 0
    first = out.read_bytes()
    code, _, _ = run_cli(capsys, "export", str(two_epochs.run_dir), "--which", "last", "--out",
                         str(out), "--overwrite")
    assert code == 0 and out.read_bytes() != first
