"""The `logger-system` command: main(argv) -> exit status."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import config as config_mod
from .errors import ConfigError, CorruptRecordError, LoggerSystemError, RingError
from .ring import Ring, ring_name, unlink


def _writer(args: argparse.Namespace) -> int:
    from .writer import Writer

    if args.key or args.recipient:
        raise ConfigError("sealing with --key/--recipient is not available in this version; "
                          "pass --plaintext to write unencrypted files")
    cfg = config_mod.build(
        args.config, ring=args.ring, dir=args.dir, plaintext=True if args.plaintext else None,
        rotate_size=args.rotate_size, rotate_interval=args.rotate_interval, keep=args.keep,
        fsync=args.fsync, min_level=args.min_level, capacity=args.capacity,
        max_record=args.max_record, policy=args.policy,
        sanitize=False if args.no_sanitize else None)
    if not cfg.plaintext:
        raise ConfigError(
            "refusing to write logs without encryption: pass --plaintext to write them unencrypted "
            "(sealed files with --key FILE from `logger-system keygen --out FILE` are not "
            "available in this version)")
    return Writer(cfg).run()


def _stats(args: argparse.Namespace) -> int:
    name = ring_name(args.ring)
    try:
        ring = Ring(name, create=False)
    except RingError as exc:
        raise RingError(f"{exc} (is a writer or producer running for ring {name!r}?)") from None
    try:
        while True:
            d = ring.stats().as_dict()
            if args.json:
                print(json.dumps(d), flush=True)
            else:
                _print_stats(d)
            if not args.watch:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        ring.close()


def _print_stats(d: dict) -> None:
    width = 30
    bar = "#" * round(d["utilization"] * width)
    beat = d["writer_heartbeat_ns"]
    writer = "none"
    if d["writer_pid"] > 0:
        age = time.monotonic_ns() - beat
        writer = f"pid {d['writer_pid']}, last seen {age / 1e9:.1f}s ago"
    print(f"ring {d['name']} ({d['ring_id']})  writer: {writer}")
    print(f"  used      [{bar:<{width}}] {d['utilization'] * 100:5.1f}%  "
          f"{d['used_bytes']}/{d['capacity_bytes']} bytes, high water {d['high_water_bytes']}")
    for key in ("committed", "written", "in_ring", "dropped", "abandoned", "malformed", "truncated",
                "format_errors", "filtered", "writer_errors", "sanitized", "blocked"):
        print(f"  {key:<14}{d[key]:>14}")


def _cat(args: argparse.Namespace) -> int:
    from .reader import iter_lines, render_text

    out = sys.stdout.buffer
    for line in iter_lines([Path(p) for p in args.paths]):
        if args.text:
            out.write(render_text(json.loads(line)).encode("utf-8", "backslashreplace") + b"\n")
        else:
            out.write(line)
    out.flush()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(seconds=args.seconds, producers=args.producers, keep_dir=args.dir)


def _ring(args: argparse.Namespace) -> int:
    if args.ring_cmd == "ls":
        names = sorted(n for n in os.listdir("/dev/shm") if not n.startswith("sem."))
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
    g.add_argument("--key", default=None, help="symmetric key file")
    g.add_argument("--recipient", default=None, help="X25519 public recipient")
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
    w.set_defaults(func=_writer)

    s = sub.add_parser("stats", help="show a ring's shared counters")
    s.add_argument("--ring", default=None)
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.add_argument("--watch", action="store_true", help="repeat until interrupted")
    s.add_argument("--interval", type=float, default=1.0)
    s.set_defaults(func=_stats)

    c = sub.add_parser("cat", help="print records of log files or directories, in order")
    c.add_argument("--key", default=None)
    c.add_argument("--identity", default=None)
    c.add_argument("--text", action="store_true",
                   help="one human-readable line per record (control characters escaped)")
    c.add_argument("paths", nargs="+")
    c.set_defaults(func=_cat)

    d = sub.add_parser("demo", help="run a writer and producers on built-in defaults")
    d.add_argument("--seconds", type=float, default=3.0)
    d.add_argument("--producers", type=int, default=4)
    d.add_argument("--dir", default=None, help="keep the output here (default: a temp dir)")
    d.set_defaults(func=_demo)

    r = sub.add_parser("ring", help="list or remove rings")
    rs = r.add_subparsers(dest="ring_cmd", required=True)
    rs.add_parser("ls")
    rm = rs.add_parser("rm")
    rm.add_argument("names", nargs="+")
    r.set_defaults(func=_ring)
    return p


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
        print(f"logger-system {args.cmd}: {exc}", file=sys.stderr)
        return 1
    except LoggerSystemError as exc:
        print(f"logger-system {args.cmd}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
