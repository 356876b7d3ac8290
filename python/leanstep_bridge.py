#!/usr/bin/env python3
"""The bridge the ``llmstep`` Lean tactic runs to reach the leanstep server.

The tactic does not speak HTTP itself; this script does, with the standard
library only, so it runs with any ``python3`` the editor finds.

Input: ONE JSON object on stdin (never argv: a file's text can exceed the
per-argument limit, and argv is visible to every user on the machine)::

    {"tactic_state": str, "prefix": str, "context": str, "source": str,
     "position": {"line": int, "column": int}, "file_name": str, "n"?: int}

It is POSTed unchanged to ``<url>/suggest`` (``--route PATH`` names another route of the
server, for another tactic; such a request need only be a JSON object, and the reply a
JSON object without ``error``). Output: ONE line of JSON on stdout.

Exit status (the tactic reads both the status and the ``error`` field):

==  ==========================================================================
0   the server's reply, ``{"suggestions": [...], ...}``
1   the request on stdin is not a JSON object with a string ``tactic_state``, or the
    timeout or route is not usable
2   the server is unreachable (refused, no such host, ...): fails fast
3   the server did not answer within the timeout (the whole exchange: connecting,
    sending and a reply trickling in all count, and the bridge exits when it is spent)
4   the server answered with an HTTP error or a reply that is not the JSON
    object the tactic expects
==  ==========================================================================

On every non-zero status stdout is ``{"error": "<one line>", "kind": ...}``.

Server URL: ``$LEANSTEP_URL``; else llmstep's ``$LLMSTEP_HOST`` / ``$LLMSTEP_PORT``
(``LLMSTEP_HOST`` may itself be a full URL, as with llmstep's Colab mode); else
``http://localhost:6000``. Timeout: ``--timeout SECONDS``, else
``$LEANSTEP_TIMEOUT``, else 10 s; zero, negative or unparsable is an error (exit 1), not
a fallback. ``$LEANSTEP_API_KEY`` is sent as ``Authorization: Bearer <key>``.

The tactic starts the bridge in a session of its own (``setsid``) and kills that
process group when its budget (the timeout plus start-up slack) is spent, so a
wrapper set as the interpreter and anything it started go too. The bridge does not
start a session itself: that would take it out of the group the tactic kills.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import threading
import urllib.error
import urllib.request

DEFAULT_URL = "http://localhost:6000"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_ROUTE = "/suggest"
ROUTE = re.compile(r"/[a-z0-9_-]+(/[a-z0-9_-]+)*")

EXIT_OK = 0
EXIT_BAD_REQUEST = 1
EXIT_UNREACHABLE = 2
EXIT_TIMEOUT = 3
EXIT_BAD_REPLY = 4


class BridgeError(Exception):
    """A failure with the exit status and the ``kind`` reported for it."""

    def __init__(self, code: int, kind: str, message: str):
        super().__init__(message)
        self.code = code
        self.kind = kind


def server_url(env: dict[str, str] | None = None) -> str:
    """The server's base URL: LEANSTEP_URL > LLMSTEP_HOST/LLMSTEP_PORT > default."""
    env = os.environ if env is None else env
    url = env.get("LEANSTEP_URL", "").strip()
    if url:
        return url.rstrip("/")
    host = env.get("LLMSTEP_HOST", "").strip()
    port = env.get("LLMSTEP_PORT", "").strip()
    if host.startswith(("http://", "https://")):
        return host.rstrip("/")
    if host or port:
        return f"http://{host or 'localhost'}:{port or '6000'}"
    return DEFAULT_URL


def timeout_seconds(flag: str | None, env: dict[str, str] | None = None) -> float:
    """--timeout > LEANSTEP_TIMEOUT > 10 s; a value that is not a positive number of seconds is a BridgeError."""
    env = os.environ if env is None else env
    raw, source = (flag, "--timeout") if flag is not None else (env.get("LEANSTEP_TIMEOUT"), "LEANSTEP_TIMEOUT")
    if raw is None or (source == "LEANSTEP_TIMEOUT" and not raw.strip()):
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise BridgeError(EXIT_BAD_REQUEST, "bad_request",
                          f"{source} must be a positive number of seconds, got {raw!r} "
                          "(for the tactic: set_option llmstep.timeout <milliseconds>, at least 1)")
    return value


def check_route(route: str) -> str:
    """``/suggest``, or another path of the server (letters, digits, ``_``, ``-``); else a BridgeError."""
    if not ROUTE.fullmatch(route):
        raise BridgeError(EXIT_BAD_REQUEST, "bad_request", f"--route must be a path like /suggest, got {route!r}")
    return route


def read_request(text: str, route: str = DEFAULT_ROUTE) -> dict:
    """The request object, or a BridgeError(EXIT_BAD_REQUEST) naming the problem."""
    try:
        request = json.loads(text)
    except ValueError as exc:
        raise BridgeError(EXIT_BAD_REQUEST, "bad_request", f"malformed JSON on stdin: {exc}") from None
    if not isinstance(request, dict):
        raise BridgeError(EXIT_BAD_REQUEST, "bad_request", "stdin must hold one JSON object")
    if route == DEFAULT_ROUTE and not isinstance(request.get("tactic_state"), str):
        raise BridgeError(EXIT_BAD_REQUEST, "bad_request", "the request needs a string `tactic_state`")
    return request


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in str(exc)


