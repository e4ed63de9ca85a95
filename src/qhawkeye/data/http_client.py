"""JSON over HTTP with retries, for the filter stage's requests (stdlib only).

:func:`post_json` POSTs one JSON body and reads a JSON reply. A failure worth retrying (connection error,
timeout, 429, 5xx) raises :class:`Transient`, carrying a server's ``Retry-After``; any other failure (another
4xx, a reply that is not JSON) raises :class:`RequestFailed`. :func:`with_retries` repeats a call on
:class:`Transient` with exponential backoff and jitter (:func:`backoff_delay`), taking its knobs (``retries``,
``backoff_s``, ``max_backoff_s``) from a config object such as
:class:`~qhawkeye.data.vlm_filter.FilterConfig`, and turns the last failure into :class:`RequestFailed`.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)


class RetrySettings(Protocol):
    """The retry knobs :func:`backoff_delay` and :func:`with_retries` read (FilterConfig has them)."""

    retries: int
    backoff_s: float
    max_backoff_s: float


class RequestFailed(Exception):
    """A pair that got no answer: a 4xx other than 429, a bad response, or retries used up."""


class Transient(Exception):
    """A failure worth retrying (connection error, timeout, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _error_message(err: urllib.error.HTTPError) -> str:
    text = err.read().decode("utf-8", "replace")
    try:
        body = json.loads(text)
        return str((body.get("error") or {}).get("message") or body.get("detail") or text)[:300]
    except (ValueError, AttributeError):
        return text[:300]


def _http_error(err: urllib.error.HTTPError, url: str) -> Exception:
    message = f"HTTP {err.code} from {url}: {_error_message(err)}"
    if err.code == 429 or err.code >= 500:
        retry_after = err.headers.get("Retry-After", "")
        return Transient(message, float(retry_after) if retry_after.isdigit() else None)
    return RequestFailed(message)


def post_json(url: str, body: dict, api_key: str | None, timeout_s: float) -> dict:
    """POST ``body`` as JSON; :class:`Transient` or :class:`RequestFailed` on failure."""
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            payload = response.read()
    except urllib.error.HTTPError as err:
        raise _http_error(err, url) from err
    except (OSError, http.client.HTTPException) as err:  # refused, reset, timed out, cut short
        raise Transient(f"{url}: {getattr(err, 'reason', None) or err!r}") from err
    try:
        return json.loads(payload)
    except ValueError as err:
        raise RequestFailed(f"{url}: the response is not JSON: {payload[:200]!r}") from err


def backoff_delay(attempt: int, config: RetrySettings, retry_after: float | None = None, rng=random) -> float:
    """Seconds before retry ``attempt`` (0-based): ``backoff_s * 2**attempt``, jittered to [50 %, 100 %]."""
    delay = min(config.max_backoff_s, config.backoff_s * 2**attempt)
    delay = delay / 2 + rng.uniform(0, delay / 2)
    return max(delay, min(retry_after or 0.0, config.max_backoff_s))


def with_retries(call: Callable[[], dict], config: RetrySettings, what: str, stop: threading.Event) -> dict:
    """``call()``, retried on :class:`Transient`; :class:`RequestFailed` once the retries are used up.

    Once ``stop`` is set (the run was interrupted) no retry starts: the pair is left for a rerun.
    """
    for attempt in range(config.retries + 1):
        try:
            return call()
        except Transient as err:
            if attempt == config.retries:
                raise RequestFailed(f"{err} (gave up after {attempt + 1} attempts)") from err
            delay = backoff_delay(attempt, config, err.retry_after)
            logger.info("%s: %s; retry %d in %.2f s", what, err, attempt + 1, delay)
            if stop.wait(delay):
                raise RequestFailed(f"{err} (run interrupted before retry {attempt + 1})") from err
    raise AssertionError("unreachable")
