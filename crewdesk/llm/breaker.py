"""Circuit breakers for the model endpoints (pybreaker), and the fallback chain every model call walks through them.

One breaker per endpoint, keyed `provider@base_url` (`openai@https://api.openai.com/v1`, `local@http://127.0.0.1:8765/v1`):
two OpenAI-compatible servers are two circuits, two models on one server are one. Only transient provider failures count
(crewdesk.errors.ProviderUnavailable: HTTP 408, 429, 5xx, timeouts, refused or reset connections). An answer the model
got wrong (ModelOutputError) or a request the provider refused (400, 401, 403, 404) is an answer: the endpoint is up, and
it counts as a success.

After `llm_breaker_failures` failures in a row the circuit opens: for `llm_breaker_reset_seconds` no call goes to that
endpoint, and each call goes straight to the next model of the chain (`llm_fallback`). Then one call is let through as the
trial (half-open): it closes the circuit on success and opens it again on failure. A 429 or 503 carrying Retry-After
(seconds or an HTTP date) holds the endpoint for that long as well, whatever the breaker's state: no call goes there
before the provider said it may. When no model of the chain can take a call, the call raises ModelUnavailable with the
seconds until the first of them can; the worker defers the ticket by that much (never fails it).

`states(settings)` is what `crewdesk status` prints and what the Prometheus scrape reads: keep its signature.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar, cast

import pybreaker
import redis
from redis.exceptions import RedisError

from crewdesk.errors import ModelUnavailable, ProviderUnavailable, TransientError
from crewdesk.logging import get_logger
from crewdesk.settings import ModelSettings

if TYPE_CHECKING:
    from crewdesk.llm.base import CrewdeskLLM

log = get_logger(__name__)

STATES = (pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN)
T = TypeVar("T")


def endpoint_key(provider: str, base_url: str | None) -> str:
    """The breaker's key: one circuit per provider and endpoint."""
    return f"{provider}@{base_url.rstrip('/')}" if base_url else provider


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """The wait a 429 or 503 asks for: Retry-After as seconds or as an HTTP date (RFC 9110), or OpenAI's retry-after-ms.
    None when there is none or it cannot be read."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Failed(TransientError):
    """A failure replayed into pybreaker's state machine after the call (see Breakers.record)."""


def shared_store_url(settings: ModelSettings) -> str | None:
    """The Redis the breakers keep their state in: the broker's, when the broker is Redis. Every worker child, `crewdesk
    status` and the metrics scrape then see one circuit per endpoint: five failures seen by five children open it for all.
    With any other broker (or none: `crewdesk run` in-process on the SQLite quickstart) there is no store we may assume
    reachable, so each process keeps its breakers in memory and learns about an outage on its own."""
    url = settings.broker_url or ""
    return url if url.startswith(("redis://", "rediss://", "unix://")) else None