def _http_error_message(exc: urllib.error.HTTPError) -> str:
    """The server's own error text when it sent ``{"error", "detail"}``, else the status line."""
    try:
        body = json.loads(exc.read().decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001 - any unreadable body falls back to the status line
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        detail = body.get("detail")
        return f"{body['error']}: {detail}" if isinstance(detail, str) and detail else body["error"]
    return f"HTTP {exc.code} {exc.reason}"


def post(url: str, request: dict, timeout: float, api_key: str | None = None, route: str = DEFAULT_ROUTE) -> dict:
    """POST ``request`` to ``url`` + ``route`` and return the reply object, or raise BridgeError."""
    endpoint = f"{url}{route}"
    data = json.dumps(request, ensure_ascii=False, allow_nan=False).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(endpoint, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise BridgeError(EXIT_BAD_REPLY, "http",
                          f"leanstep server at {url} answered HTTP {exc.code}: {_http_error_message(exc)}") from None
    except urllib.error.URLError as exc:
        if _is_timeout(exc.reason):
            raise BridgeError(EXIT_TIMEOUT, "timeout",
                              f"no answer from the leanstep server at {url} within {timeout:g} s") from None
        raise BridgeError(EXIT_UNREACHABLE, "unreachable",
                          f"leanstep server not reachable at {url} ({exc.reason}); "
                          "start it with `leanstep serve` or set LEANSTEP_URL") from None
    except (TimeoutError, socket.timeout):
        raise BridgeError(EXIT_TIMEOUT, "timeout",
                          f"no answer from the leanstep server at {url} within {timeout:g} s") from None
    except (ConnectionError, OSError) as exc:
        if _is_timeout(exc):
            raise BridgeError(EXIT_TIMEOUT, "timeout",
                              f"no answer from the leanstep server at {url} within {timeout:g} s") from None
        raise BridgeError(EXIT_UNREACHABLE, "unreachable",
                          f"leanstep server at {url} dropped the connection ({exc})") from None
    try:
        reply = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BridgeError(EXIT_BAD_REPLY, "bad_reply",
                          f"leanstep server at {url} sent a reply that is not JSON: {raw[:200]!r}") from None
    if not isinstance(reply, dict):
        raise BridgeError(EXIT_BAD_REPLY, "bad_reply", f"leanstep server at {url} sent {type(reply).__name__}, "
                                                       "expected a JSON object")
    if isinstance(reply.get("error"), str):
        raise BridgeError(EXIT_BAD_REPLY, "server", f"leanstep server: {reply['error']}")
    if route == DEFAULT_ROUTE and not isinstance(reply.get("suggestions"), list):
        raise BridgeError(EXIT_BAD_REPLY, "bad_reply", f"leanstep server at {url} sent no `suggestions` list")
    return reply


class _Answer:
    """The one line the bridge prints: from the main thread, or from the deadline if that comes first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._given = False

    def give(self, obj: dict) -> bool | None:
        """Print ``obj`` unless an answer was already printed (then None). False when ``obj`` held NaN or Infinity,
        which Lean's JSON parser rejects, and a ``bad_reply`` error was printed instead."""
        with self._lock:
            if self._given:
                return None
            self._given = True
            printed = True
            try:
                line = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            except ValueError:
                printed = False
                line = json.dumps({"error": "leanstep server sent a number that is not valid JSON (NaN or Infinity)",
                                   "kind": "bad_reply"}, separators=(",", ":"))
            # One line, UTF-8 whatever the locale.
            sys.stdout.buffer.write((line + "\n").encode("utf-8"))
            sys.stdout.buffer.flush()
            return printed


def _start_deadline(answer: _Answer, url: str, seconds: float) -> None:
    """When ``seconds`` have passed, answer ``timeout`` and exit at once, whatever the main thread is doing
    (a reply trickling in byte by byte never lets a socket timeout fire)."""

    def expire() -> None:
        if answer.give({"error": f"no answer from the leanstep server at {url} within {seconds:g} s",
                        "kind": "timeout"}) is not None:
            os._exit(EXIT_TIMEOUT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="llmstep bridge: JSON request on stdin -> leanstep server -> JSON")
    parser.add_argument("--timeout", default=None,
                        help=f"seconds to wait for the server (default: $LEANSTEP_TIMEOUT or {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--url", default=None, help="server URL (default: $LEANSTEP_URL, $LLMSTEP_HOST/PORT, "
                                                     f"{DEFAULT_URL})")
    parser.add_argument("--route", default=DEFAULT_ROUTE, help=f"the server's route (default: {DEFAULT_ROUTE})")
    args = parser.parse_args(argv)
    url = (args.url or "").rstrip("/") or server_url()
    answer = _Answer()
    try:
        timeout = timeout_seconds(args.timeout)
        route = check_route(args.route)
        _start_deadline(answer, url, timeout)
        request = read_request(sys.stdin.buffer.read().decode("utf-8", "replace"), route)
        reply = post(url, request, timeout, os.environ.get("LEANSTEP_API_KEY") or None, route)
    except BridgeError as exc:
        answer.give({"error": str(exc), "kind": exc.kind})
        return exc.code
    return EXIT_OK if answer.give(reply) else EXIT_BAD_REPLY


if __name__ == "__main__":
    sys.exit(main())
