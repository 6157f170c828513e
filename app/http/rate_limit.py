"""Rate limits shared by every worker: a sliding-window counter per bucket, kept in Postgres, spent from local leases.

The count lives in Postgres (`rate_limit_counter`, one row per bucket and fixed window) and the limit applies to the
sliding estimate `previous * (1 - elapsed / window) + current` (no double burst at a window edge). A process does not
ask Postgres for every request: it claims a lease of hits at once (`INSERT ... ON CONFLICT DO UPDATE SET hits = hits
+ n ... RETURNING`, autocommit) and spends it locally until it is used up or its window ends; a lease is a 1/20 share
of the limit (LEASE_SHARE), at least 1, so limits under 40 requests a window are counted request by request as
before. A claim that does not fit under the limit is cut to what fits, the rest taken back out of the count, and a
request refused takes nothing: refusals never push the window away, and Retry-After holds.

Claimed hits count as spent for everyone, so the limit holds across every worker and instance: no more than `limit`
requests of a bucket pass in a window's estimate. The price of leases is on the other side, and bounded: hits an
instance has claimed but not spent (at most n - 1 per instance and bucket, n = limit / LEASE_SHARE) are not
available to the same client on another instance until that lease's window has slid past; an instance's unspent
hits are not handed back at a window's end (they age out of the estimate with their window), but they are at
shutdown (`release`, from the app's lifespan), so a restart or a deploy does not cost clients their budget.
Postgres's clock is the only clock for the windows, so workers on several machines agree; windows older than the
previous one are deleted by a claim, once per window and process.

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
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from app.settings import Settings

log = logging.getLogger(__name__)
FAIL_OPEN_PAUSE_S = 1.0
LEASE_SHARE = 20  # a process claims 1/LEASE_SHARE of a bucket's limit at a time

_CLAIM = text("""
WITH clock AS (
    SELECT to_timestamp(floor(extract(epoch FROM now()) / :window) * :window) AS window_start,
           extract(epoch FROM now()) AS now_s
), pruned AS (
    DELETE FROM rate_limit_counter
    WHERE :prune AND window_start < (SELECT window_start FROM clock) - make_interval(secs => :window)
)
INSERT INTO rate_limit_counter AS c (bucket, window_start, hits)
SELECT :bucket, window_start, :claim FROM clock
ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + :claim
RETURNING c.hits, extract(epoch FROM c.window_start)::float8 AS window_start,
          (SELECT now_s - extract(epoch FROM c.window_start) FROM clock)::float8 AS elapsed,
          COALESCE((SELECT p.hits FROM rate_limit_counter p
                    WHERE p.bucket = :bucket AND p.window_start = c.window_start - make_interval(secs => :window)),
                   0) AS previous
""")
# What a claim could not be granted is taken back out of the count: refusals must not push the window further away.
_GIVE_BACK = text("""
UPDATE rate_limit_counter SET hits = greatest(hits - :count, 0)
WHERE bucket = :bucket AND window_start = to_timestamp(:window_start)
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


