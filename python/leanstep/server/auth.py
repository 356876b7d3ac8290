"""Who is calling: the API key a request presents, whether it is the server's, and the owner it makes.

Every route admits requests through :func:`api_key_ok` (``server.app``'s
``_admit``); what a caller keeps on the server between requests (proof
sessions, over HTTP or MCP) belongs to :func:`request_owner`, a digest of the
key, so callers with different keys never see each other's state and the key
itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import request

ANONYMOUS = "anonymous"  # the one caller of a server without an API key


def presented_key() -> str | None:
    """The key the request sends: ``Authorization: Bearer <key>`` (or the bare key there), else ``X-API-Key``."""
    given = request.headers.get("Authorization")
    if given is None:
        return request.headers.get("X-API-Key")
    given = given.strip()
    if given[:7].lower() == "bearer ":
        given = given[7:].strip()
    return given


def api_key_ok(expected: str) -> tuple[bool, str]:
    """Whether the request presents ``expected`` (compared in constant time), and if not, why."""
    given = presented_key()
    if not given:
        return False, "missing API key: send `Authorization: Bearer <key>`"
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
        return False, "invalid API key"
    return True, ""


def request_owner(api_key_required: bool) -> str:
    """The owner of what this admitted request keeps on the server: a digest of its key, or :data:`ANONYMOUS`
    when the server takes no key."""
    if not api_key_required:
        return ANONYMOUS
    key = presented_key() or ""
    return "key:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