class Breakers:
    """The breakers of one process for one configuration (`for_settings` caches them, one per worker child)."""

    def __init__(self, *, fail_max: int, reset_seconds: float, redis_url: str | None, prefix: str) -> None:
        self.fail_max = fail_max
        self.reset_seconds = reset_seconds
        self.prefix = prefix
        self.redis_url = redis_url
        # Short socket timeouts: a call must not hang on the breaker's store. pybreaker reads a store it cannot reach as
        # closed, so a Redis outage lets calls through rather than stopping them.
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0) if redis_url else None
        self._lock = threading.Lock()
        self._breakers: dict[str, tuple[pybreaker.CircuitBreaker, pybreaker.CircuitBreakerStorage]] = {}
        self._holds: dict[str, float] = {}  # in-memory Retry-After holds (epoch seconds), when there is no Redis

    @property
    def shared(self) -> bool:
        return self._redis is not None

    @property
    def pause(self) -> float:
        """How long to wait before trying again an endpoint that failed but whose circuit is still closed (and that named no
        Retry-After): the failures needed to open it then spread over about one reset period."""
        return max(1.0, self.reset_seconds / max(1, self.fail_max))

    def _name(self, key: str, part: str) -> str:
        return f"{self.prefix}:{key}:{part}"

    def breaker(self, key: str) -> tuple[pybreaker.CircuitBreaker, pybreaker.CircuitBreakerStorage]:
        with self._lock:
            found = self._breakers.get(key)
            if found is not None:
                return found
            storage: pybreaker.CircuitBreakerStorage | None = None
            if self._redis is not None:
                try:
                    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, self._redis, namespace=f"{self.prefix}:{key}")
                    self._redis.sadd(f"{self.prefix}:keys", key)
                except RedisError as exc:  # not cached: the next call tries the shared store again
                    log.warning("breaker.store_unavailable", key=key, error=str(exc))
                    return pybreaker.CircuitBreaker(fail_max=self.fail_max, reset_timeout=self.reset_seconds, name=key), pybreaker.CircuitMemoryStorage(
                        pybreaker.STATE_CLOSED
                    )
            if storage is None:
                storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
            breaker = pybreaker.CircuitBreaker(fail_max=self.fail_max, reset_timeout=self.reset_seconds, state_storage=storage, name=key)
            self._breakers[key] = (breaker, storage)
            return breaker, storage

    def keys(self) -> set[str]:
        """Every endpoint this store has a breaker for (in Redis: seen by any process)."""
        known = set(self._breakers)
        if self._redis is not None:
            try:
                known |= {k.decode() if isinstance(k, bytes) else k for k in cast(set, self._redis.smembers(f"{self.prefix}:keys"))}
            except RedisError as exc:
                log.warning("breaker.store_unavailable", error=str(exc))
        return known

    # -- Retry-After holds -----------------------------------------------------------------------------------------------

    def hold(self, key: str, seconds: float) -> None:
        """No call goes to `key` for `seconds` (the provider's Retry-After)."""
        until = time.time() + seconds
        if self._redis is not None:
            try:
                current = cast(bytes | None, self._redis.get(self._name(key, "hold_until")))  # a sync client: never awaitable
                if current is None or float(current) < until:
                    self._redis.set(self._name(key, "hold_until"), repr(until), px=max(1, int(seconds * 1000)))
                return
            except RedisError as exc:
                log.warning("breaker.store_unavailable", key=key, error=str(exc))
        with self._lock:
            self._holds[key] = max(until, self._holds.get(key, 0.0))

    def held_until(self, key: str) -> float | None:
        if self._redis is not None:
            try:
                value = cast(bytes | None, self._redis.get(self._name(key, "hold_until")))
                return float(value) if value is not None else None
            except RedisError as exc:
                log.warning("breaker.store_unavailable", key=key, error=str(exc))
        return self._holds.get(key)

    # -- state -----------------------------------------------------------------------------------------------------------

    def due(self, key: str, *, now: float | None = None) -> float | None:
        """None when a call may go to `key` now; otherwise the epoch second from which one may (the circuit's reset time or
        the provider's Retry-After, whichever is later)."""
        now = time.time() if now is None else now
        breaker, storage = self.breaker(key)
        due = self.held_until(key) or 0.0
        if breaker.current_state == pybreaker.STATE_OPEN:
            opened = storage.opened_at
            if opened is not None:
                due = max(due, opened.timestamp() + self.reset_seconds)
        return due if due > now else None

    def state(self, key: str) -> str:
        """closed | open | half-open, as a caller would meet it now: an open circuit past its reset time is half-open (the
        next call is the trial), and an endpoint held by a Retry-After is open (no call goes there until then)."""
        breaker, _ = self.breaker(key)
        stored = breaker.current_state
        due = self.due(key)
        if stored == pybreaker.STATE_OPEN:
            return pybreaker.STATE_OPEN if due is not None else pybreaker.STATE_HALF_OPEN
        return pybreaker.STATE_OPEN if due is not None else stored

    def admit(self, key: str) -> float | None:
        """Before a call: None to go ahead (an open circuit past its reset time turns half-open: this call is its trial), or
        the epoch second when `key` may be called again."""
        due = self.due(key)
        if due is not None:
            return due
        breaker, _ = self.breaker(key)
        if breaker.current_state == pybreaker.STATE_OPEN:
            breaker.half_open()
            log.info("breaker.half_open", key=key)
        return None

    def record(self, key: str, error: BaseException | None) -> None:
        """After a call: its outcome goes through pybreaker's state machine (a failure counts and may open the circuit; a
        success resets the count and closes a half-open circuit). The call itself ran outside the breaker so that a slow
        model does not hold pybreaker's lock, which would serialise every call to the endpoint in this process."""
        breaker, _ = self.breaker(key)
        before = breaker.current_state

        def replay() -> None:
            if error is not None:
                raise _Failed(str(error))

        try:
            breaker.call(replay)
        except pybreaker.CircuitBreakerError:
            pass  # this failure opened the circuit (or it was open already)
        except _Failed:
            pass
        after = breaker.current_state
        if after != before:
            log.warning("breaker.state", key=key, before=before, after=after, failures=breaker.fail_counter, error=str(error) if error else None)

    def reset(self, key: str) -> None:
        """Close `key`'s circuit and drop its hold (an operator who knows the endpoint is back)."""
        breaker, _ = self.breaker(key)
        breaker.close()
        if self._redis is not None:
            try:
                self._redis.delete(self._name(key, "hold_until"))
            except RedisError:
                pass
        self._holds.pop(key, None)


