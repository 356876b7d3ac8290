"""API keys: which configured key a request presented, and the owner that key stands for.

A server may accept several keys (``--api-key K1,K2``), one per client. Each key
is an owner: what one key's requests create (proof sessions) the others cannot
see. Owners are digests of their key, so the key itself is never kept beside
the things it owns, and one server's owner names say nothing about another's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

ANONYMOUS = "anonymous"  # the one owner of a server that takes no key


def matching_key(given: str | None, keys: Sequence[str]) -> str | None:
    """The configured key equal to ``given``, or None; compared in constant time with every key."""
    if not given:
        return None
    presented = given.encode("utf-8", "surrogateescape")
    found = None
    for key in keys:  # no early exit: the time taken does not tell which key matched
        if hmac.compare_digest(presented, key.encode("utf-8")):
            found = key
    return found


def owner_of(key: str | None) -> str:
    """The owner a key stands for; :data:`ANONYMOUS` without one."""
    if key is None:
        return ANONYMOUS
    return "key-" + hashlib.sha256(b"leanstep owner\0" + key.encode("utf-8")).hexdigest()[:32]
