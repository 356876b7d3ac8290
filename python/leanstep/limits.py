"""The server's own limits on what a request may ask for: its time, its snippets, its headers.

A client picks its per-proof timeout (Kimina's ``timeout``) or its checking
budget (``/suggest``'s ``timeout``), but the server owns the ceiling
(``--timeout``, ``--check-timeout``): asking for more gets the server's limit,
and every answer says which limit applied (``api.common.applied_timeout_json``),
so a capped client can tell. Asking for less than the floor (``--min-timeout``)
is refused: a timeout of a nanosecond checks nothing and only kills REPLs.
:class:`RequestLimits` holds a verification request to all of these, with the
same messages through every door (HTTP and MCP).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from leanstep.config import Config

# Why a limit is the one that applies: the client's own value, the server's, or the route's default.
LimitSource = Literal["request", "server", "default"]


class LimitError(ValueError):
    """A request asked for less than the server allows; the message names the limit and its flag."""


@dataclass(frozen=True)
class AppliedTimeout:
    """The limit a request runs under, and why it is that one.

    ``source``: ``request`` (the client's own value), ``server`` (the client asked
    for more, or sent nothing on a route whose default is the server's limit) or
    ``default`` (the route's documented default, below the server's limit).
    """

    seconds: float
    requested: float | None
    source: LimitSource
    ceiling: float
    ceiling_flag: str
    floor: float | None = None

    def describe(self) -> str:
        """Which limit this is, in words, for a timeout reason."""
        if self.source == "request":
            return "the request's timeout"
        if self.source == "default":
            return f"this route's default of {self.seconds:g} s"
        asked = f"; the request asked for {self.requested:g} s" if self.requested is not None else ""
        return f"the server's limit {self.ceiling_flag} {self.ceiling:g} s{asked}"


def bounded_timeout(requested: float | None, *, ceiling: float, ceiling_flag: str, floor: float | None = None,
                    floor_flag: str = "--min-timeout", default: float | None = None) -> AppliedTimeout:
    """The timeout to apply: ``requested`` capped at ``ceiling``; when None, ``default`` (capped) or the ceiling.

    Raises :class:`LimitError` when ``requested`` is below ``floor``.
    """
    if requested is None:
        if default is not None and default <= ceiling:
            return AppliedTimeout(default, None, "default", ceiling, ceiling_flag, floor)
        return AppliedTimeout(ceiling, None, "server", ceiling, ceiling_flag, floor)
    if floor is not None and requested < floor:
        raise LimitError(f"{requested:g} s is below the server's minimum of {floor:g} s ({floor_flag}); "
                         f"ask for at least {floor:g} s")
    if requested > ceiling:
        return AppliedTimeout(ceiling, requested, "server", ceiling, ceiling_flag, floor)
    return AppliedTimeout(requested, requested, "request", ceiling, ceiling_flag, floor)


class TooManySnippets(LimitError):
    """More snippets in one request than ``--max-batch``."""


class TooManyHeaders(LimitError):
    """More distinct headers in one request than ``--max-headers-per-request``."""


@dataclass(frozen=True)
class RequestLimits:
    """What one verification request may ask for, the same through every door (the HTTP routes, the MCP tools).

    Each refusal is a :class:`LimitError` whose message names the field or the limit and its flag, so a
    client sees the same words whichever door it used.
    """

    timeout: float  # --timeout: the most a proof may take
    min_timeout: float  # --min-timeout: the least a request may ask for
    import_timeout: float  # --import-timeout
    max_batch: int  # --max-batch: snippets per request
    max_headers: int  # --max-headers-per-request: distinct headers per request

    @classmethod
    def from_config(cls, config: Config) -> RequestLimits:
        return cls(timeout=config.timeout, min_timeout=config.min_timeout, import_timeout=config.import_timeout,
                   max_batch=config.max_batch, max_headers=config.max_headers_per_request)

    def proof_timeout(self, requested: float | None, default: float | None = None) -> AppliedTimeout:
        """The per-proof timeout: ``requested`` capped at ``--timeout`` (``default`` or the cap when not sent).

        Raises :class:`LimitError` (``timeout: ...``) when ``requested`` is below ``--min-timeout``.
        """
        try:
            return bounded_timeout(requested, ceiling=self.timeout, ceiling_flag="--timeout", floor=self.min_timeout,
                                   default=default)
        except LimitError as exc:
            raise LimitError(f"timeout: {exc}") from None

    @cached_property
    def import_limit(self) -> AppliedTimeout:
        """The limit a header import runs under (answers report it beside the proof timeout)."""
        return bounded_timeout(None, ceiling=self.import_timeout, ceiling_flag="--import-timeout")

    def check_batch(self, count: int, field: str) -> None:
        """Raises :class:`TooManySnippets` when ``count`` entries of ``field`` exceed ``--max-batch``."""
        if count > self.max_batch:
            raise TooManySnippets(f"{count} entries in `{field}`, the limit is {self.max_batch} (max_batch); "
                                  "split the work into smaller requests")

    def check_headers(self, count: int) -> None:
        """Raises :class:`TooManyHeaders` when a request's snippets import more than ``--max-headers-per-request``
        distinct headers (each one costs a REPL import)."""
        if count > self.max_headers:
            raise TooManyHeaders(
                f"the snippets import {count} distinct headers; the server allows {self.max_headers} per request "
                "(--max-headers-per-request), as each one costs a REPL import: group the snippets by header and "
                "send the groups as separate requests")
