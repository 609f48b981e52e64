"""`--ship` URLs: the three schemes, hosts of every kind, and nothing plaintext."""
from __future__ import annotations

import pytest

from logger_system.errors import ConfigError
from logger_system.ship.target import Target, parse_target


@pytest.mark.parametrize("url, target", [
    ("relp://logs.example.net:2514", Target("relp", "logs.example.net", 2514)),
    ("syslog+tls://127.0.0.1:6514", Target("syslog+tls", "127.0.0.1", 6514)),
    ("syslog+tls://[2001:DB8::5]:6514/", Target("syslog+tls", "2001:db8::5", 6514)),
    ("ls://collector:7000", Target("ls", "collector", 7000)),
    ("RELP://Logs.Example.NET:2514", Target("relp", "Logs.Example.NET", 2514)),
])
def test_a_ship_url_names_scheme_host_and_port(url, target):
    assert parse_target(url) == target
    assert parse_target(target.url) == target


@pytest.mark.parametrize("url, match", [
    ("tcp://logs:514", "unknown scheme"), ("udp://logs:514", "unknown scheme"),
    ("syslog://logs:514", "unknown scheme"), ("TCP://logs:514", "unknown scheme"),
    ("relp://logs", "not SCHEME"), ("relp://:2514", "not SCHEME"), ("relp://logs:0", "outside"),
    ("relp://logs:70000", "outside"), ("relp://user@logs:2514", "not SCHEME"),
    ("relp://[not:v6:x]:2514", "not SCHEME"), ("relp://[1::2::3]:2514", "not an IPv6"),
    ("relp://bad_name:2514", "not a host name"), ("relp://logs:2514/path", "not SCHEME"), (42, "text"),
])
def test_anything_else_is_a_config_error_that_says_what_is_accepted(url, match):
    with pytest.raises(ConfigError, match=match):
        parse_target(url)
