"""The server's own limits on the time a request may ask for.

A client picks its per-proof timeout (Kimina's ``timeout``) or its checking
budget (``/suggest``'s ``timeout``), but the server owns the ceiling
(``--timeout``, ``--check-timeout``): asking for more gets the server's limit,
and every answer says which limit applied (``api.common.applied_timeout_json``),
so a capped client can tell. Asking for less than the floor (``--min-timeout``)
is refused: a timeout of a nanosecond checks nothing and only kills REPLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
