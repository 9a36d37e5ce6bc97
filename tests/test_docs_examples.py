"""The copy-paste examples of docs/trainers.md run as they stand: every ```python block, in
order, in one namespace (a later block may use an earlier one's class), in a scratch
directory."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.S)


def test_the_trainer_examples_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers", reason="the hf extra is not installed")
    pytest.importorskip("lightning", reason="the lightning extra is not installed")
    monkeypatch.chdir(tmp_path)
    code = blocks("docs/trainers.md")
    assert len(code) == 4  # the plain loop, the Trainer, Lightning, manual optimisation
    namespace: dict = {}
    for block in code:
        exec(compile(block, "docs/trainers.md", "exec"), namespace)
    assert namespace["trainer"].global_step == 2  # Lightning's, the last trainer built
    assert namespace["awp"]._v is None  # the plain loop's v was removed
    assert "AWP perturbs" in capsys.readouterr().out
    assert os.path.isdir(tmp_path / "out")  # the Trainer's output directory
