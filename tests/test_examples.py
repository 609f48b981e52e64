"""The shipped examples stay true: the production config passes check-config, the README's
quick-start code compiles, and the systemd unit starts and reloads the writer as documented.
(tests/test_frameworks.py runs the gunicorn, uvicorn and Celery recipes for real.)"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "examples" / "writer.toml"
EXAMPLE_UNIT = ROOT / "examples" / "logger-system-writer.service"
README = ROOT / "README.md"

CONFIG_KEY = "/etc/logger-system/writer.key"
CONFIG_DIR = "/var/log/logger-system"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=60, cwd=ROOT)


# ---- examples/writer.toml ----------------------------------------------------

def test_example_config_passes_check_config(tmp_path):
    key = tmp_path / "writer.key"
    made = _cli("keygen", "--out", str(key))
    assert made.returncode == 0, made.stderr
    text = EXAMPLE_CONFIG.read_text()
    assert f'key = "{CONFIG_KEY}"' in text
    assert f'dir = "{CONFIG_DIR}"' in text
    config = tmp_path / "writer.toml"
    config.write_text(text.replace(CONFIG_KEY, str(key)).replace(CONFIG_DIR, str(tmp_path / "logs")))

    checked = _cli("check-config", str(config))

    assert checked.returncode == 0, checked.stderr
    out = checked.stdout
    assert f"{config}: ok" in out
    assert f"sealed with key file {key}" in out
    assert "sanitizer: 39 built-in and 1 custom rule(s)" in out
    assert "access: 2 rule(s), default allow" in out
    assert "thresholds: drop_rate=" in out
    assert "metrics: 127.0.0.1:9464" in out
    assert f"files younger than 3600 s that retention would remove: kept up to {40 << 30} bytes of files" in out


def test_example_config_uses_every_table_and_every_writer_key():
    import tomllib

    from logger_system import config as config_mod

    data = tomllib.loads(EXAMPLE_CONFIG.read_text())
    assert set(data) == {"writer", "sanitize", "access", "thresholds"}
    text = EXAMPLE_CONFIG.read_text()
    for key in config_mod._CONVERT:
        # set, or shown commented out where two keys exclude each other
        assert re.search(rf"^#? ?{key} = ", text, re.M), f"[writer] key {key} is not in the example"


def test_example_config_without_its_key_file_is_refused(tmp_path):
    config = tmp_path / "writer.toml"
    config.write_text(EXAMPLE_CONFIG.read_text()
                      .replace(CONFIG_KEY, str(tmp_path / "missing.key"))
                      .replace(CONFIG_DIR, str(tmp_path / "logs")))
    checked = _cli("check-config", str(config))
    assert checked.returncode == 2
    assert "missing.key" in checked.stderr


# ---- README.md, "Quick starts" -----------------------------------------------

def _quick_start_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("\n## Quick starts\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"^```python\n(.*?)^```$", text[start:end], re.M | re.S)


def test_readme_has_the_quick_starts():
    text = README.read_text()
    assert text.index("## Use it") < text.index("## Quick starts") < text.index("## Operating the writer")
    blocks = _quick_start_blocks()
    joined = "\n".join(blocks)
    assert len(blocks) >= 8
    for needle in ("logger_system.install(", '"class": "logger_system.Handler"',
                   "logger_system.structlog.configure(", "logger.add(logger_system.loguru.sink(",
                   "gunicorn.conf.py", "initializer=init_logging",
                   # the servers' own error loggers do not propagate: the recipes name them
                   'also=["gunicorn.error"]', 'also=["uvicorn.error"]',
                   "logger_system.celery.install(", "get_task_logger"):
        assert needle in joined, needle
    quick = text[text.index("\n## Quick starts\n"):text.index("\n## Operating the writer\n")]
    for section in ("### gunicorn", "### uvicorn", "### Celery", "### asyncio"):
        assert f"\n{section}\n" in quick, section
    # what a full ring does on an event loop's thread and elsewhere
    for counter in ("dropped_in_loop", "dropped_stalled", "block_timeout"):
        assert counter in quick, counter
    assert "docs/OPERATIONS.md" in text and "docs/SECURITY.md" in text


@pytest.mark.parametrize("index", range(len(_quick_start_blocks())))
def test_readme_quick_start_compiles(index):
    source = _quick_start_blocks()[index]
    compile(source, f"README.md quick start #{index + 1}", "exec")


# ---- examples/logger-system-writer.service -----------------------------------

def _unit_settings() -> list[tuple[str, str]]:
    settings = []
    for line in EXAMPLE_UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def test_systemd_unit_starts_and_reloads_the_writer():
    settings = _unit_settings()
    values = {}
    for key, value in settings:
        values.setdefault(key, []).append(value)

    assert values["Type"] == ["simple"]
    (start,) = values["ExecStart"]
    assert re.fullmatch(r"\S*logger-system writer --config /etc/logger-system/writer\.toml", start)
    assert values["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert values["KillSignal"] == ["SIGTERM"]
    assert values["Restart"] == ["on-failure"]
    assert "TimeoutStopSec" in values
    assert values["User"] and values["Group"]
    # the ring is in /dev/shm: it must be writable and shared with the producers
    assert "/dev/shm" in values["ReadWritePaths"][0].split()
    for forbidden in ("PrivateDevices", "RemoveIPC", "DynamicUser", "ProtectProc"):
        assert forbidden not in values, forbidden


def test_systemd_unit_matches_the_example_config():
    values = dict(_unit_settings())
    rw = values["ReadWritePaths"].split()
    assert CONFIG_DIR in rw
    assert values["LogsDirectory"] == Path(CONFIG_DIR).name
