"""The documentation holds together: the site builds strictly (a broken link or a page left out
fails), the README's links resolve, the README stays a front door, and the command-line
reference is what the parsers print."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site), "--config-file", str(root / "mkdocs.yml")],
                          capture_output=True, text=True, cwd=root)


def test_the_docs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    proc = _mkdocs_build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "cli" / "index.html").exists()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    pytest.importorskip("mkdocs")
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")  # the results links become copies
    shutil.copy(ROOT / "mkdocs.yml", copy)
    page = copy / "docs" / "training.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    proc = _mkdocs_build(copy, tmp_path / "site")
    assert proc.returncode != 0 and "no-such-page.md" in proc.stderr


def test_every_relative_link_in_the_readme_resolves():
    text = (ROOT / "README.md").read_text()
    links = [target.split("#")[0] for target in re.findall(r"\]\(([^)]+)\)", text)
             if not target.startswith(("http://", "https://", "#"))]
    assert links, "the README links to its docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing


def test_the_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_cli_reference_is_what_the_parsers_print():
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    gen_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_cli)
    page = (ROOT / "docs" / "cli.md").read_text()
    if gen_cli.versions() not in page:
        pytest.skip(f"docs/cli.md was rendered with other versions than {gen_cli.versions()}")
    assert page == gen_cli.render(), "docs/cli.md is stale: run python docs/gen_cli.py"
    for command in ("train", "eval", "flatness", "data import", "export"):
        assert f"## torchawp {command}\n" in page
