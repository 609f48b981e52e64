"""Rate and budget decisions, sans-IO: every clock reading is passed in.

RateLimit      a token bucket of N records/s per client, holding at most one second of
               records.  `delay(count, now)` takes the records and says how long the
               caller must wait before it acknowledges them: a debt, paid by waiting, so
               an `ls://` shipper is slowed to N records/s and loses nothing.  `allow`
               is the all-or-nothing form for a transport that cannot be slowed (syslog
               over TLS): past the rate the records are dropped, and the caller counts them
               in `refused_rate`.
HandshakeBudget  at most `limit` TLS handshakes in progress, each for at most `timeout`
               seconds.  When a new connection arrives and the budget is spent, the oldest
               handshake in progress is given up (counted): a peer that opens connections
               and never finishes them holds a slot for at most `timeout` and cannot keep
               newcomers out, while a real client finishes in milliseconds.
"""
from __future__ import annotations

from collections import OrderedDict


class RateLimit:
    def __init__(self, rate: float, now: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(rate)  # one second's worth
        self.tokens = self.burst
        self.last = now

    def _refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now

    def delay(self, count: int, now: float) -> float:
        """Take `count` records; seconds to wait before acknowledging them."""
        self._refill(now)
        self.tokens -= count
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def allow(self, count: int, now: float) -> bool:
        """Take `count` records if there is room for them now; never goes into debt."""
        self._refill(now)
        if self.tokens >= count:
            self.tokens -= count
            return True
        return False


class HandshakeBudget:
    """Handshakes in progress, oldest first: key -> deadline."""

    def __init__(self, limit: int, timeout: float) -> None:
        if limit < 1 or not timeout > 0:
            raise ValueError("a handshake budget needs limit >= 1 and timeout > 0")
        self.limit = limit
        self.timeout = timeout
        self._open: OrderedDict[object, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, key: object, now: float) -> list[object]:
        """Start a handshake; returns the ones to give up to make room for it (oldest)."""
        evicted = []
        while len(self._open) >= self.limit:
            old, _ = self._open.popitem(last=False)
            evicted.append(old)
        self._open[key] = now + self.timeout
        return evicted

    def done(self, key: object) -> None:
        self._open.pop(key, None)

    def expired(self, now: float) -> list[object]:
        """Handshakes past their deadline (removed from the budget)."""
        late = [k for k, d in self._open.items() if d <= now]
        for k in late:
            del self._open[k]
        return late

    def next_deadline(self) -> float | None:
        return min(self._open.values()) if self._open else None
