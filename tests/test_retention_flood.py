"""Retention against a flood: files younger than keep_min_age are warned about, or kept.

The decision is rotation.retain's, tested directly; then a real writer, small files and
--keep, and one process that floods the ring after some records were logged.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import logger_system
from logger_system.config import WriterConfig, build, load_toml
from logger_system.errors import ConfigError
from logger_system.rotation import LogFile, retain, to_delete

from conftest import read_records, stats, wait_for

RID = 0x1234


def _files(n: int) -> list[LogFile]:
    return [LogFile(i, "20240101T000000Z", RID, "jsonl") for i in range(1, n + 1)]


def _dir(n: int, size: int = 100, age_step: float = 10.0):
    """n files, the oldest first, each `size` bytes, the newest (the current) 0 s old."""
    files = _files(n)
    sizes = {f: size for f in files}
    ages = {f: (n - 1 - i) * age_step for i, f in enumerate(files)}
    return files, sizes, ages, files[-1]


# ---- the pure decision ------------------------------------------------------------------

@pytest.mark.parametrize("n, keep", [(1, 1), (5, 2), (10, 3), (10, 10)])
def test_without_a_minimum_age_the_count_limit_is_to_delete(n, keep):
    files, sizes, ages, cur = _dir(n)
    r = retain(files, sizes, ages, cur, keep=keep)
    assert list(r.delete) == to_delete(files, keep)
    assert not (r.young_removed or r.young_kept or r.ceiling_removed)


def test_the_size_limit_removes_the_oldest_while_all_together_are_larger():
    files, sizes, ages, cur = _dir(10, size=100)
    r = retain(files, sizes, ages, cur, keep_bytes=450)
    assert list(r.delete) == files[:6]  # 4 files of 100 bytes fit


def test_a_young_file_removed_by_the_count_limit_is_reported():
    files, sizes, ages, cur = _dir(6, age_step=10.0)  # ages 50, 40, 30, 20, 10, 0
    r = retain(files, sizes, ages, cur, keep=2, min_age=35)
    assert list(r.delete) == files[:4]
    assert list(r.young_removed) == files[2:4]  # 30 and 20 s old: younger than 35 s
    assert not r.young_kept


def test_keep_young_keeps_young_files_beyond_the_limit_and_removes_the_old():
    files, sizes, ages, cur = _dir(6, age_step=10.0)
    r = retain(files, sizes, ages, cur, keep=2, min_age=35, keep_young=True)
    assert list(r.delete) == files[:2]
    assert list(r.young_kept) == files[2:4]
    assert not r.young_removed and not r.ceiling_removed


def test_keep_young_with_the_size_limit():
    files, sizes, ages, cur = _dir(6, size=100, age_step=10.0)
    r = retain(files, sizes, ages, cur, keep_bytes=250, min_age=1000, keep_young=True)
    assert r.delete == () and list(r.young_kept) == files[:4]


def test_at_the_ceiling_the_oldest_young_files_go_first():
    files, sizes, ages, cur = _dir(8, size=100, age_step=1.0)  # all young
    r = retain(files, sizes, ages, cur, keep=2, min_age=3600, keep_young=True, ceiling=500)
    assert list(r.ceiling_removed) == files[:3]  # 8 files of 100 bytes down to 5
    assert list(r.delete) == files[:3]
    assert list(r.young_kept) == files[3:6]
    kept = [f for f in files if f not in r.delete]
    assert sum(sizes[f] for f in kept) <= 500 and cur in kept


def test_the_ceiling_does_not_remove_files_within_the_limits():
    files, sizes, ages, cur = _dir(4, size=1000, age_step=1.0)
    r = retain(files, sizes, ages, cur, keep=3, min_age=3600, keep_young=True, ceiling=500)
    assert list(r.delete) == files[:1] and list(r.ceiling_removed) == files[:1]
    assert r.young_kept == ()


def test_keep_age_is_the_users_own_limit_and_not_reported():
    files, sizes, ages, cur = _dir(6, age_step=10.0)
    r = retain(files, sizes, ages, cur, keep=5, keep_age=25, min_age=3600, keep_young=True)
    assert list(r.delete) == files[:3]  # 50, 40, 30 s old: older than keep_age
    assert not (r.young_removed or r.young_kept or r.ceiling_removed)


def test_the_current_file_is_never_removed():
    files, sizes, ages, cur = _dir(3, size=1000)
    for young in (False, True):
        r = retain(files, sizes, ages, cur, keep=1, keep_bytes=10, min_age=5, keep_young=young,
                   ceiling=10)
        assert cur not in r.delete


def test_a_file_already_gone_is_not_counted():
    files, sizes, ages, cur = _dir(5)
    del sizes[files[0]]
    r = retain(files, sizes, ages, cur, keep=3)
    assert list(r.delete) == files[1:2]


def test_a_minimum_age_of_zero_or_none_reports_nothing():
    files, sizes, ages, cur = _dir(6, age_step=0.5)
    for min_age in (0, None):
        r = retain(files, sizes, ages, cur, keep=2, min_age=min_age, keep_young=True)
        assert list(r.delete) == files[:4] and r.young_kept == ()


# ---- the settings ----------------------------------------------------------------------

def test_the_defaults():
    c = build(None, plaintext=True)
    assert c.keep_min_age == 3600 and not c.keep_young and c.retention_ceiling is None
    assert build(None, plaintext=True, keep_size="1MB").retention_ceiling == 4_000_000
    assert build(None, plaintext=True, keep=5, rotate_size="1MiB").retention_ceiling == 20 * 2**20
    assert build(None, plaintext=True, keep_size="1MB", keep_ceiling="3MB").retention_ceiling == 3_000_000


@pytest.mark.parametrize("text", ["0", "0s", "0h", "0.0m", 0, 0.0])
def test_a_minimum_age_of_zero_disables_it(text):
    assert build(None, plaintext=True, keep_min_age=text).keep_min_age is None


def test_the_toml_keys(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text('[writer]\nplaintext = true\nkeep = 4\nkeep_min_age = "30m"\nkeep_young = true\n'
                 'keep_ceiling = "1GiB"\n')
    v = load_toml(f)
    assert (v["keep_min_age"], v["keep_young"], v["keep_ceiling"]) == (1800, True, 2**30)


@pytest.mark.parametrize("values, named", [
    ({"keep_min_age": "-1h"}, "keep_min_age"),
    ({"keep_min_age": "soon"}, "keep_min_age"),
    ({"keep_young": "yes"}, "keep_young"),
    ({"keep_size": "10MB", "keep_ceiling": "1MB"}, "keep_ceiling"),
])
def test_bad_settings_are_refused(values, named):
    with pytest.raises(ConfigError, match=named):
        build(None, plaintext=True, **values)


def test_keep_young_without_any_bound_on_the_disk_is_refused():
    with pytest.raises(ConfigError, match="keep_ceiling"):
        WriterConfig(plaintext=True, keep=3, rotate_size=None, rotate_interval=60, keep_young=True)
    WriterConfig(plaintext=True, keep=3, rotate_size=None, rotate_interval=60, keep_young=True,
                 keep_ceiling=10**9)


# ---- a real writer and a flood ---------------------------------------------------------

FLOOD = textwrap.dedent("""
    import sys, logger_system
    log = logger_system.connect(sys.argv[1], name="flood", on_full="block")
    for i in range(int(sys.argv[2])):
        log.info("flood %d %s", i, "f" * 300, i=i)
