"""Rate limits shared by every worker: a sliding-window counter per bucket, kept in Postgres.

One statement a request (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, autocommit): it counts the hit in the
current fixed window and returns the previous window's count, and the limit applies to the sliding estimate
`previous * (1 - elapsed / window) + current` (no double burst at a window edge). A refused request is taken
back out of the count by a second statement, so refusals never push the window away and Retry-After holds: a
client that waits as long as it says gets through. Windows older than the previous
one are deleted by the same statement, once per window and process. Postgres's clock is the only clock, so
workers on several machines agree.

Buckets: `key:<api key id>` for a valid key, `addr:<client address>` (IPv6 by /64) for anonymous requests and for
invalid keys. If Postgres does not answer, requests go through (fail open) for a second with one log line: the
query itself answers 503 then, and a limiter must never be the reason for an outage.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from app.settings import Settings

log = logging.getLogger(__name__)
FAIL_OPEN_PAUSE_S = 1.0

_HIT = text("""
WITH clock AS (
    SELECT to_timestamp(floor(extract(epoch FROM now()) / :window) * :window) AS window_start,
           extract(epoch FROM now()) AS now_s
), pruned AS (
    DELETE FROM rate_limit_counter
    WHERE :prune AND window_start < (SELECT window_start FROM clock) - make_interval(secs => :window)
)
INSERT INTO rate_limit_counter AS c (bucket, window_start, hits)
SELECT :bucket, window_start, 1 FROM clock
ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + 1
RETURNING c.hits, extract(epoch FROM c.window_start)::float8 AS window_start,
          (SELECT now_s - extract(epoch FROM c.window_start) FROM clock)::float8 AS elapsed,
          COALESCE((SELECT p.hits FROM rate_limit_counter p
                    WHERE p.bucket = :bucket AND p.window_start = c.window_start - make_interval(secs => :window)),
                   0) AS previous
""")
# A refused request is taken back out of the count: refusals must not push the window further away.
_UNCOUNT = text("""
UPDATE rate_limit_counter SET hits = hits - 1
WHERE bucket = :bucket AND window_start = to_timestamp(:window_start) AND hits > 0
""")


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_s: int  # seconds until the current window ends
    retry_after_s: int | None  # set when the request is refused

    @property
    def allowed(self) -> bool:
        return self.retry_after_s is None

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-ratelimit-limit", str(self.limit).encode()),
                   (b"x-ratelimit-remaining", str(self.remaining).encode()),
                   (b"x-ratelimit-reset", str(self.reset_s).encode())]
        if self.retry_after_s is not None:
            headers.append((b"retry-after", str(self.retry_after_s).encode()))
        return headers


class RateLimitExceeded(Exception):
    def __init__(self, state: RateLimitState, who: str) -> None:
        super().__init__(who)
        self.state = state
        self.who = who


def evaluate(*, hits: int, previous: int, elapsed: float, window: int, limit: int) -> RateLimitState:
    """The sliding-window decision for counts read from the table (pure: tested on its own).

    `hits` includes this request. A refused request is not counted (the caller takes it back), so Retry-After is
    the wait until one more request fits under the estimate, given the requests counted so far: a client that
    waits that long gets through.
    """
    elapsed = min(max(elapsed, 0.0), float(window))
    weight = 1 - elapsed / window
    estimate = previous * weight + hits
    reset_s = max(1, math.ceil(window - elapsed))
    remaining = max(0, math.floor(limit - estimate))
    if estimate <= limit:
        return RateLimitState(limit=limit, remaining=remaining, reset_s=reset_s, retry_after_s=None)
    return RateLimitState(limit=limit, remaining=0, reset_s=reset_s,
                          retry_after_s=max(1, math.ceil(_wait_for_room(hits - 1, previous, elapsed, window, limit))))


def _wait_for_room(counted: int, previous: int, elapsed: float, window: int, limit: int) -> float:
    """Seconds until a request counted on top of `counted` (this window) and `previous` (the last) is allowed."""
    if counted + 1 <= limit and previous > 0:
        # still in this window, once the previous window's share has shrunk enough
        in_this_window = (1 - (limit - counted - 1) / previous) * window - elapsed
        if elapsed + in_this_window < window:
            return max(0.0, in_this_window)
    # next window: this window's count becomes the shrinking previous share
    into_next = max(0.0, (1 - (limit - 1) / counted) * window) if counted > 0 else 0.0
    return window - elapsed + into_next


def client_bucket(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"addr:{address[:100]}"
    if ip.version == 6 and ip.ipv4_mapped is None:
        return f"addr:{ipaddress.ip_network(f'{ip}/64', strict=False)}"  # one host, one /64
    return f"addr:{ip.ipv4_mapped or ip}" if ip.version == 6 else f"addr:{ip}"


class RateLimiter:
    def __init__(self, engine: Engine, window_s: int) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")  # one round trip, no BEGIN/COMMIT
        self._window = window_s
        self._pruned_window = -1
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def hit(self, bucket: str, limit: int) -> RateLimitState | None:
        """Count one request of `bucket`; None when the limiter's database is unavailable (fail open)."""
        if time.monotonic() < self._paused_until:
            return None
        current_window = int(time.time() // self._window)
        with self._lock:
            prune = current_window != self._pruned_window
            self._pruned_window = current_window
        try:
            with self._engine.connect() as conn:
                hits, window_start, elapsed, previous = conn.execute(
                    _HIT, {"bucket": bucket, "window": self._window, "prune": prune}).one()
                state = evaluate(hits=hits, previous=previous, elapsed=elapsed, window=self._window, limit=limit)
                if not state.allowed:
                    conn.execute(_UNCOUNT, {"bucket": bucket, "window_start": window_start})
        except SQLAlchemyError as exc:
            self._paused_until = time.monotonic() + FAIL_OPEN_PAUSE_S
            log.warning("rate limiter unavailable, requests pass unlimited for %.0f s: %s", FAIL_OPEN_PAUSE_S,
                        str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            return None
        return state


def limiter_for(app: Any, settings: Settings) -> RateLimiter | None:
    """The app's limiter, made on first use from its engine (None when rate limits are off)."""
    if not settings.rate_limit_enabled:
        return None
    limiter = getattr(app.state, "rate_limiter", None)
    if limiter is None:
        limiter = app.state.rate_limiter = RateLimiter(app.state.engine, settings.rate_limit_window_s)
    return limiter
