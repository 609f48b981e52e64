"""The `logger-system` command: main(argv) -> exit status."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import config as config_mod
from .errors import ConfigError, CorruptRecordError, LoggerSystemError, RingError, RingPermissionError
from .ring import DROP_REASONS, Ring, ring_name, unlink


def _writer_config(args: argparse.Namespace) -> config_mod.WriterConfig:
    """The file, then the flags; also what SIGHUP re-reads."""
    cfg = config_mod.build(
        args.config, ring=args.ring, dir=args.dir, plaintext=True if args.plaintext else None,
        key=args.key, recipient=",".join(args.recipient) if args.recipient else None,
        rotate_size=args.rotate_size, rotate_interval=args.rotate_interval, keep=args.keep,
        keep_age=args.keep_age, keep_size=args.keep_size, keep_min_age=args.keep_min_age,
        keep_young=True if args.keep_young else None, keep_ceiling=args.keep_ceiling,
        compress=True if args.compress else None,
        fsync=args.fsync, min_level=args.min_level, capacity=args.capacity,
        max_record=args.max_record, policy=args.policy, metrics=args.metrics,
        sanitize=False if args.no_sanitize else None, ship=args.ship,
        tls={"tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
             "tls_server_name": args.tls_server_name})
    return cfg


def _writer(args: argparse.Namespace) -> int:
    from .writer import Writer

    return Writer(_writer_config(args), reload_config=lambda: _writer_config(args)).run()


def _check_config(args: argparse.Namespace) -> int:
    """Load a config file the way the writer would and say what it sets up, or what is wrong."""
    from .keys import load_keyring, parse_recipient
    from .policy import load as load_policy

    try:
        cfg = config_mod.build(Path(args.file))
    except ConfigError as exc:
        raise ConfigError(f"{args.file}: {exc}") from None
    if cfg.key:
        keyring = load_keyring(cfg.key)
        sealing = f"sealed with key file {cfg.key} ({len(keyring.keys)} key(s))"
    elif cfg.recipient:
        recipients = [parse_recipient(r) for r in cfg.recipient.split(",") if r.strip()]
        sealing = f"sealed for {len(recipients)} recipient(s)"
    else:
        sealing = "plaintext (not encrypted)"
    policy = load_policy(cfg.policy) if cfg.policy else cfg.sanitize_policy
    if not cfg.sanitize or (policy is not None and not policy.enabled):
        sanitizer = "off"
    elif policy is None:
        sanitizer = "built-in rules"
    else:
        sanitizer = f"{len(policy.builtin)} built-in and {len(policy.rules)} custom rule(s)"
    access = cfg.access
    print(f"{args.file}: ok")
    print(f"  ring {cfg.ring!r} -> {cfg.dir}, {sealing}")
    print(f"  rotate at {cfg.rotate_size or 'no size'} bytes / {cfg.rotate_interval or 'no interval'} s; "
          f"keep {cfg.keep or 'all'} files, age {cfg.keep_age or 'any'} s, size {cfg.keep_size or 'any'} bytes")
    if cfg.keep_min_age:
        young = (f"kept up to {cfg.retention_ceiling} bytes of files" if cfg.keep_young and cfg.retention_ceiling
                 else "kept (no ceiling)" if cfg.keep_young else "warned about, then removed")
        print(f"  files younger than {cfg.keep_min_age:g} s that retention would remove: {young}")
    else:
        print("  files of any age may be removed by retention (keep_min_age off)")
    print(f"  sanitizer: {sanitizer}")
    print(f"  access: {len(access.rules)} rule(s), default {access.default}" if access else
          "  access: every record accepted")
    t = cfg.thresholds
    print("  thresholds: " + (", ".join(f"{k}={getattr(t, k)}" for k in
                                        ("drop_rate", "writer_errors", "error_rate", "sanitizer_hits")
                                        if getattr(t, k) is not None) + f" per {t.window:g} s window"
                              if t and t.any else "none"))
    print(f"  metrics: {cfg.metrics or 'off'}")
    for d in cfg.ship:
        client = f", client certificate {d.tls.cert}" if d.tls.cert else ", no client certificate"
        print(f"  ship: {d.url} over TLS (CA {d.tls.ca}, server name {d.server_name}{client}), "
              f"spool up to {d.spool_size} bytes")
    if not cfg.ship:
        print("  ship: nowhere (the files only)")
    return 0


def _keys(args: argparse.Namespace) -> dict:
    from .keys import load_identity, load_keyring

    if args.key and args.identity:
        raise ConfigError("give --key or --identity, not both")
    return {"keyring": load_keyring(Path(args.key)) if args.key else None,
            "identity": load_identity(Path(args.identity)) if args.identity else None}


def _keygen(args: argparse.Namespace) -> int:
    from .keys import identity_keygen, keygen

    out = Path(args.out)
    missing = next((d for d in reversed(out.parents) if not d.exists()), None)
    if args.x25519:
        recipient = identity_keygen(out)
        print(recipient)
        print(f"logger-system keygen: wrote the identity to {out} (mode 0600); give the line above to "
              "the writer as --recipient, keep the identity to read the files", file=sys.stderr)
    else:
        key_id = keygen(out, rotate=args.rotate)
        what = "added a new active key to" if args.rotate else "wrote a new key to"
        print(f"logger-system keygen: {what} {out} (mode 0600), key id {key_id.hex()}", file=sys.stderr)
    if missing is not None:
        print(f"logger-system keygen: made the directory {missing} and those below it (mode 0700)",
              file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .files.reader import verify

    verdict = verify([Path(p) for p in args.paths], **_keys(args), accept_loss=args.accept_loss)
    for line in verdict.report():
        print(line)
    for n in verdict.notes:
        print(f"note: {n}", file=sys.stderr)
    head_faults: list[str] = []
    if args.heads:
        from .files.chain import check_heads

        if len(args.paths) != 1 or not Path(args.paths[0]).is_dir():
            raise ConfigError("--heads checks one log directory: give its path alone")
        try:
            lines = Path(args.heads).read_text(errors="replace").splitlines()
        except OSError as exc:
            raise ConfigError(f"--heads {args.heads}: cannot read it ({exc.strerror})") from None
        checked, head_faults = check_heads(Path(args.paths[0]), lines)
        for fault in head_faults:
            print(f"FAIL {fault}")
        print(f"chain heads: {checked} checked against {args.heads}, {len(head_faults)} not here as shipped")
    if head_faults and not verdict.faults:
        print(f"logger-system verify: {len(head_faults)} chain head(s) the receiver holds are not in "
              f"{args.paths[0]}", file=sys.stderr)
        return 1
    if verdict.faults:
        print(f"logger-system verify: {verdict.failed} of {verdict.files} file(s) failed"
              f"{f' ({len(verdict.faults)} faults)' if len(verdict.faults) > verdict.failed else ''}",
              file=sys.stderr)
        return 1
    return 0


def _stats(args: argparse.Namespace) -> int:
    from .ship.shipper import read_status as read_ship_status

    if args.server is not None:
        return _server_stats(args)
    name = ring_name(args.ring)
    try:
        ring = Ring(name, create=False)
    except RingPermissionError as exc:
        try:
            st = os.stat(f"/dev/shm/{name}")
        except OSError:
            raise exc from None
        raise RingError(f"{exc} (segment /dev/shm/{name}: mode {st.st_mode & 0o777:04o}, uid {st.st_uid})"
                        ) from None
    except RingError as exc:
        raise RingError(f"{exc} (is a writer or producer running for ring {name!r}?)") from None
    prev: tuple[float, dict] | None = None
    clear = args.watch and not args.json and sys.stdout.isatty()
    try:
        while True:
            d = ring.report()
            d["ship"] = read_ship_status(name)
            now = time.monotonic()
            if args.json:
                print(json.dumps(d), flush=True)
            else:
                text = render_stats(d, prev and (now - prev[0], prev[1]))
                print(("\x1b[H\x1b[2J" if clear else "") + text, flush=True)
            if not args.watch:
                return 0
            prev = (now, d)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        ring.close()


_STAT_ROWS = ("committed", "written", "in_ring", "dropped", "blocked", "block_timeouts", "abandoned",
              "malformed", "truncated", "format_errors", "filtered", "denied", "sanitized",
              "sanitize_dropped", "writer_errors", "warnings")


_TOP_PRODUCERS = 5


def _writer_process(pid: int) -> str:
    import psutil

    try:
        p = psutil.Process(pid)
        with p.oneshot():
            cpu = p.cpu_times()
            return (f"cpu {cpu.user + cpu.system:.1f}s ({p.cpu_percent(interval=0.05):.0f}%), "
                    f"rss {p.memory_info().rss / 2**20:.1f} MiB")
    except (psutil.Error, OSError):
        return "process not visible"


def render_stats(d: dict, since: tuple[float, dict] | None = None) -> str:
    """The human view of a ring's counters; with `since` (seconds, earlier stats), rates too."""
    width = 30
    bar = "#" * round(d["utilization"] * width)
    writer = "none attached"
    if d["writer_pid"] > 0:
        age = (time.monotonic_ns() - d["writer_heartbeat_ns"]) / 1e9
        writer = f"pid {d['writer_pid']}, heartbeat {age:.1f}s ago, {_writer_process(d['writer_pid'])}"
    if d["released_ns"]:
        writer += f", last drain {(time.monotonic_ns() - d['released_ns']) / 1e9:.1f}s ago"
    lines = [f"ring {d['name']} ({d['ring_id']})",
             f"  writer    {writer}",
             f"  used      [{bar:<{width}}] {d['utilization'] * 100:5.1f}%  "
             f"{d['used_bytes']}/{d['capacity_bytes']} bytes, high water {d['high_water_bytes']}"]
    if d.get("mode"):
        mode = f"  mode      {d['mode']}"
        if d.get("open_to_others"):
            mode += (f", open to group or others: they can read records not yet sanitized; "
                     f"chmod 600 /dev/shm/{d['name']}, or `ring rm {d['name']}` and let producers "
                     "create it again")
        lines.append(mode)
    for key in _STAT_ROWS:
        rate = ""
        if since is not None and since[0] > 0 and key != "in_ring":
            rate = f"{(d[key] - since[1][key]) / since[0]:>12,.0f}/s"
        lines.append(f"  {key:<17}{d[key]:>14,}{rate}")
    reasons = [f"{k[len('dropped_'):]} {d[k]:,}" for k in DROP_REASONS + ("dropped_full",) if d.get(k)]
    if reasons:
        lines.append("  dropped because: " + ", ".join(reasons))
    producers = d.get("producers") or []
    if producers:
        lines.append(f"  producers (top {min(len(producers), _TOP_PRODUCERS)} of {len(producers)} by bytes; "
                     f"{d.get('active_producers', 0)} active in the last 10 s)")
        for p in producers[:_TOP_PRODUCERS]:
            note = "" if p["alive"] else "  (exited)"
            over = f", {p['dropped_over_share']:,} over its share" if p["dropped_over_share"] else ""
            lines.append(f"    pid {p['pid']:<8} committed {p['committed']:>12,}  dropped {p['dropped']:>10,}"
                         f"{over}  bytes {p['bytes']:>14,}  in ring {p['held']:,}{note}")
    for sh in d.get("ship") or []:
        state = "connected" if sh.get("connected") else "not connected"
        extra = "".join(f", {k} {sh[k]:,}" for k in ("overflow", "torn", "spool_errors") if sh.get(k))
        lines.append(f"  ship      {sh.get('url')}: {state}, shipped {sh.get('shipped', 0):,}, acked up to n "
                     f"{sh.get('acked', 0):,}, pending {sh.get('pending', 0):,}, errors {sh.get('errors', 0):,}"
                     f"{extra}" + (f" (last: {sh['last_error']})" if sh.get("last_error") and not sh.get("connected")
                                   else ""))
    hits = {k: v for k, v in d["rule_hits"].items() if v}
    if hits:
        lines.append("  sanitizer hits by rule: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(hits.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def _cat(args: argparse.Namespace) -> int:
    from .query import Query
    from .files.reader import follow, iter_lines, render_text

    if args.text and args.output == "json":
        raise ConfigError("--text contradicts --output json: choose one")
    text = args.text or args.output == "text"
    query = Query.build(since=args.since, until=args.until, level=args.level, loggers=args.logger or (),
                        pids=args.pid or (), grep=args.grep, now_ns=time.time_ns())
    out = sys.stdout.buffer
    keys = _keys(args)
    if args.follow:
        if len(args.paths) != 1 or not Path(args.paths[0]).is_dir():
            raise ConfigError("--follow takes one log directory")
        faults: list[str] = []

        def on_fault(fault: str) -> None:
            faults.append(fault)
            print(f"logger-system cat: {fault}", file=sys.stderr, flush=True)

        lines = follow(Path(args.paths[0]), **keys, query=query if query.active else None,
                       on_fault=on_fault, accept_loss=args.accept_loss)
    else:
        lines = iter_lines([Path(p) for p in args.paths], **keys, query=query if query.active else None,
                           accept_loss=args.accept_loss)
    for line in lines:
        if text:
            out.write(render_text(json.loads(line)).encode("utf-8", "backslashreplace") + b"\n")
        else:
            out.write(line)
        if args.follow:
            out.flush()
    out.flush()
    return 1 if args.follow and faults else 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(seconds=args.seconds, producers=args.producers, keep_dir=args.dir)


def _ring(args: argparse.Namespace) -> int:
    if args.ring_cmd == "ls":
        # not the POSIX semaphores, nor what writers publish beside their rings (<ring>.ship)
        names = sorted(n for n in os.listdir("/dev/shm") if not n.startswith(("sem.", ".")) and
                       not n.endswith(".ship"))
        for n in names:
            try:
                r = Ring(n, create=False, allow_foreign=True)
            except (RingError, ConfigError):
                continue
            d = r.stats().as_dict()
            r.close()
            print(f"{n}\tcapacity={d['capacity_bytes']}\tused={d['used_bytes']}\t"
                  f"writer_pid={d['writer_pid']}\tcommitted={d['committed']}\twritten={d['written']}")
        return 0
    for n in args.names:
        if not unlink(n):
            print(f"no ring named {n!r}", file=sys.stderr)
            return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="logger-system", description="multi-process logging through a "
                                "shared-memory ring and one writer")
    sub = p.add_subparsers(dest="cmd", required=True)

    w = sub.add_parser("writer", help="drain a ring into rotated files (foreground)")
    w.add_argument("--ring", default=None, help="ring name (default $LOGGER_SYSTEM_RING or logger_system)")
    w.add_argument("--dir", default=None, help="log directory (created 0700)")
    w.add_argument("--config", type=Path, default=None, help="TOML file with a [writer] table")
    g = w.add_mutually_exclusive_group()
    g.add_argument("--plaintext", action="store_true", help="write unencrypted files")
    g.add_argument("--key", default=None, help="symmetric key file (logger-system keygen --out FILE)")
    g.add_argument("--recipient", action="append", default=None,
                   help="X25519 recipient string (logger-system keygen --x25519); repeatable")
    w.add_argument("--compress", action="store_true", help="zstd-compress each chunk before sealing")
    w.add_argument("--keep-age", default=None, help="remove files older than this, e.g. 30d")
    w.add_argument("--keep-size", default=None, help="keep at most this many bytes of files, e.g. 10GiB")
    w.add_argument("--keep-min-age", default=None,
                   help="warn when --keep or --keep-size removes a file younger than this "
                        "(default 1h; 0: never)")
    w.add_argument("--keep-young", action="store_true",
                   help="keep files younger than --keep-min-age beyond --keep/--keep-size, "
                        "up to --keep-ceiling")
    w.add_argument("--keep-ceiling", default=None,
                   help="most bytes of files kept with --keep-young (default 4x --keep-size, "
                        "else 4x --keep full files)")
    w.add_argument("--rotate-size", default=None, help="rotate at this size, e.g. 64MiB")
    w.add_argument("--rotate-interval", default=None, help="rotate after this long, e.g. 1h")
    w.add_argument("--keep", type=int, default=None, help="rotated files kept")
    w.add_argument("--fsync", default=None, choices=config_mod.FSYNC_POLICIES)
    w.add_argument("--min-level", default=None, help="drop records below this level")
    w.add_argument("--capacity", default=None, help="ring size if the writer creates it, e.g. 32MiB")
    w.add_argument("--max-record", default=None, help="largest record if the writer creates the ring")
    w.add_argument("--policy", default=None, help="sanitizer policy file (.toml, .json, .yaml)")
    w.add_argument("--no-sanitize", action="store_true",
                   help="write records without removing PII and secrets (not recommended)")
    w.add_argument("--metrics", default=None, metavar="[HOST:]PORT",
                   help="serve Prometheus metrics (loopback unless HOST is given)")
    w.add_argument("--ship", action="append", default=None, metavar="URL",
                   help="also forward every record written, over TLS: relp://HOST:PORT, "
                        "syslog+tls://HOST:PORT or ls://HOST:PORT (logger-system serve); repeatable")
    w.add_argument("--tls-ca", default=None, metavar="FILE",
                   help="CA bundle the receivers' certificates must chain to (with --ship)")
    w.add_argument("--tls-cert", default=None, metavar="FILE", help="this writer's client certificate")
    w.add_argument("--tls-key", default=None, metavar="FILE", help="the client certificate's key")
    w.add_argument("--tls-server-name", default=None, metavar="NAME",
                   help="the name the receivers' certificates must have (default: the URL's host)")
    w.set_defaults(func=_writer)

    cc = sub.add_parser("check-config", help="check a writer config file and say what it sets up")
    cc.add_argument("file")
    cc.set_defaults(func=_check_config)

    s = sub.add_parser("stats", help="show a ring's shared counters")
    s.add_argument("--ring", default=None)
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.add_argument("--watch", action="store_true", help="repeat until interrupted")
    s.add_argument("--interval", type=float, default=1.0)
    s.add_argument("--server", default=None, metavar="DIR",
                   help="the counters of the log server whose --dir is DIR, instead of a ring's")
    s.set_defaults(func=_stats)

    c = sub.add_parser("cat", help="print records of log files or directories, in order")
    c.add_argument("--key", default=None, help="key file for sealed files")
    c.add_argument("--identity", default=None, help="X25519 identity file for sealed files")
    c.add_argument("--follow", "-f", action="store_true", help="keep printing records as they are written")
    c.add_argument("--accept-loss", action="store_true",
                   help="as verify --accept-loss: recorded losses are notes, not faults")
    c.add_argument("--output", "-o", choices=("json", "text"), default=None,
                   help="json: the records' JSON lines (the default); text: one human-readable "
                        "line per record (control characters escaped)")
    c.add_argument("--text", action="store_true", help="the same as --output text")
    c.add_argument("--since", "-S", default=None, metavar="TIME",
                   help="records at or after TIME: RFC 3339 (2024-05-01T12:00:00Z, ...+02:00), "
                        "a date (midnight UTC) or a time ago (90s, 10m, 2h, 3d)")
    c.add_argument("--until", "-U", default=None, metavar="TIME", help="records at or before TIME")
    c.add_argument("--level", default=None, metavar="LEVEL",
                   help="records of this level and above: debug, info, warning, error, critical or a number")
    c.add_argument("--logger", action="append", default=None, metavar="GLOB",
                   help="records of loggers matching this glob (case-sensitive, e.g. 'app.db.*'); repeatable")
    c.add_argument("--pid", action="append", default=None, metavar="PID",
                   help="records of this process id; repeatable")
    c.add_argument("--grep", "-g", default=None, metavar="RE",
                   help="records whose msg matches this RE2 pattern (anywhere; (?i) to ignore case)")
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="log files or directories; several directories (one writer each) are merged by ts")
    c.set_defaults(func=_cat)

    v = sub.add_parser("verify", help="check sealed files: authentic, complete, in sequence")
    v.add_argument("--key", default=None)
    v.add_argument("--identity", default=None)
    v.add_argument("--accept-loss", action="store_true",
                   help="report records the writer recorded as lost, and damaged files it moved aside, "
                        "as notes instead of failing (once investigated)")
    v.add_argument("--heads", default=None, metavar="FILE",
                   help="also check the chain heads a receiver kept for this directory "
                        "(serve's DIR/.serve/heads/<client>.jsonl): a tail cut or rewritten here fails")
    v.add_argument("paths", nargs="+", metavar="PATH",
                   help="log files or directories; each directory is checked as a sequence of its own")
    v.set_defaults(func=_verify)

    k = sub.add_parser("keygen", help="make a key file (or an X25519 identity)")
    k.add_argument("--out", required=True, help="where to write it (mode 0600; never overwritten)")
    k.add_argument("--x25519", action="store_true", help="an identity; prints the recipient string")
    k.add_argument("--rotate", action="store_true",
                   help="add a new active key in front of an existing key file")
    k.set_defaults(func=_keygen)

    d = sub.add_parser("demo", help="run a writer and producers on built-in defaults")
    d.add_argument("--seconds", type=float, default=3.0)
    d.add_argument("--producers", type=int, default=4)
    d.add_argument("--dir", default=None, help="write and keep the logs and key here (default: a temp dir, removed at the end)")
    d.set_defaults(func=_demo)

    r = sub.add_parser("ring", help="list or remove rings")
    rs = r.add_subparsers(dest="ring_cmd", required=True)
    rs.add_parser("ls")
    rm = rs.add_parser("rm")
    rm.add_argument("names", nargs="+")
    r.set_defaults(func=_ring)
    _serve_parser(sub)
    return p


