import json

import pytest
import yaml

from torchawp.cli import main

TINY = ["--model_args", "{width: 8, batchnorm: true, hidden: 32}", "--epochs", "2",
        "--no-progress", "--attack.steps", "2", "--eval.steps", "2",
        "--eval.train_examples", "50", "--n-examples", "100", "--data.train_subset", "300",
        "--optim.milestones", "[1]", "--awp.warmup_epochs", "0"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_eval_on_digits(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--out-dir", str(out_dir), *TINY)
    assert code == 0, err
    assert "best (epoch" in out and "last (epoch 2)" in out and "gap" in out
    code, out, err = run_cli(capsys, "eval", str(out_dir), "--attacks", "fgsm", "pgd20",
                             "--n-examples", "60", "--no-checks", "--per-attack")
    assert code == 0, err
    lines = out.splitlines()
    assert "60 images" in lines[0]
    assert lines[1].split() == ["checkpoint", "clean", "fgsm", "pgd20", "robust", "gap"]
    best, last = lines[2].split(), lines[3].split()
    assert best[0] == "best" and last[0] == "last"
    clean, fgsm, pgd, robust, gap = map(float, last[-5:])
    assert robust <= min(fgsm, pgd) <= clean
    # the default cascade: PGD-20 on every image, FGSM on what it left; the same worst case
    code, out, err = run_cli(capsys, "eval", str(out_dir), "--attacks", "fgsm", "pgd20",
                             "--n-examples", "60", "--no-checks")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split() == ["checkpoint", "clean", "pgd20", "robust", "gap"]
    assert list(map(float, lines[3].split()[-4:])) == [clean, pgd, robust, gap]
    assert "last: robust = worst case over fgsm, pgd20; cascade on the images still robust: " \
           "fgsm on" in out
    report = json.loads((out_dir / "eval.json").read_text())
    assert [r["which"] for r in report] == ["best", "last"]
    assert report[1]["gap"] == pytest.approx(report[1]["train_robust_acc"]
                                             - report[1]["accuracy"]["pgd20"])
    assert "torch" in report[0]["versions"]
    assert "| best (epoch" in (out_dir / "eval.md").read_text()


def test_recipe_by_name_with_command_line_override(capsys):
    code, out, err = run_cli(capsys, "train", "--config", "cifar10_prn18_at_awp", "--awp.gamma",
                             "0.005", "--dry-run")
    cfg = yaml.safe_load(out)
    assert code == 2 and "cifar10 not found" in err  # the config is shown, the data checked
    assert (cfg["model"], cfg["data"]["name"], cfg["awp"]["gamma"]) == (
        "preact_resnet18", "cifar10", 0.005)
    assert cfg["optim"]["milestones"] == [100, 150] and cfg["epochs"] == 200


def test_no_config_on_digits_uses_the_digits_recipe(capsys):
    code, out, _ = run_cli(capsys, "train", "--dry-run")
    cfg = yaml.safe_load(out)
    assert (cfg["data"]["name"], cfg["model"], cfg["attack"]["eps"]) == ("digits", "small_cnn", 0.2)
    assert cfg["data"]["extra_data"] is None


@pytest.mark.parametrize("method", ["rst", "rst-awp"])
def test_rst_on_digits_hides_labels_and_self_labels_them(capsys, method):
    code, out, _ = run_cli(capsys, "train", "--method", method, "--dry-run")
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["method"] == method
    assert (cfg["data"]["train_subset"], cfg["data"]["extra_data"]) == (150, "auto")


@pytest.mark.parametrize("args,message", [
    (["--awp.gamma", "-1"], "awp.gamma must be >= 0"),
    (["--eps", "8"], "attack.eps must be in [0, 1]"),
    (["--step-size", "-0.1"], "attack.step_size must be in [0, 1]"),
    (["--method", "trades-aw"], "did you mean 'trades-awp'"),
    (["--model", "preact_resnet"], "did you mean 'preact_resnet18'"),
    (["--dataset", "cifar-10"], "did you mean 'cifar10'"),
    (["--data.batch_size", "0"], "data.batch_size must be an integer >= 1"),
    (["--method", "rst", "--data.train_subset", "None"], "set data.train_subset"),
    (["--method", "rst", "--data.train_subset", "1003"], "left none; lower data.train_subset"),
    (["--awp.gama", "0.1"], "unknown option --awp.gama; did you mean --awp.gamma?"),
    (["--awp.gamma", "abc"], "--awp.gamma must be a number or None; got 'abc'"),
    (["--config", "cifar10_prn18_at_aw"], "did you mean 'cifar10_prn18_at_awp'"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent", "--epochs", "1"],
     "cifar10 not found"),
])
def test_bad_input_is_one_clear_line(capsys, args, message):
    code, out, err = run_cli(capsys, "train", *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("torchawp: error: ")
    assert message in err


@pytest.mark.parametrize("command,args,message", [
    # each of these used to run and print a number (the first N - 5 images for N = -5, an
    # attack with a negative eps, PGD-0 called an attack, a flatness with zero passes) or crash
    ("eval", ["--n-examples", "-5"], "--n-examples must be an integer >= 1 (got -5)"),
    ("eval", ["--n-examples", "0"], "--n-examples must be an integer >= 1"),
    ("eval", ["--attack-restarts", "0"], "--attack-restarts must be an integer >= 1"),
    ("eval", ["--eps", "-0.1"], "--eps must be a number > 0 (got -0.1)"),
    ("eval", ["--attacks", "fgsm", "pgd0"], "attack 'pgd0' takes no step; K must be >= 1"),
    ("eval", ["--attacks", "fgsm", "pgdx"], "unknown attack 'pgdx'"),
    ("landscape", ["--n-examples", "-5"], "--n-examples must be an integer >= 1"),
    ("landscape", ["--points", "1"], "--points must be an integer >= 2"),
    ("landscape", ["--radius", "nan"], "--radius must be a number > 0"),
    ("flatness", ["--passes", "0"], "--passes must be an integer >= 1"),
    ("flatness", ["--samples", "0"], "--samples must be an integer >= 1"),
    ("flatness", ["--steps", "-3"], "--steps must be an integer >= 0"),
    ("flatness", ["--xi-worst=-1e-3"], "--xi-worst must be a number > 0"),
    ("pseudo-label", ["--out", "x.npz", "--min-confidence", "1.5"],
     "--min-confidence must be a number >= 0 and <= 1"),
    ("flatness", ["--kept-epochs", "5,x"],
     "--kept-epochs must be all or a comma list of epochs >= 1"),
    # an unknown option was argparse's usage dump; now one line with the nearest option
    ("eval", ["--n-exampels", "5"], "unknown option --n-exampels; did you mean --n-examples?"),
    ("landscape", ["--zzz"], "unknown option --zzz (torchawp landscape --help lists them)"),
    ("pseudo-label", [], "torchawp pseudo-label needs --out"),
])
def test_bad_numbers_are_refused_before_anything_runs(tmp_path, capsys, command, args, message):
    missing = tmp_path / "run"  # never read: the arguments are refused first
    code, out, err = run_cli(capsys, command, str(missing), *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("torchawp: error: ") and message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device", ["foo", "meta", "cuda"])
def test_a_device_that_cannot_run_is_one_line_for_every_command(device):
    from torchawp.errors import ConfigError
    from torchawp.runtime import resolve_device

    if device == "cuda" and __import__("torch").cuda.is_available():
        pytest.skip("CUDA is here")
    with pytest.raises(ConfigError, match="device"):  # eval, landscape, ... call this one
        resolve_device(device)


def test_unknown_key_in_a_yaml_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("awp:\n  gama: 0.01\n")
    code, _, err = run_cli(capsys, "train", "--config", str(path), "--dry-run")
    assert code == 2 and err.count("\n") == 1 and "gama" in err


def test_eval_of_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", str(tmp_path))
    assert code == 2 and "no best.safetensors" in err and err.count("\n") == 1


def test_list_shows_the_registries(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for word in ("at-awp", "trades-awp", "preact_resnet18", "wrn34_10", "cifar10", "digits",
                 "cifar10_wrn34_trades_awp"):
        assert word in out
    from torchawp.perturbations import PERTURBATIONS
    for name in PERTURBATIONS:  # every weight perturbation, with its line
        assert f"\n  {name} " in out


def test_unknown_command(capsys):
    code, _, err = run_cli(capsys, "trian")
    assert code == 2 and "did you mean 'train'" in err


def test_landscape_and_flatness_commands(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert run_cli(capsys, "train", "--out-dir", str(out_dir), *TINY)[0] == 0
    code, out, err = run_cli(capsys, "landscape", str(out_dir), "--which", "both",
                             "--n-examples", "40", "--points", "5", "--directions", "2",
                             "--steps", "2", "--split", "both", "--out-dir", str(tmp_path / "ls"))
    assert code == 0, err
    assert (tmp_path / "ls" / "landscape_test.png").stat().st_size > 0
    assert (tmp_path / "ls" / "landscape_train.png").stat().st_size > 0
    lines = (tmp_path / "ls" / "landscape.csv").read_text().splitlines()
    assert lines[0] == "checkpoint,split,direction,a,loss,acc"
    assert len(lines) == 1 + 2 * 2 * 2 * 5  # checkpoints x splits x directions x points
    code, out, err = run_cli(capsys, "flatness", str(out_dir), "--n-examples", "40",
                             "--samples", "2", "--passes", "1", "--worst-restarts", "1", "--steps",
                             "2", "--attack-restarts", "2", "--out-dir", str(tmp_path / "fl"))
    assert code == 0, err
    result = json.loads((tmp_path / "fl" / "flatness.json").read_text())
    assert result[0]["average"] > 0 and result[0]["worst"] >= 0
    assert result[0]["pgd_restarts"] == 2


def test_train_spells_the_shared_concepts_as_every_command_and_reads_former_names(capsys):
    """One name per concept: train's dataset, data directory, eps, norm, PGD step, number of
    images and restarts are spelled as in eval; the nested names of the last release (and
    --probe-flatness-every) are read with one notice each."""
    new = ["--dataset", "digits", "--data-dir", "d", "--eps", "0.1", "--norm", "l2",
           "--step-size", "0.02", "--n-examples", "50", "--attack-restarts", "2",
           "--eval.flatness-every", "5"]
    old = ["--data.name", "digits", "--data.data_dir", "d", "--attack.eps", "0.1",
           "--attack.norm", "l2", "--attack.step-size", "0.02", "--eval.max-examples", "50",
           "--eval.restarts", "2", "--probe-flatness-every", "5"]
    outputs = []
    for args in (new, old):
        code, out, err = run_cli(capsys, "train", *args, "--dry-run")
        assert code == 0, err
        out = out.split("\n# ")[0]  # the resolved config, without the timing lines
        cfg = yaml.safe_load(out)
        assert (cfg["data"]["name"], cfg["attack"]["eps"], cfg["attack"]["norm"],
                cfg["attack"]["step_size"], cfg["eval"]["max_examples"],
                cfg["eval"]["restarts"], cfg["eval"]["flatness_every"]) == (
            "digits", 0.1, "l2", 0.02, 50, 2, 5)
        assert cfg["data"]["data_dir"].endswith("/d")
        outputs.append((out, err))
    (out_new, err_new), (out_old, err_old) = outputs
    assert out_new == out_old and "is now" not in err_new
    for former, name in zip(old[::2], new[::2]):
        assert err_old.count(f"{former} is now {name};") == 1, err_old


def test_eval_runs_once_when_the_last_epoch_is_the_best(tmp_path, capsys):
    import torchawp
    from tests.helpers import tiny_config

    cfg = tiny_config(tmp_path / "run", epochs=1)
    cfg.data.val_size = 0  # no validation split: best is last
    torchawp.train(cfg)
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "run"), "--attacks", "pgd5",
                             "--n-examples", "40", "--no-checks")
    assert code == 0, err
    assert "best and last are the same weights: evaluated once" in out
    assert sorted(p.name for p in (tmp_path / "run" / "eval_state").iterdir()) == ["best"]
    best, last = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert (best["which"], last["which"]) == ("best", "last")
    assert last["checkpoint"].endswith("last.safetensors")
    assert best["accuracy"] == last["accuracy"]
