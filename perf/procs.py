"""Child processes of the perf scenarios."""
from __future__ import annotations

import subprocess


def stop(p: subprocess.Popen, grace: float = 60.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within grace seconds."""
    if p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