@lru_cache(maxsize=4096)  # parsed on every request (twice): the same few addresses come back
def client_bucket(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"addr:{address[:100]}"
    if ip.version == 6 and ip.ipv4_mapped is None:
        return f"addr:{ipaddress.ip_network(f'{ip}/64', strict=False)}"  # one host, one /64
    return f"addr:{ip.ipv4_mapped or ip}" if ip.version == 6 else f"addr:{ip}"


@dataclass
class _Lease:
    """Hits of one bucket claimed in Postgres and not spent yet by this process."""

    available: int
    estimate: float  # the sliding estimate after the claim, every hit claimed so far included
    ends_at: float  # the claim's window ends then (this process's monotonic clock)
    window_start: float  # the claim's window in Postgres (epoch seconds): where unspent hits are given back

    def spend(self, limit: int, now: float) -> RateLimitState:
        self.available -= 1
        return RateLimitState(limit=limit, remaining=max(0, math.floor(limit - self.estimate + self.available)),
                              reset_s=max(1, math.ceil(self.ends_at - now)), retry_after_s=None)


class RateLimiter:
    def __init__(self, engine: Engine, window_s: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")  # one round trip, no BEGIN/COMMIT
        self._window = window_s
        self._clock = clock
        self._pruned_window = -1
        self._paused_until = 0.0
        self._leases: dict[str, _Lease] = {}
        self._claiming: dict[str, threading.Lock] = {}  # one claim per bucket at a time
        self._lock = threading.Lock()  # guards the two dicts; never held across a database call

    def hit(self, bucket: str, limit: int) -> RateLimitState | None:
        """Count one request of `bucket`; None when the limiter's database is unavailable (fail open)."""
        if self._clock() < self._paused_until:
            return None
        state = self.spend_leased(bucket, limit)
        if state is not None:
            return state
        with self._lock:
            claiming = self._claiming.setdefault(bucket, threading.Lock())
        with claiming:
            # Another thread's claim may have refilled the lease while this one waited.
            return self.spend_leased(bucket, limit) or self._claim(bucket, limit)

    async def hit_async(self, bucket: str, limit: int) -> RateLimitState | None:
        """`hit` from the event loop: a leased hit is spent in place, a claim goes to the thread pool."""
        if self._clock() < self._paused_until:
            return None
        return self.spend_leased(bucket, limit) or await run_in_threadpool(self.hit, bucket, limit)

    def spend_leased(self, bucket: str, limit: int) -> RateLimitState | None:
        """One hit from this process's lease of `bucket`, or None when it has none left (a claim is due)."""
        now = self._clock()
        with self._lock:
            lease = self._leases.get(bucket)
            if lease is None or lease.available <= 0 or now >= lease.ends_at:
                return None
            return lease.spend(limit, now)

    def release(self) -> int:
        """Give every unspent leased hit back to Postgres (at shutdown: a restart must not cost its clients them)."""
        with self._lock:
            leases, self._leases = self._leases, {}
        unspent = [(bucket, lease) for bucket, lease in leases.items() if lease.available > 0]
        if not unspent:
            return 0
        try:
            with self._engine.connect() as conn:
                for bucket, lease in unspent:
                    conn.execute(_GIVE_BACK, {"bucket": bucket, "window_start": lease.window_start,
                                              "count": lease.available})
        except SQLAlchemyError as exc:
            log.warning("rate limiter: unspent leases not given back (they age out with their window): %s",
                        str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            return 0
        return sum(lease.available for _, lease in unspent)

    def _claim(self, bucket: str, limit: int) -> RateLimitState | None:
        claim = max(1, limit // LEASE_SHARE)
        current_window = int(time.time() // self._window)
        with self._lock:
            prune = current_window != self._pruned_window
            self._pruned_window = current_window
        try:
            with self._engine.connect() as conn:
                hits, window_start, elapsed, previous = conn.execute(
                    _CLAIM, {"bucket": bucket, "window": self._window, "prune": prune, "claim": claim}).one()
                elapsed = min(max(elapsed, 0.0), float(self._window))
                counted_before = previous * (1 - elapsed / self._window) + hits - claim
                granted = max(0, min(claim, math.floor(limit - counted_before)))
                if granted < claim:
                    conn.execute(_GIVE_BACK, {"bucket": bucket, "window_start": window_start, "count": claim - granted})
        except SQLAlchemyError as exc:
            self._paused_until = self._clock() + FAIL_OPEN_PAUSE_S
            log.warning("rate limiter unavailable, requests pass unlimited for %.0f s: %s", FAIL_OPEN_PAUSE_S,
                        str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            return None
        if granted == 0:
            return evaluate(hits=hits - claim + 1, previous=previous, elapsed=elapsed, window=self._window, limit=limit)
        now = self._clock()
        lease = _Lease(available=granted, estimate=counted_before + granted, ends_at=now + self._window - elapsed,
                       window_start=window_start)
        with self._lock:
            if prune:  # a new window: the leases of ended windows go
                self._leases = {b: held for b, held in self._leases.items() if held.ends_at > now}
                self._claiming = {b: lock for b, lock in self._claiming.items() if b in self._leases or b == bucket}
            self._leases[bucket] = lease
            return lease.spend(limit, now)  # this request's hit, before anyone else can take the last one


def limiter_for(app: Any, settings: Settings) -> RateLimiter | None:
    """The app's limiter, made on first use from its engine (None when rate limits are off)."""
    if not settings.rate_limit_enabled:
        return None
    limiter = getattr(app.state, "rate_limiter", None)
    if limiter is None:
        limiter = app.state.rate_limiter = RateLimiter(app.state.engine, settings.rate_limit_window_s)
    return limiter
