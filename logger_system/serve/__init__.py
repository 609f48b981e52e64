"""`logger-system serve`: the log server that writers ship to over `ls://`.

The data path, one module per step:

    server.py   sockets, TLS, threads, signals: accept, handshake under a budget, then one
                thread per connection reading frames (ship/ls.py) under frame and idle
                deadlines
    auth.py     certificate names against the allowlist: who the client is
    limits.py   the per-client rate limit and the handshake budget (pure decisions)
    ingest.py   a batch's JSON lines back into the pipeline's columns
    sink.py     DIR/<client>/: sanitize, format, seal and rotate with the writer's own
                stages and files/, and the next_n that makes delivery exactly once
    state.py    the counters, saved in DIR/.serve/stats.json for `stats --server`
    metrics.py  the same counters for Prometheus

Nothing here has a file format, a sanitizer or a chain rule of its own: a client's
directory is a directory like any writer's, and `cat` and `verify` read it as one.
"""
from __future__ import annotations

import json
import sys


def say(event: str, **fields) -> None:
    """The server's own diagnostics: one JSON object per line on stderr."""
    print(json.dumps({"serve": event, **fields}, default=str), file=sys.stderr, flush=True)
