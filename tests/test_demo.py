"""`logger-system demo` as a new user runs it: from the root of a source tree, through the
console script, leaving nothing behind; and when its writer fails, saying why.

.ci/run also runs the README's first command literally in a fresh clone and a fresh
virtualenv; these tests keep the demo's own promises in every test run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).parent / "logger-system"


def _demo(cwd: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(SCRIPT), "demo", "--seconds", "0.5", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


@pytest.fixture
def shadowing_tree(tmp_path) -> Path:
    """A directory like a clone's root: a `logger_system` package there that must never be imported."""
    root = tmp_path / "clone"
    (root / "logger_system").mkdir(parents=True)
    (root / "logger_system" / "__init__.py").write_text(
        'raise ImportError("the source tree in the working directory shadowed the installed package")\n')
    (root / "logger_system" / "__main__.py").write_text("raise SystemExit(99)\n")
    return root


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed beside this Python")
def test_demo_runs_from_a_source_tree_and_removes_its_directory_and_key(shadowing_tree, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    done = _demo(shadowing_tree, tmp)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "accounting identity holds" in done.stdout
    assert "left in them: 0" in done.stdout
    assert list(tmp.iterdir()) == []  # no logs-and-key directory left behind


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed beside this Python")
def test_demo_keeps_its_output_when_told_to(shadowing_tree, tmp_path):
    keep = tmp_path / "kept"

    done = _demo(shadowing_tree, tmp_path, "--dir", str(keep))

    assert done.returncode == 0, done.stdout + done.stderr
    assert (keep / "demo.key").stat().st_mode & 0o777 == 0o600
    assert any(p.suffix == ".lsx" for p in (keep / "logs").iterdir())


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed beside this Python")
def test_a_failing_writer_shows_its_own_message(shadowing_tree, tmp_path):
    keep = tmp_path / "kept"
    keep.mkdir()
    (keep / "logs").write_text("a file where the log directory should be\n")

    done = _demo(shadowing_tree, tmp_path, "--dir", str(keep))

    assert done.returncode == 1
    assert "the writer exited with 2; its messages:" in done.stderr
    assert "cannot use log directory" in done.stderr
