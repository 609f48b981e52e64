"""Access rules: which records the writer accepts.

A rule matches a record by logger name, source file (the `file` field the
logging Handler adds), the OS user of the producing process, the record's
`user` field and a level range; every matcher a rule gives must match.  The
first matching rule decides (allow or deny), else `default` does.  Denied
records are counted as `denied` and never written.

The OS user is that of the producing process, read from /proc/<pid> when its
records are drained.  A process that exited before that has no known user
and matches no os_user matcher.  Only processes that can write the ring can
log at all: the ring's mode (0600 by default) is the first access control,
these rules are the second.

    [access]
    default = "deny"

    [[access.rule]]
    action = "allow"
    logger = ["app.*", "gunicorn.error"]
    os_user = ["www-data"]
    min_level = "INFO"
"""
from __future__ import annotations

import fnmatch
import json
import os
import pwd
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .pipeline import Batch
from .errors import describe
from .record import level_number

ACTIONS = ("allow", "deny")
_RULE_KEYS = {"name", "action", "logger", "file", "os_user", "user", "min_level", "max_level"}
_UID_TTL = 10.0  # seconds a pid's user is trusted before it is read again (pids are reused)
_MAX_UID = 2**32 - 2  # (uid_t)-1 means "no user"


@dataclass(frozen=True)
class AccessRule:
    action: str
    name: str = ""
    logger: re.Pattern | None = None
    file: re.Pattern | None = None
    os_uids: frozenset[int] | None = None
    user: re.Pattern | None = None
    min_level: int = 0
    max_level: int = 255

    @property
    def needs_fields(self) -> bool:
        return self.file is not None or self.user is not None


@dataclass(frozen=True)
class AccessPolicy:
    default: str = "allow"
    rules: tuple[AccessRule, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.rules) or self.default != "allow"


def _globs(value: Any, where: str) -> re.Pattern:
    """One compiled pattern for a glob or a list of globs (fnmatch syntax, case-sensitive)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{where}: use a glob string or a list of glob strings")
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in items), re.DOTALL)


def _uids(value: Any, where: str) -> frozenset[int]:
    items = [value] if isinstance(value, (str, int)) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: use a user name, a uid, or a list of them")
    uids = set()
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ConfigError(f"{where}: {describe(v)} is not a user name or uid")
        # ASCII digits only: str.isdigit() is also true for '²', which int() refuses
        if isinstance(v, int) or (v.isascii() and v.isdigit()):
            uid = v if isinstance(v, int) else int(v) if len(v) <= 10 else None
            if uid is None or not 0 <= uid <= _MAX_UID:
                raise ConfigError(f"{where}: uid {describe(v)} is outside 0..{_MAX_UID}")
            uids.add(uid)
            continue
        try:
            uids.add(pwd.getpwnam(v).pw_uid)
        except KeyError:
            raise ConfigError(f"{where}: no OS user named {describe(v)} on this machine") from None
        except ValueError:  # a NUL or an unencodable character
            raise ConfigError(f"{where}: {describe(v)} is not a valid user name") from None
    return frozenset(uids)


def level(value: Any) -> int:
    """A record level from a config value: a level name or a number 0..255; ValueError otherwise.

    The message describes the value briefly (level_number's repr of a huge
    integer would itself raise).
    """
    try:
        return level_number(value)
    except ValueError:
        raise ValueError(f"unknown log level {describe(value)}: use DEBUG, INFO, WARNING, ERROR, CRITICAL "
                         "or a number 0..255") from None


def _level(value: Any, where: str) -> int:
    try:
        return level(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse(table: Any, where: str = "access") -> AccessPolicy:
    """An AccessPolicy from the [access] table; ConfigError naming what is wrong."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(table) - {"default", "rule"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (known: default, rule)")
    default = table.get("default", "allow")
    if default not in ACTIONS:
        raise ConfigError(f"{where}.default={describe(default)}: use 'allow' or 'deny'")
    raw_rules = table.get("rule", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{where}.rule: write rules as [[access.rule]] tables")
    rules = []
    for i, r in enumerate(raw_rules):
        w = f"{where}.rule[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{w}: must be a table")
        bad = set(r) - _RULE_KEYS
        if bad:
            raise ConfigError(f"{w}: unknown key(s) {sorted(bad)} (known: {', '.join(sorted(_RULE_KEYS))})")
        action = r.get("action")
        if action not in ACTIONS:
            raise ConfigError(f"{w}.action={describe(action)}: use 'allow' or 'deny'")
        if not set(r) & (_RULE_KEYS - {"name", "action"}):
            raise ConfigError(f"{w}: a rule needs at least one of logger, file, os_user, user, "
                              "min_level, max_level (use default= for everything else)")
        name = r.get("name", f"rule{i}")
        if not isinstance(name, str):
            raise ConfigError(f"{w}.name={describe(name)}: use a string")
        rule = AccessRule(
            action=action, name=name,
            logger=_globs(r["logger"], f"{w}.logger") if "logger" in r else None,
            file=_globs(r["file"], f"{w}.file") if "file" in r else None,
            os_uids=_uids(r["os_user"], f"{w}.os_user") if "os_user" in r else None,
            user=_globs(r["user"], f"{w}.user") if "user" in r else None,
            min_level=_level(r["min_level"], f"{w}.min_level") if "min_level" in r else 0,
            max_level=_level(r["max_level"], f"{w}.max_level") if "max_level" in r else 255)
        if rule.min_level > rule.max_level:
            raise ConfigError(f"{w}: min_level {rule.min_level} is above max_level {rule.max_level}")
        rules.append(rule)
    return AccessPolicy(default=default, rules=tuple(rules))


