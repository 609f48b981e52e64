"""The release artefacts: scripts/build-release makes an sdist and a wheel an index accepts.

The wheel is tagged cp311-abi3 (the extension uses only the limited API) and manylinux_*
(auditwheel repaired it); both pass `twine check --strict`; the sdist carries what its tests,
its benchmarks and the README's links need, and the test suite runs from it against the
package installed from it.  Built once for the module: under two minutes in all on an idle 2-core machine.
"""
from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import tarfile
import venv
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# the build, a fresh venv and the install into it: minutes on a busy 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build-release"
VERSION_PREFIX = "logger_system-"

# quick files that load the compiled extension in-process (test_records, test_rotation) and
# start the CLI and the writer as child processes (test_examples, test_adapters)
SDIST_TESTS = ["tests/test_records.py", "tests/test_rotation.py", "tests/test_examples.py",
               "tests/test_adapters.py"]
INSTALLED_CHECK = "test_the_installed_package_is_under_test"
CHECK_ENV = "LS_PACKAGE_UNDER_TEST"


@dataclass
class Release:
    out: Path
    sdist: Path
    wheel: Path


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_ADDOPTS")}
    env.update(extra)
    return env


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    out = tmp_path_factory.mktemp("release")
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                          timeout=400, env=_clean_env(PYTHON=sys.executable))
    assert proc.returncode == 0, f"build-release failed ({proc.returncode}):\n{_tail(proc.stderr)}"
    names = proc.stdout.split()
    assert len(names) == 2, proc.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    sdist, wheel = (out / n for n in names)
    assert sdist.name.endswith(".tar.gz") and wheel.name.endswith(".whl")
    return Release(out, sdist, wheel)


def _wheel_tags(wheel: Path) -> tuple[str, str, str]:
    # name-version-python-abi-platform.whl (no build tag here)
    _name, _version, python, abi, platform = wheel.name[:-len(".whl")].split("-")
    return python, abi, platform


def _dist_info_file(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (member,) = [m for m in zf.namelist() if re.fullmatch(rf"[^/]+\.dist-info/{name}", m)]
        return zf.read(member).decode()


def _sdist_members(sdist: Path) -> tuple[str, set[str]]:
    prefix = sdist.name[:-len(".tar.gz")]
    with tarfile.open(sdist) as tf:
        names = {m.name for m in tf.getmembers()}
    assert all(n == prefix or n.startswith(prefix + "/") for n in names)
    return prefix, {n[len(prefix) + 1:] for n in names if n != prefix}


# ---- the wheel -------------------------------------------------------------------------------

def test_the_wheel_is_abi3_and_manylinux(release):
    python, abi, platform = _wheel_tags(release.wheel)
    assert release.wheel.name.startswith(VERSION_PREFIX)
    assert (python, abi) == ("cp311", "abi3")
    # auditwheel may name several compatible platforms, dot-separated: each is manylinux
    assert all(re.fullmatch(r"manylinux_\d+_\d+_\w+", p) for p in platform.split(".")), platform


def test_the_wheel_metadata_says_so(release):
    python, abi, platform = _wheel_tags(release.wheel)
    wheel_meta = email.parser.Parser().parsestr(_dist_info_file(release.wheel, "WHEEL"))
    assert wheel_meta["Root-Is-Purelib"] == "false"
    assert sorted(wheel_meta.get_all("Tag")) == sorted(f"{python}-{abi}-{p}" for p in platform.split("."))

    meta = email.parser.Parser().parsestr(_dist_info_file(release.wheel, "METADATA"))
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert "License" not in meta  # the deprecated free-text field is gone
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "Copyright (c) 2026 The logger_system authors" in _dist_info_file(release.wheel, "licenses/LICENSE")
    assert "logger-system = logger_system.cli:main" in _dist_info_file(release.wheel, "entry_points.txt")

    with zipfile.ZipFile(release.wheel) as zf:
        names = zf.namelist()
    # one compiled module, for the stable ABI, and nothing of a build tree
    assert [n for n in names if n.endswith(".so")] == ["logger_system/_lsr_native.abi3.so"]
    assert "logger_system/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "perf/")) or n.endswith((".pyc", ".c"))]


def test_twine_check_strict_passes_on_both(release):
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                           str(release.sdist), str(release.wheel)],
                          capture_output=True, text=True, timeout=120,
                          env=_clean_env(NO_COLOR="1", COLUMNS="400"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


# ---- the sdist -------------------------------------------------------------------------------

def test_the_sdist_carries_tests_examples_docs_and_license(release):
    prefix, members = _sdist_members(release.sdist)
    assert prefix.startswith(VERSION_PREFIX)
    for required in ("LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in",
                     "tests/conftest.py", "examples/writer.toml", "scripts/build-release",
                     "logger_system/_ffi_build.py", "logger_system/py.typed"):
        assert required in members, required
    # every file of these folders in this tree, as the repository has them
    for folder, pattern in (("tests", "*.py"), ("examples", "*"), ("docs", "*"), ("perf", "*.py"),
                            ("native", "*.[ch]")):
        present = {f"{folder}/{p.name}" for p in (ROOT / folder).glob(pattern) if p.is_file()}
        assert present and present <= members, sorted(present - members)
    assert not [m for m in members if m.endswith((".so", ".o", ".pyc")) or "__pycache__" in m
                or m == "logger_system/_lsr_native.c" or m.startswith("perf/results")]

    with tarfile.open(release.sdist) as tf:
        pkg_info = tf.extractfile(f"{prefix}/PKG-INFO").read().decode()
    meta = email.parser.Parser().parsestr(pkg_info)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]


