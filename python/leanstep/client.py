"""Python client for a leanstep server: batched, concurrent, retrying verification.

``Client(url).verify(snippets)`` splits the snippets into batches, sends them to
``POST /api/check`` concurrently over one pooled HTTP session, retries
connection errors, 429 and 5xx with exponential backoff and jitter (a bounded
number of times), and returns typed results in input order. A batch that still
fails after its retries becomes per-snippet ``error`` results, never a lost
snippet, and is reported to ``on_failure`` as a :class:`RequestFailure`, so a
caller can tell "checked and wrong" from "never checked". Client errors (4xx
other than 429) are not retried: they would fail again; they raise
:class:`ClientError` with the server's message.

Each result says the ``trust`` level it was checked at (``trust=`` asks for
one; not given, the server's ``--trust``) and why it is not valid, as
:class:`~leanstep.check.verdict.Reason` objects. A snippet given as a
:class:`~leanstep.check.verify.Snippet` or a record with a ``statement`` (or
``formal_statement``) is checked against that statement. For pass@k,
``first_valid=True`` stops checking a group's samples (``Snippet.group``, a
record's ``group``) after one is valid: the later ones come back ``skipped``; each
request then carries whole groups, since the server skips within a request.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from leanstep.api.kimina import check_request_json, check_result_from_json
from leanstep.api.records import snippet_of
from leanstep.check.verdict import Trust
from leanstep.check.verify import ERROR, Snippet, VerifyResult
from leanstep.progress import Progress

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RequestFailure:
    """A batch the server never checked: unreachable, failing after the retries, or refused (a wrong key).

    Its snippets come back as ``error`` results whose ``error`` starts with "request failed".
    """

    snippets: int
    error: Exception


class ClientError(RuntimeError):
    """The server refused a request (4xx); ``status`` and the server's ``detail`` are kept."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}" + (f" ({detail})" if detail else ""))
        self.status = status
        self.detail = detail