class UidOfPid:
    """The OS user of a process, by pid, cached for a few seconds."""

    def __init__(self, ttl: float = _UID_TTL) -> None:
        self.ttl = ttl
        self._cache: dict[int, tuple[int | None, float]] = {}

    def __call__(self, pid: int) -> int | None:
        now = time.monotonic()
        hit = self._cache.get(pid)
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        try:
            uid: int | None = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            uid = None
        if len(self._cache) > 65536:
            self._cache.clear()
        self._cache[pid] = (uid, now)
        return uid


class AccessFilter:
    """The writer stage: drops records the rules deny and counts them as `denied`.

    Decisions are cached per (logger, pid, level, file, user) within a batch,
    so a batch of one service's records costs a dictionary lookup each.
    The writer's own records (its health warnings) are always accepted.
    """

    def __init__(self, policy: AccessPolicy, uid_of: UidOfPid | None = None) -> None:
        self.policy = policy
        self.uid_of = uid_of or UidOfPid()
        self._needs_fields = any(r.needs_fields for r in policy.rules)
        self._needs_uid = any(r.os_uids is not None for r in policy.rules)
        self._own_pid = os.getpid()

    def decide(self, logger: str, uid: int | None, level: int, file: str | None, user: str | None) -> bool:
        for r in self.policy.rules:
            if not r.min_level <= level <= r.max_level:
                continue
            if r.logger is not None and not r.logger.fullmatch(logger):
                continue
            if r.os_uids is not None and uid not in r.os_uids:
                continue
            if r.file is not None and (file is None or not r.file.fullmatch(file)):
                continue
            if r.user is not None and (user is None or not r.user.fullmatch(user)):
                continue
            return r.action == "allow"
        return self.policy.default == "allow"

    def __call__(self, batch: Batch) -> Batch:
        meta, keep = batch.meta, batch.keep
        n = len(meta)
        if n == 0 or not self.policy.active:
            return batch
        buf = batch.buf if isinstance(batch.buf, bytes) else memoryview(batch.buf)
        levels = meta["level"].tolist()
        pids = meta["pid"].tolist()
        lo, ll = meta["logger_off"].tolist(), meta["logger_len"].tolist()
        fo, fl = meta["fields_off"].tolist(), meta["fields_len"].tolist()
        cache: dict[tuple, bool] = {}
        deny = np.zeros(n, dtype=bool)
        for i in range(n):
            if not keep[i] or pids[i] == self._own_pid:
                continue
            logger = bytes(buf[lo[i]:lo[i] + ll[i]])
            file = user = None
            if self._needs_fields and fl[i]:
                file, user = _file_and_user(bytes(buf[fo[i]:fo[i] + fl[i]]))
            key = (logger, pids[i], levels[i], file, user)
            ok = cache.get(key)
            if ok is None:
                uid = self.uid_of(pids[i]) if self._needs_uid else None
                ok = cache[key] = self.decide(logger.decode("utf-8", "replace"), uid, levels[i], file, user)
            if not ok:
                deny[i] = True
        denied = int(deny.sum())
        if denied:
            keep[deny] = 0
            batch.delta.denied += denied
        return batch


def _file_and_user(fields: bytes) -> tuple[str | None, str | None]:
    if b'"file"' not in fields and b'"user"' not in fields:
        return None, None
    try:
        obj = json.loads(fields)
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    file, user = obj.get("file"), obj.get("user")
    return (file if isinstance(file, str) else None,
            None if user is None else user if isinstance(user, str) else json.dumps(user))