""")


def _evidence_then_flood(ring: str, flood: int) -> None:
    log = logger_system.connect(ring, name="evidence")
    for i in range(20):
        assert log.warning("before the flood %d", i, i=i)
    wait_for(lambda: stats(ring)["written"] >= 20, what="the evidence written")
    p = subprocess.run([sys.executable, "-c", FLOOD, ring, str(flood)], timeout=120,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    wait_for(lambda: stats(ring)["in_ring"] == 0, timeout=60, what="the flood written")


@pytest.mark.slow
def test_a_flood_removes_young_files_with_a_warning(ring_name, writer_factory, tmp_path):
    w = writer_factory("--rotate-size", "20KB", "--keep", "3").start()
    _evidence_then_flood(ring_name, 3000)  # about 1 MB: 50 files of 20KB
    assert stats(ring_name)["warnings"] >= 1
    assert w.stop() == 0, w.stderr()
    records = read_records(tmp_path / "logs")
    assert not any(r["logger"] == "evidence" for r in records), "nothing was removed"
    said = w.events("young_file_removed")
    assert said, w.stderr()
    assert said[0]["keep"] == 3 and said[0]["keep_min_age_s"] == 3600 and said[0]["count"] >= 1
    assert said[0]["youngest_age_s"] < 60


@pytest.mark.slow
def test_keep_young_keeps_the_records_logged_before_the_flood(ring_name, writer_factory, tmp_path):
    w = writer_factory("--rotate-size", "20KB", "--keep", "3", "--keep-young",
                       "--keep-ceiling", "20MB").start()
    _evidence_then_flood(ring_name, 3000)
    assert stats(ring_name)["warnings"] >= 1
    assert w.stop() == 0, w.stderr()
    records = read_records(tmp_path / "logs")
    evidence = [r["fields"]["i"] for r in records if r["logger"] == "evidence"]
    assert evidence == list(range(20))
    flood = [r["fields"]["i"] for r in records if r["logger"] == "flood"]
    assert flood == list(range(3000))
    warned = [r for r in records if r["logger"] == "logger_system.writer"
              and r["fields"].get("retention") == "young_file_kept"]
    assert warned and warned[0]["level"] == "WARNING"
    assert w.events("young_file_kept"), w.stderr()
    assert not w.events("young_file_removed")


@pytest.mark.slow
def test_at_the_ceiling_the_oldest_go_anyway_with_a_warning(ring_name, writer_factory, tmp_path):
    w = writer_factory("--rotate-size", "20KB", "--keep", "3", "--keep-young",
                       "--keep-ceiling", "200KB").start()
    _evidence_then_flood(ring_name, 3000)
    assert w.stop() == 0, w.stderr()
    logs = tmp_path / "logs"
    assert not any(r["logger"] == "evidence" for r in read_records(logs))
    total = sum(p.stat().st_size for p in logs.iterdir())
    assert total <= 200_000 + 20_000, total  # checked when a file opens: one file above at most
    said = w.events("keep_ceiling_reached")
    assert said and said[0]["keep_ceiling"] == 200_000, w.stderr()


@pytest.mark.slow
def test_keep_min_age_zero_is_the_old_retention(ring_name, writer_factory, tmp_path):
    w = writer_factory("--rotate-size", "20KB", "--keep", "3", "--keep-min-age", "0").start()
    _evidence_then_flood(ring_name, 1000)
    assert stats(ring_name)["warnings"] == 0
    assert w.stop() == 0, w.stderr()
    assert len(list((tmp_path / "logs").iterdir())) == 3
    assert not w.events("young_file_removed")


@pytest.mark.slow
def test_a_reload_takes_on_keep_young(ring_name, writer_factory, tmp_path):
    import signal

    cfg = tmp_path / "w.toml"
    cfg.write_text('[writer]\nrotate_size = "20KB"\nkeep = 3\nkeep_min_age = 0\n')
    w = writer_factory("--config", cfg).start()
    _evidence_then_flood(ring_name, 500)
    assert stats(ring_name)["warnings"] == 0
    cfg.write_text('[writer]\nrotate_size = "20KB"\nkeep = 3\nkeep_min_age = "10m"\nkeep_young = true\n'
                   'keep_ceiling = "20MB"\n')
    w.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: w.events("reloaded"), timeout=20, what="the reload")
    log = logger_system.connect(ring_name, name="evidence")
    for i in range(20, 40):
        assert log.warning("before the second flood %d", i, i=i)
    wait_for(lambda: stats(ring_name)["in_ring"] == 0, what="the evidence written")
    p = subprocess.run([sys.executable, "-c", FLOOD, ring_name, "2000"], timeout=120,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    wait_for(lambda: stats(ring_name)["in_ring"] == 0, timeout=60, what="the flood written")
    assert w.stop() == 0, w.stderr()
    evidence = [r["fields"]["i"] for r in read_records(tmp_path / "logs") if r["logger"] == "evidence"]
    assert list(range(20, 40)) == [i for i in evidence if i >= 20]
    said = w.events("young_file_kept")
    assert said and said[0]["keep_min_age_s"] == 600 and said[0]["keep_ceiling"] == 20_000_000
