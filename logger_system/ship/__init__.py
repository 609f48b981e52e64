"""Shipping records off the host.

  syslog.py       RFC 5424 messages from records, RFC 5425 octet-counted framing (sans-IO)
  relp.py         the RELP client protocol: frames, offers, transaction window (sans-IO)
  ls.py           the ls:// protocol to `logger-system serve` (sans-IO)
  tls.py          client SSLContext objects: TLS 1.2+, verified chain and name, mutual TLS
  client.py       blocking clients over a socket and the sans-IO cores: RelpClient,
                  SyslogTlsClient
  target.py       `--ship` URLs (relp://, syslog+tls://, ls://) and the client for each
  destination.py  a configured destination: its URL and TLS files, checked
  spool.py        a destination's durable, sealed, bounded spool
  shipper.py      the writer's sink and one shipper thread per destination
  errors.py       this layer's branch of logger_system.errors' hierarchy

The protocol modules never touch a socket, a clock or a thread: they take bytes and give
bytes and events, so that every rule is tested by feeding bytes.  No transport here speaks
plaintext: every client needs an SSLContext.
"""