# ---- the log server: `serve` and `stats --server` -----------------------------------------

def _serve_config(args: argparse.Namespace):
    from .metrics import parse_listen as parse_host_port
    from .rotation import parse_duration, parse_size
    from .serve.server import ServeConfig

    if ":" not in args.listen:
        raise ConfigError(f"--listen {args.listen!r}: give HOST:PORT (e.g. 0.0.0.0:6514)")
    try:
        host, port = parse_host_port(args.listen)
    except ConfigError:
        raise ConfigError(f"--listen {args.listen!r}: give HOST:PORT with an IP address (or localhost) "
                          "and a port 0..65535, e.g. 0.0.0.0:6514 or [::]:6514") from None

    def duration(flag: str, value):
        try:
            return parse_duration(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{flag} {value!r}: {exc}") from None

    def size(flag: str, value):
        try:
            return parse_size(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{flag} {value!r}: {exc}") from None

    return ServeConfig(
        listen=(host, port), dir=Path(args.dir), tls_ca=Path(args.tls_ca), tls_cert=Path(args.tls_cert),
        tls_key=Path(args.tls_key), allow=tuple(args.allow or ()),
        allow_file=Path(args.allow_file) if args.allow_file else None,
        key=Path(args.key) if args.key else None,
        recipient=",".join(args.recipient) if args.recipient else None, plaintext=args.plaintext,
        rate_limit=args.rate_limit, policy=Path(args.policy) if args.policy else None, metrics=args.metrics,
        max_handshakes=args.max_handshakes,
        handshake_timeout=duration("--handshake-timeout", args.handshake_timeout),
        frame_timeout=duration("--frame-timeout", args.frame_timeout),
        idle_timeout=duration("--idle-timeout", args.idle_timeout),
        max_connections=args.max_connections, max_client_connections=args.max_client_connections,
        max_frame=size("--max-frame", args.max_frame),
        rotate_size=size("--rotate-size", args.rotate_size),
        rotate_interval=duration("--rotate-interval", args.rotate_interval) if args.rotate_interval else None,
        keep=args.keep, sanitize=not args.no_sanitize)


def _serve(args: argparse.Namespace) -> int:
    from .serve.server import Server

    return Server(_serve_config(args)).run()


def _server_stats(args: argparse.Namespace) -> int:
    from .files.chain import writer_holds
    from .serve import state

    directory = Path(args.server)
    try:
        d = state.read(directory)
    except FileNotFoundError:
        raise ConfigError(f"{directory}: no server counters here ({state.stats_path(directory)}); is it "
                          "the --dir of a `logger-system serve`?") from None
    except OSError as exc:
        raise ConfigError(f"{state.stats_path(directory)}: cannot read: {exc.strerror}") from None
    d.setdefault("server", {})["running"] = writer_holds(directory)
    if args.json:
        print(json.dumps(d, sort_keys=True))
        return 0
    srv = d["server"]
    print(f"log server {directory}: {'running, pid ' + str(srv.get('pid')) if srv['running'] else 'not running'}"
          f", counters of {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(srv.get('updated', 0)))}")
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted((d.get("handshake_refused") or {}).items()) if v)
    print(f"  handshake failures {d.get('handshake_failures', 0):,}" + (f" ({reasons})" if reasons else ""))
    for name, c in sorted(d["clients"].items()):
        print(f"  {name}: " + ", ".join(f"{k} {c.get(k, 0):,}" for k in (
            "received", "written", "duplicates", "refused_rate", "malformed", "lost", "timeouts",
            "connected")))
    return 0


def _serve_parser(sub) -> None:
    sv = sub.add_parser("serve", help="the log server: receive shipped records over mutual TLS")
    sv.add_argument("--listen", required=True, metavar="HOST:PORT", help="the address to listen on, only it")
    sv.add_argument("--dir", required=True, help="where DIR/<client name>/ directories go")
    sv.add_argument("--tls-ca", required=True, metavar="FILE", help="CA bundle client certificates chain to")
    sv.add_argument("--tls-cert", required=True, metavar="FILE", help="the server's certificate (chain)")
    sv.add_argument("--tls-key", required=True, metavar="FILE", help="the server certificate's key")
    sv.add_argument("--allow", action="append", default=None, metavar="NAME",
                    help="a certificate name (DNS SAN, else CN) that may ship; globs allowed; repeatable")
    sv.add_argument("--allow-file", default=None, metavar="FILE",
                    help="more --allow names, one per line; read again on SIGHUP")
    g = sv.add_mutually_exclusive_group()
    g.add_argument("--key", default=None, help="seal the files with this key file")
    g.add_argument("--recipient", action="append", default=None, help="seal the files for this recipient")
    g.add_argument("--plaintext", action="store_true", help="write unencrypted files")
    sv.add_argument("--rate-limit", type=float, default=None, metavar="N",
                    help="at most N records/s per client (ls:// shippers are slowed, syslog excess dropped)")
    sv.add_argument("--policy", default=None, help="sanitizer policy file (the server sanitizes again)")
    sv.add_argument("--no-sanitize", action="store_true", help="do not sanitize again (not recommended)")
    sv.add_argument("--metrics", default=None, metavar="[HOST:]PORT", help="serve Prometheus metrics")
    sv.add_argument("--max-handshakes", type=int, default=64, help="TLS handshakes in progress at most")
    sv.add_argument("--handshake-timeout", default="5s", help="a handshake must finish within this")
    sv.add_argument("--frame-timeout", default="30s", help="a frame begun must be complete within this")
    sv.add_argument("--idle-timeout", default="10m", help="a connection with no frame this long is closed")
    sv.add_argument("--max-connections", type=int, default=1024, help="connections served at once")
    sv.add_argument("--max-client-connections", type=int, default=8,
                    help="connections of one client name served at once")
    sv.add_argument("--max-frame", default="8MiB", help="the largest batch frame accepted")
    sv.add_argument("--rotate-size", default="64MiB", help="rotate each client's file at this size")
    sv.add_argument("--rotate-interval", default=None, help="rotate each client's file after this long")
    sv.add_argument("--keep", type=int, default=None, help="files kept per client (default: all)")
    sv.set_defaults(func=_serve)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "writer" and not args.dir and not args.config:
        print("logger-system writer: --dir is required (or a --config with dir)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"logger-system {args.cmd}: {exc}", file=sys.stderr)
        return 2
    except CorruptRecordError as exc:
        for line in str(exc).splitlines():  # one fault per line, each naming its file
            print(f"logger-system {args.cmd}: {line}", file=sys.stderr)
        return 1
    except LoggerSystemError as exc:
        print(f"logger-system {args.cmd}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
