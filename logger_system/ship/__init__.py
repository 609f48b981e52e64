"""Shipping records off the host: the transports, below any spool or writer.

  syslog.py   RFC 5424 messages from records, RFC 5425 octet-counted framing (sans-IO)
  relp.py     the RELP client protocol: frames, offers, transaction window (sans-IO)
  tls.py      client SSLContext objects: TLS 1.2+, verified chain and name, mutual TLS
  client.py   blocking clients over a socket and the sans-IO cores: RelpClient,
              SyslogTlsClient
  target.py   `--ship` URLs (relp://, syslog+tls://, ls://) and the client for each
  errors.py   this layer's branch of logger_system.errors' hierarchy

The protocol modules never touch a socket, a clock or a thread: they take bytes and give
bytes and events, so that every rule is tested by feeding bytes.  Only client.py does I/O.
No transport here speaks plaintext: every client needs an SSLContext.
"""