class Client:
    """A thread-safe client; one ``requests.Session`` whose connection pool fits ``max_workers``."""

    def __init__(self, base_url: str = "http://127.0.0.1:6000", api_key: str | None = None, timeout: float = 3600.0,
                 *, max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0, pool_size: int = 16) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = requests.Session()
        self._mount(pool_size)
        self._lock = threading.Lock()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _mount(self, size: int) -> None:
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._pool_size = size

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------------

    def _sleep_before(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        delay = delay / 2 + random.uniform(0, delay / 2)  # jitter: spread retries of concurrent batches
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(self.max_backoff, float(retry_after)))
        time.sleep(delay)

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """One JSON request with retries on connection errors, 429 and 5xx; returns the decoded body."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        last: str = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                resp = self.session.request(method, url, json=payload, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}: {exc}"
                if attempt < self.max_retries:
                    self._sleep_before(attempt, None)
                continue
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if attempt < self.max_retries:
                    self._sleep_before(attempt, resp.headers.get("Retry-After"))
                continue
            if resp.status_code >= 400:
                try:
                    body = resp.json()
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    raise ClientError(resp.status_code, str(body.get("error", resp.reason)), body.get("detail"))
                raise ClientError(resp.status_code, resp.reason, resp.text[:300])
            try:
                return resp.json()
            except ValueError:
                last = f"non-JSON answer: {resp.text[:300]!r}"
                if attempt < self.max_retries:
                    self._sleep_before(attempt, None)
        raise ConnectionError(f"{method} {url} failed after {self.max_retries + 1} attempts: {last}")

    # -- API --------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def check_batch(self, snippets: Sequence[Snippet | tuple[str, str]], *, timeout: float = 60.0,
                    trust: Trust | str | None = None, strict: bool | None = None, infotree: str | None = None,
                    reuse: bool = True, first_valid: bool = False) -> list[VerifyResult]:
        """One ``POST /api/check`` call (ids must be unique within it); ``strict`` is an alias of ``trust``."""
        items = [s if isinstance(s, Snippet) else Snippet(s[0], s[1]) for s in snippets]
        payload = check_request_json(items, timeout=timeout, trust=_trust(trust, strict), infotree=infotree,
                                     reuse=reuse, first_valid=first_valid)
        body = self.request("POST", "/api/check", payload)
        return [check_result_from_json(entry) for entry in body["results"]]

    def verify(self, snippets: Sequence[Any], *, timeout: float = 60.0, batch_size: int = 32,
               max_workers: int = 4, trust: Trust | str | None = None, strict: bool | None = None,
               infotree: str | None = None, reuse: bool = True, first_valid: bool = False, progress: bool = False,
               on_batch: Callable[[list[VerifyResult]], None] | None = None,
               on_failure: Callable[[RequestFailure], None] | None = None) -> list[VerifyResult]:
        """Verify strings, (id, code) pairs, Snippets or dicts (``api.records``); results come back in input order.

        ``trust`` (``lenient``, ``strict``, ``sealed``; ``strict=True`` is an alias of ``"strict"``) is the level
        to check at; not given, the server's. Duplicate ids are allowed: each batch gets unique wire ids and the
        results carry the caller's ids again. ``on_batch`` and ``on_failure`` are called in the caller's thread.
        ``first_valid``: first valid wins within each group (see the module's docstring).
        """
        if batch_size <= 0 or max_workers <= 0:
            raise ValueError("batch_size and max_workers must be positive")
        level = _trust(trust, strict)
        items = [snippet_of(item, i) for i, item in enumerate(snippets)]
        if max_workers > self._pool_size:
            with self._lock:
                if max_workers > self._pool_size:
                    self._mount(max_workers)
        batches = _request_batches(items, batch_size, whole_groups=first_valid)
        results: list[VerifyResult | None] = [None] * len(items)
        bar = Progress(len(items), "proof", "verify", enabled=progress)

        def run(indices: list[int]) -> tuple[list[tuple[int, VerifyResult]], RequestFailure | None]:
            wire = [replace(items[i], id=f"{k}-{uuid.uuid4().hex[:8]}") for k, i in enumerate(indices)]
            try:
                answers = self.check_batch(wire, timeout=timeout, trust=level, infotree=infotree, reuse=reuse,
                                           first_valid=first_valid)
                by_wire = {a.id: a for a in answers}
            except (ConnectionError, ClientError, KeyError, TypeError, ValueError) as exc:
                error = f"request failed: {exc}"
                return ([(i, _unchecked(items[i].id, error)) for i in indices], RequestFailure(len(indices), exc))
            out = []
            for snippet, i in zip(wire, indices, strict=True):
                answer = by_wire.get(snippet.id)
                if answer is None:
                    answer = _unchecked(snippet.id, "the server returned no result for this snippet")
                out.append((i, replace(answer, id=items[i].id)))
            return out, None

        try:
            with ThreadPoolExecutor(max_workers=min(max_workers, max(1, len(batches)))) as executor:
                futures = [executor.submit(run, b) for b in batches]
                for future in as_completed(futures):
                    done, failure = future.result()
                    for i, result in done:
                        results[i] = result
                    bar.update(len(done))
                    if on_batch is not None:
                        on_batch([r for _, r in done])
                    if failure is not None and on_failure is not None:
                        on_failure(failure)
        finally:
            bar.close()
        return results  # type: ignore[return-value]


def _request_batches(items: Sequence[Snippet], size: int, *, whole_groups: bool = False) -> list[list[int]]:
    """The indices of each request's snippets: runs of ``size`` in input order. With ``whole_groups`` no group is
    split between requests (a server skips a group's samples only within one request): a request takes whole
    groups while they fit in ``size``, and a group larger than ``size`` is a request of its own."""
    if not whole_groups:
        return [list(range(start, min(start + size, len(items)))) for start in range(0, len(items), size)]
    members: dict[str | int, list[int]] = {}
    for index, item in enumerate(items):
        members.setdefault(item.group if item.group is not None else index, []).append(index)
    batches: list[list[int]] = []
    current: list[int] = []
    for indices in members.values():
        if current and len(current) + len(indices) > size:
            batches.append(current)
            current = []
        current.extend(indices)
    if current:
        batches.append(current)
    return batches


def _trust(trust: Trust | str | None, strict: bool | None) -> Trust | None:
    """The level to ask for: ``trust``, or ``strict`` as its alias (None: the server's)."""
    level = Trust(trust) if trust is not None else None
    if strict is not None:
        alias = Trust.STRICT if strict else Trust.LENIENT
        if level is not None and level is not alias:
            raise ValueError(f"strict={strict} means trust {alias.value!r}, but trust={level.value!r} was given")
        level = alias
    return level


def _unchecked(snippet_id: str, error: str) -> VerifyResult:
    """The result of a snippet the server never checked (the request failed, or its answer left it out): verdict
    ``error`` and no trust level; ``error`` says why (no reason code names a failed request)."""
    return VerifyResult(snippet_id, ERROR, error=error)


__all__ = ["Client", "ClientError", "RequestFailure"]
