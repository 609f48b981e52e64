"""Where the writer ships, as configured: every destination over TLS, every mistake named."""
from __future__ import annotations

import subprocess
import sys

import pytest

from logger_system import config
from logger_system.errors import ConfigError


@pytest.fixture
def ca(tmp_path):
    from rsyslog_env import Certs

    return Certs.make(tmp_path / "pki").ca


def test_ship_flags_make_one_destination_per_url(ca, tmp_path):
    cfg = config.build(ship=["ls://127.0.0.1:6514", "relp://logs.example.com:2514"],
                       tls={"tls_ca": str(ca), "tls_cert": None, "tls_key": None, "tls_server_name": None},
                       plaintext=True, dir=str(tmp_path))
    assert [(d.scheme, d.host, d.port, d.server_name) for d in cfg.ship] == [
        ("ls", "127.0.0.1", 6514, "127.0.0.1"), ("relp", "logs.example.com", 2514, "logs.example.com")]


@pytest.mark.parametrize("url,match", [
    ("http://127.0.0.1:80", "unknown scheme"),
    ("tcp://127.0.0.1:514", "unknown scheme"),
    ("ls://127.0.0.1", "SCHEME://HOST:PORT"),
    ("ls://127.0.0.1:0", "outside 1..65535"),
    ("ls://127.0.0.1:99999", "outside 1..65535"),
    ("ls://127.0.0.1:６５", "SCHEME://HOST:PORT"),
    ("ls://bad_host!:514", "not a host name"),
    ("ls://127.0.0.1:514/path", "SCHEME://HOST:PORT"),
])
def test_a_bad_url_is_refused_by_name(url, match, ca):
    with pytest.raises(ConfigError, match=match):
        config.build(ship=[url], tls={"tls_ca": str(ca)}, plaintext=True)


def test_there_is_no_plaintext_transport_a_ca_is_required(tmp_path):
    with pytest.raises(ConfigError, match="needs tls_ca"):
        config.build(ship=["ls://127.0.0.1:6514"], tls={}, plaintext=True)
    with pytest.raises(ConfigError, match="does not exist"):
        config.build(ship=["ls://127.0.0.1:6514"], tls={"tls_ca": str(tmp_path / "missing.pem")}, plaintext=True)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not a PEM file"):
        config.build(ship=["ls://127.0.0.1:6514"], tls={"tls_ca": str(tmp_path / "junk.pem")}, plaintext=True)


def test_tls_flags_without_ship_and_a_cert_without_its_key_are_refused(ca):
    with pytest.raises(ConfigError, match="go with --ship"):
        config.build(tls={"tls_ca": str(ca)}, plaintext=True)
    with pytest.raises(ConfigError, match="go together"):
        config.build(ship=["ls://127.0.0.1:1"], tls={"tls_ca": str(ca), "tls_cert": str(ca)}, plaintext=True)
    with pytest.raises(ConfigError, match="not a pair"):  # a CA certificate is no client's key
        config.build(ship=["ls://127.0.0.1:1"], tls={"tls_ca": str(ca), "tls_cert": str(ca),
                                                    "tls_key": str(ca)}, plaintext=True)


def test_ship_tables_in_the_config_file(ca, tmp_path):
    f = tmp_path / "w.toml"
    f.write_text(f'[writer]\nplaintext = true\ndir = "{tmp_path}/logs"\n\n'
                 f'[[ship]]\nurl = "syslog+tls://127.0.0.1:6514"\ntls_ca = "{ca}"\nspool_size = "64MiB"\n\n'
                 f'[[ship]]\nurl = "ls://[::1]:7000"\ntls_ca = "{ca}"\ntls_server_name = "logs.internal"\n')
    cfg = config.build(f)
    assert [(d.scheme, d.host, d.server_name, d.spool_size) for d in cfg.ship] == [
        ("syslog+tls", "127.0.0.1", "127.0.0.1", 64 << 20), ("ls", "::1", "logs.internal", 1 << 30)]
    r = subprocess.run([sys.executable, "-P", "-m", "logger_system", "check-config", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ship: syslog+tls://127.0.0.1:6514 over TLS" in r.stdout and "server name logs.internal" in r.stdout
    f.write_text(f'[writer]\nplaintext = true\n[[ship]]\nurl = "ls://127.0.0.1:1"\ntls_ca = "{ca}"\nretries = 3\n')
    with pytest.raises(ConfigError, match="unknown key"):
        config.build(f)


def test_a_relp_window_is_a_relp_destinations_own(ca, tmp_path):
    f = tmp_path / "w.toml"
    f.write_text(f'[writer]\nplaintext = true\n[[ship]]\nurl = "relp://127.0.0.1:2514"\ntls_ca = "{ca}"\n'
                 f'relp_window = 1024\n')
    assert [d.relp_window for d in config.build(f).ship] == [1024]
    for bad, match in (("0", "1..65536"), ("true", "1..65536"), ('"9"', "1..65536"), ("70000", "1..65536")):
        f.write_text(f'[writer]\nplaintext = true\n[[ship]]\nurl = "relp://127.0.0.1:2514"\ntls_ca = "{ca}"\n'
                     f'relp_window = {bad}\n')
        with pytest.raises(ConfigError, match=match):
            config.build(f)
    f.write_text(f'[writer]\nplaintext = true\n[[ship]]\nurl = "ls://127.0.0.1:1"\ntls_ca = "{ca}"\nrelp_window = 64\n')
    with pytest.raises(ConfigError, match="for relp:// destinations"):
        config.build(f)


def test_the_writer_refuses_a_bad_ship_flag_before_it_starts(tmp_path):
    r = subprocess.run([sys.executable, "-P", "-m", "logger_system", "writer", "--ring", "never-made",
                        "--dir", str(tmp_path / "logs"), "--plaintext", "--ship", "ls://127.0.0.1:6514"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "needs tls_ca" in r.stderr
    assert not (tmp_path / "logs").exists()