_registry: dict[tuple, Breakers] = {}
_registry_lock = threading.Lock()


def for_settings(settings: ModelSettings) -> Breakers:
    """This process's breakers for the settings' store and thresholds (built once, shared by every LLM of the process)."""
    spec = (shared_store_url(settings), settings.llm_breaker_prefix, settings.llm_breaker_failures, settings.llm_breaker_reset_seconds)
    with _registry_lock:
        found = _registry.get(spec)
        if found is None:
            found = _registry[spec] = Breakers(redis_url=spec[0], prefix=spec[1], fail_max=spec[2], reset_seconds=spec[3])
        return found


def states(settings: ModelSettings) -> dict[str, str]:
    """Endpoint key -> "closed" | "open" | "half-open", for every endpoint of the configured chain and every endpoint any
    process has a breaker for. Read at Prometheus scrape time and by `crewdesk status`."""
    from crewdesk.llm.factory import chain_keys

    breakers = for_settings(settings)
    keys = set(chain_keys(settings)) | breakers.keys()
    return {key: breakers.state(key) for key in sorted(keys)}


def walk(chain: Sequence[CrewdeskLLM], round_trip: Callable[[CrewdeskLLM], T], breakers: Breakers) -> tuple[CrewdeskLLM, T]:
    """One model call, in chain order: the first model whose endpoint is admitted answers. A model whose circuit is open or
    whose provider asked to wait is skipped without a request; one that fails transiently is counted against its breaker
    (and held for its Retry-After) and the same call goes to the next model. An error that is not transient (a 400, an
    answer that does not parse) is the answer: it is raised as it is. When every model was skipped or failed, the call
    raises ModelUnavailable with the whole seconds until the first of them may be called again (at least 1)."""
    waits: list[float] = []
    last: BaseException | None = None
    for llm in chain:
        key = llm.breaker_key
        if key is None:  # an in-process model (scripted): nothing to break
            try:
                return llm, round_trip(llm)
            except TransientError as exc:
                last = exc
                waits.append(time.time() + breakers.pause)
                continue
        due = breakers.admit(key)
        if due is not None:
            log.info("breaker.skipped", key=key, model=llm.model, seconds=round(due - time.time(), 1))
            waits.append(due)
            continue
        try:
            answer = round_trip(llm)
        except TransientError as exc:
            last = exc
            breakers.record(key, exc)
            retry_after = exc.retry_after if isinstance(exc, ProviderUnavailable) else None
            if retry_after:
                breakers.hold(key, retry_after)
            waits.append(breakers.due(key) or time.time() + breakers.pause)
            log.warning("model.failed_over" if llm is not chain[-1] else "model.failed", key=key, model=llm.model, error=str(exc), retry_after=retry_after)
            continue
        except Exception:
            breakers.record(key, None)
            raise
        breakers.record(key, None)
        return llm, answer
    now = time.time()
    wait = max(1, math.ceil(min(waits) - now - 0.05)) if waits else math.ceil(breakers.pause)
    at = datetime.fromtimestamp(now + wait, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    names = ", ".join(f"{llm.model} ({llm.breaker_key or 'in-process'})" for llm in chain)
    detail = f": {type(last).__name__}: {last}" if last is not None else " (circuits open)"
    raise ModelUnavailable(f"no model available ({names}){detail}; retry at {at} (in {wait} s)", retry_after=wait) from last
