"""A real rsyslogd for the shipping tests, and the certificates it and its clients use.

`Rsyslog(workdir, certs)` writes a configuration into workdir that reads nothing of the
system (no imuxsock, no imklog, no /etc/rsyslog.conf) and listens on 127.0.0.1 only:

  imrelp  TLS (librelp over OpenSSL), tls.authmode="name", permitted peer `client.test`
  imtcp   the ossl stream driver, mode 1 (TLS), x509/name, permitted peer `client.test`

Both feed one ruleset that writes every message, as rsyslog parsed it plus the raw
message, as a JSON line to `received.jsonl`.  The main queue is Direct: a message is in
the file (the page cache, which survives SIGKILL) before imrelp acknowledges it, so that
an acknowledged message is never lost by killing rsyslogd.  rsyslog's own messages (a
refused peer, for instance) go to `internal.log`.

rsyslogd runs in the foreground (`-n`) as a child of the test, its stderr in a file; every
wait is bounded, and `stop()` (also on `with` exit) kills it whatever happened.  Tests skip,
saying why, when rsyslogd or one of its modules is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE_DIR = Path("/usr/lib/x86_64-linux-gnu/rsyslog")
NEEDED_MODULES = {"imrelp.so": "rsyslog-relp", "imtcp.so": "rsyslog", "lmnsd_ossl.so": "rsyslog-openssl"}
ALLOWED = "client.test"  # the name the rsyslog inputs permit
REFUSED = "intruder.test"  # a client of the right CA with a name not permitted


def skip_unless_rsyslog() -> str:
    """rsyslogd's path; pytest.skip with the missing package otherwise."""
    rsyslogd = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
    if rsyslogd is None:
        pytest.skip("rsyslogd is not installed (Debian: apt-get install rsyslog rsyslog-openssl rsyslog-relp)")
    missing = [pkg for so, pkg in NEEDED_MODULES.items() if not (MODULE_DIR / so).exists()]
    if missing:
        pytest.skip(f"rsyslog modules missing from {MODULE_DIR} (Debian: apt-get install {' '.join(sorted(set(missing)))})")
    return rsyslogd


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    """A CA, the server (127.0.0.1, localhost), an allowed and a refused client, and a
    client whose certificate comes from another CA."""

    ca: Path
    server: Pair
    client: Pair
    refused: Pair
    other_ca: Path
    stranger: Pair  # named like the allowed client, signed by other_ca

    @classmethod
    def make(cls, directory: Path) -> Certs:
        trustme = pytest.importorskip("trustme", reason="trustme (the test extra) makes the test certificates")
        directory.mkdir(parents=True, exist_ok=True)

        def pair(ca: "trustme.CA", name: str, *sans: str) -> Pair:
            leaf = ca.issue_cert(*sans, common_name=name)
            cert, key = directory / f"{name}.pem", directory / f"{name}.key"
            leaf.cert_chain_pems[0].write_to_path(cert)
            leaf.private_key_pem.write_to_path(key)
            os.chmod(key, 0o600)
            return Pair(cert, key)

        ca, other = trustme.CA(organization_name="ship test CA"), trustme.CA(organization_name="another CA")
        ca.cert_pem.write_to_path(directory / "ca.pem")
        other.cert_pem.write_to_path(directory / "other-ca.pem")
        return cls(ca=directory / "ca.pem",
                   server=pair(ca, "server", "127.0.0.1", "localhost"),
                   client=pair(ca, ALLOWED, ALLOWED),
                   refused=pair(ca, REFUSED, REFUSED),
                   other_ca=directory / "other-ca.pem",
                   stranger=pair(other, "stranger", ALLOWED))


def config(workdir: Path, certs: Certs, relp_port: int, tcp_port: int) -> str:
    """The rsyslog configuration the tests run (docs/SHIPPING.md shows the same inputs)."""
    s, c = certs.server, certs
    return f"""\
global(workDirectory="{workdir}" maxMessageSize="64k" net.enableDNS="off"
       defaultNetstreamDriverCAFile="{c.ca}"
       defaultNetstreamDriverCertFile="{s.cert}"
       defaultNetstreamDriverKeyFile="{s.key}")
main_queue(queue.type="Direct")

module(load="imrelp" tls.tlsLib="openssl")
input(type="imrelp" address="127.0.0.1" port="{relp_port}" ruleset="received"
      tls="on" tls.caCert="{c.ca}" tls.myCert="{s.cert}" tls.myPrivKey="{s.key}"
      tls.authMode="name" tls.permittedPeer=["{ALLOWED}"])

module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1"
       streamDriver.authMode="x509/name" permittedPeer=["{ALLOWED}"])
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="received")

template(name="received" type="string"
         string="{{\\"input\\":\\"%inputname%\\",\\"v\\":\\"%protocol-version:::json%\\",\\"pri\\":\\"%pri%\\",\\"msgid\\":\\"%msgid:::json%\\",\\"sd\\":\\"%structured-data:::json%\\",\\"raw\\":\\"%rawmsg:::json%\\"}}\\n")
ruleset(name="received") {{
    action(type="omfile" file="{workdir}/received.jsonl" template="received"
           flushOnTXEnd="on" asyncWriting="off")
}}
*.* action(type="omfile" file="{workdir}/internal.log")
"""


class Rsyslog:
    """rsyslogd in the foreground with the configuration above; start, kill, restart."""

    def __init__(self, workdir: Path, certs: Certs) -> None:
        self.rsyslogd = skip_unless_rsyslog()
        self.workdir = workdir
        self.certs = certs
        workdir.mkdir(parents=True, exist_ok=True)
        self.relp_port, self.tcp_port = free_port(), free_port()
        self.conf = workdir / "rsyslog.conf"
        self.conf.write_text(config(workdir, certs, self.relp_port, self.tcp_port))
        self.pidfile = workdir / "rsyslogd.pid"
        self.received = workdir / "received.jsonl"
        self.internal = workdir / "internal.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 15.0) -> Rsyslog:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("rsyslogd is already running")
        self.pidfile.unlink(missing_ok=True)
        self.starts += 1
        err = open(self.workdir / f"rsyslogd-{self.starts}.err", "wb")
        try:
            self.proc = subprocess.Popen([self.rsyslogd, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        finally:
            err.close()
        deadline = time.monotonic() + timeout
        waiting = {self.relp_port, self.tcp_port}
        while waiting:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited with {self.proc.returncode} at start:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rsyslogd did not listen on {sorted(waiting)} in {timeout:g} s:\n{self.output()}")
            for port in list(waiting):
                if _listening(port):
                    waiting.discard(port)
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no serverclose, nothing flushed by rsyslog itself."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> Rsyslog:
        self.kill()
        return self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; never raises if it is gone already."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def output(self) -> str:
        parts = []
        for path in sorted(self.workdir.glob("rsyslogd-*.err")) + [self.internal]:
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def lines(self) -> list[dict]:
        """What rsyslog wrote so far, one dict per message (a last partial line is left)."""
        if not self.received.exists():
            return []
        data = self.received.read_bytes()
        return [json.loads(line) for line in data.split(b"\n")[:-1] if line]

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        """The received messages once there are at least count, or all there are at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.lines()
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    # /proc/net/tcp, not a connect: a probe connection would be a failed handshake in
    # rsyslog's log, and imrelp would count it
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            return any(line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:])
    except OSError:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0
