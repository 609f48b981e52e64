"""Writer settings end to end: retention, time rotation, fsync policies, the TOML file."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

import logger_system
from logger_system.config import build, load_toml
from logger_system.errors import ConfigError
from logger_system.rotation import LogFile

from conftest import read_records, stats, wait_for


def _log(ring: str, n: int, size: int = 200) -> None:
    log = logger_system.connect(ring, name="cfg")
    for i in range(n):
        assert log.info("record %d %s", i, "x" * size, i=i)


def _files(directory):
    return sorted(f for f in (LogFile.parse(p.name) for p in directory.iterdir()) if f)


@pytest.mark.slow
def test_keep_retains_only_the_newest_files(ring_name, writer_factory, tmp_path):
    w = writer_factory("--rotate-size", "20KB", "--keep", "3", "--keep-min-age", "0").start()
    _log(ring_name, 2000)
    wait_for(lambda: stats(ring_name)["written"] == 2000, what="all records written")
    assert w.stop() == 0
    files = _files(tmp_path / "logs")
    assert len(files) == 3, [f.name for f in files]
    # the newest survive: their indexes are the highest ones written, in sequence
    assert [f.index for f in files] == list(range(files[-1].index - 2, files[-1].index + 1))
    assert files[-1].index > 3
    records = read_records(tmp_path / "logs")
    assert records and records[-1]["fields"]["i"] == 1999


@pytest.mark.slow
def test_rotate_interval_starts_a_new_file_after_the_interval(ring_name, writer_factory, tmp_path):
    w = writer_factory("--rotate-interval", "300ms").start()
    log = logger_system.connect(ring_name)
    for i in range(6):
        log.info("tick %d", i, i=i)
        time.sleep(0.4)
    wait_for(lambda: stats(ring_name)["written"] == 6, what="ticks written")
    assert w.stop() == 0
    files = _files(tmp_path / "logs")
    assert len(files) >= 3, [f.name for f in files]
    assert [r["fields"]["i"] for r in read_records(tmp_path / "logs")] == list(range(6))


@pytest.mark.parametrize("policy", ["batch", "interval", "never"])
def test_every_fsync_policy_writes_everything(policy, ring_name, writer_factory, tmp_path):
    w = writer_factory("--fsync", policy).start()
    _log(ring_name, 500, size=20)
    wait_for(lambda: stats(ring_name)["written"] == 500, what="records written")
    assert w.stop() == 0
    assert len(read_records(tmp_path / "logs")) == 500


def test_config_file_settings_and_flags_override_them(ring_name, writer_factory, tmp_path):
    cfg = tmp_path / "writer.toml"
    cfg.write_text(f'[writer]\nring = "{ring_name}"\nrotate_size = "10KB"\nkeep = 2\n'
                   f'min_level = "WARNING"\nfsync = "never"\nkeep_min_age = 0\n')
    c = build(cfg, keep=5, plaintext=True)
    assert (c.ring, c.rotate_size, c.keep, c.min_level, c.fsync) == (ring_name, 10_000, 5, 30, "never")
    w = writer_factory("--config", str(cfg)).start()
    log = logger_system.connect(ring_name)
    for i in range(300):
        log.info("dropped by min_level %d", i)
        log.warning("kept %d %s", i, "y" * 100)
    wait_for(lambda: stats(ring_name)["written"] + stats(ring_name)["filtered"] == 600, what="drained")
    assert w.stop() == 0
    s = stats(ring_name)
    assert (s["written"], s["filtered"]) == (300, 300)
    assert len(_files(tmp_path / "logs")) == 2
    assert all(r["level"] == "WARNING" for r in read_records(tmp_path / "logs"))


@pytest.mark.parametrize("text, needle", [
    ('[writer]\nrotate_sise = "1MB"\n', "rotate_sise"),
    ('[writer]\nfsync = "sometimes"\n', "fsync"),
    ('[writer]\nrotate_size = "lots"\n', "rotate_size"),
    ('[writer]\nrotate_interval = "nan"\n', "rotate_interval"),
    ('[writer]\nkeep = 0\n', "keep"),
    ('[writr]\nkeep = 1\n', "writr"),
    ('[writer\nkeep = 1\n', "not valid TOML"),
])
def test_bad_config_names_the_problem(text, needle, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        build(cfg)
    proc = subprocess.run([sys.executable, "-m", "logger_system", "writer", "--config", str(cfg),
                           "--dir", str(tmp_path / "d"), "--plaintext"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_load_toml_converts_the_writer_table(tmp_path):
    cfg = tmp_path / "w.toml"
    cfg.write_text('[writer]\ndir = "/var/log/app"\nrotate_interval = "1h30m"\n')
    assert load_toml(cfg) == {"dir": __import__("pathlib").Path("/var/log/app"), "rotate_interval": 5400.0,
                              "config_file": cfg}


@pytest.mark.parametrize("text, needle", [
    ('[writer]\nplaintext = "false"\n', "true or false"),
    ('[writer]\ncompress = 1\n', "true or false"),
    ('[writer]\nkeep = 3.7\n', "whole number"),
    ('[writer]\nrecipient = [1]\n', "recipient"),
])
def test_typed_values_are_not_coerced(text, needle, tmp_path):
    cfg = tmp_path / "w.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        build(cfg)


def test_recipients_as_a_toml_list_and_the_ring_from_the_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "w.toml"
    cfg.write_text('[writer]\nrecipient = ["lsx1aaa", "lsx1bbb"]\n')
    monkeypatch.setenv("LOGGER_SYSTEM_RING", "from-env")
    c = build(cfg)
    assert c.recipient == "lsx1aaa,lsx1bbb"
    assert c.ring == "from-env"
    assert build(cfg, ring="flag").ring == "flag"
    cfg.write_text('[writer]\nring = "from-file"\nplaintext = true\n')
    assert build(cfg).ring == "from-file"


def test_the_python_writer_api_refuses_plaintext_unless_asked(tmp_path):
    """The rule lives in WriterConfig, so no entry point can write plaintext by default."""
    from logger_system.config import WriterConfig
    from logger_system.writer import Writer

    for attempt in (lambda: WriterConfig(dir=tmp_path / "a"), lambda: build(dir=tmp_path / "b"),
                    lambda: Writer(WriterConfig(dir=tmp_path / "c"))):
        with pytest.raises(ConfigError, match="refusing to write logs without encryption"):
            attempt()
    assert not any((tmp_path / d).exists() for d in "abc")  # refused before touching the disk
    with pytest.raises(ConfigError, match="plaintext contradicts"):
        WriterConfig(plaintext=True, key=tmp_path / "k")
    assert WriterConfig(plaintext=True).plaintext
    assert build(recipient="lsx1aaa").recipient == "lsx1aaa"