def test_every_relative_link_in_the_readme_is_in_the_sdist(release):
    _prefix, members = _sdist_members(release.sdist)
    links = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    relative = {link.split("#", 1)[0] for link in links
                if not re.match(r"[a-z][a-z0-9+.-]*:|#", link, re.I)} - {""}
    assert relative, "the README links to no file"
    missing = sorted(link for link in relative
                     if link.rstrip("/") not in members and not any(m.startswith(link.rstrip("/") + "/")
                                                                   for m in members))
    assert not missing, missing


def test_the_suite_runs_from_the_sdist(release, tmp_path):
    with tarfile.open(release.sdist) as tf:
        if hasattr(tarfile, "data_filter"):  # 3.11.4 and later
            tf.extractall(tmp_path, filter="data")
        else:
            tf.extractall(tmp_path)
    (tree,) = tmp_path.iterdir()
    assert not list((tree / "logger_system").glob("_lsr_native*")), "the sdist has a built extension"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = _clean_env(VIRTUAL_ENV=str(env_dir), PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
                     PIP_DISABLE_PIP_VERSION_CHECK="1")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{release.sdist}[test]"],
                               capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert installed.returncode == 0, _tail(installed.stdout + installed.stderr)

    site = subprocess.run([str(python), "-P", "-c", "import sysconfig; print(sysconfig.get_path('platlib'))"],
                          capture_output=True, text=True, timeout=60, env=env, check=True).stdout.strip()
    report = tmp_path / "report.xml"
    # `python -m pytest` from the unpacked tree: the tree is on sys.path, and conftest must see
    # to it that the package installed into the venv is the one tested, here and in children
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"--junitxml={report}", *SDIST_TESTS, f"tests/test_packaging.py::{INSTALLED_CHECK}"],
                         capture_output=True, text=True, timeout=300, cwd=tree,
                         env=dict(env, **{CHECK_ENV: site}))
    assert run.returncode == 0, _tail(run.stdout + run.stderr, 80)

    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert int(suite.get("failures")) == int(suite.get("errors")) == 0
    assert int(suite.get("tests")) - int(suite.get("skipped")) >= 100
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    check = cases[INSTALLED_CHECK]
    assert check.find("skipped") is None and check.find("failure") is None


def test_the_installed_package_is_under_test():
    """Run by test_the_suite_runs_from_the_sdist, in the unpacked sdist: the logger_system that
    tests import, and that `python -c` children import from the tree, is the installed one."""
    site = os.environ.get(CHECK_ENV)
    if not site:
        pytest.skip(f"only in the run from the unpacked sdist ({CHECK_ENV} names its site-packages)")
    import logger_system
    from logger_system import _lsr_native

    assert Path(logger_system.__file__).is_relative_to(site), logger_system.__file__
    assert Path(_lsr_native.__file__).name == "_lsr_native.abi3.so"
    assert Path(_lsr_native.__file__).is_relative_to(site)
    child = subprocess.run([sys.executable, "-c", "import logger_system._lsr_native as n; print(n.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert child.returncode == 0, child.stderr
    assert Path(child.stdout.strip()).is_relative_to(site), child.stdout
