"""The trace ``leanstep serve --trace FILE`` writes and ``leanstep plan FILE`` reads: one JSON line per
distinct snippet of each batch, digests and sizes only.

A line never holds source text: the header and the result-cache key are
16-hex-digit SHA-256 digests; the rest is sizes, seconds, the verdict and
counts. Each start of a server appends a line ``{"format": "leanstep-trace",
"version": 1, ...}`` first, which begins a new segment (the caches start
empty there). A record line::

    {"t": 12.5, "batch": 3, "header": "9f2c...", "header_chars": 14, "key": "1b7e...", "copies": 2,
     "chars": 812, "verdict": "valid", "seconds": 0.13, "cached": false, "timeout": 60.0, "import_s": 1.02}

``t``: seconds since the segment began, when the snippet was answered;
``batch``: the request's number in the segment; ``key``: null when the request
asked for no cache; ``copies``: the request's snippets it answered;
``seconds``: REPL seconds of its check (0 from the cache); ``import_s``: what
the pool last paid to import its header (null before any import).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from leanstep.api.records import json_objects
from leanstep.check.verify import CheckRecord

FORMAT = "leanstep-trace"
VERSION = 1
DIGEST_CHARS = 16


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True)
class TraceEntry:
    """One record line: a distinct snippet of a batch, by digests and sizes."""

    t: float
    batch: int
    header: str
    header_chars: int
    key: str | None
    copies: int
    chars: int
    verdict: str
    seconds: float
    cached: bool
    timeout: float
    import_s: float | None = None

    @property
    def definitive(self) -> bool:
        """Whether its answer could be cached: valid or invalid, or it came from the cache."""
        return self.cached or self.verdict in ("valid", "invalid")


@dataclass(frozen=True)
class Segment:
    """The entries of one server run, in the order they were written."""

    started: str
    entries: tuple[TraceEntry, ...]


class TraceWriter:
    """Appends a trace to ``path`` (a :class:`CheckRecord` callback); thread-safe, one flushed line per record.

    ``import_seconds(header)``: what the pool last paid to import a header (``ReplPool.import_seconds``).
    """

    def __init__(self, path: Path, import_seconds: Callable[[str], float] | None = None) -> None:
        self.path = path
        self._import_seconds = import_seconds
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._write({"format": FORMAT, "version": VERSION,
                     "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})

    def __call__(self, record: CheckRecord) -> None:
        entry = TraceEntry(
            t=round(time.monotonic() - self._start, 4), batch=record.batch, header=digest(record.header),
            header_chars=len(record.header), key=None if record.key is None else record.key[:DIGEST_CHARS],
            copies=record.copies, chars=record.chars, verdict=str(record.verdict), seconds=round(record.seconds, 4),
            cached=record.cached, timeout=record.timeout,
            import_s=None if self._import_seconds is None else round(self._import_seconds(record.header), 4))
        self._write(asdict(entry))

    def _write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


_FIELDS = frozenset(f.name for f in fields(TraceEntry))


def read_trace(path: Path) -> list[Segment]:
    """The segments of a trace file; a line that is not a trace line is a ValueError naming it."""
    segments: list[Segment] = []
    started: str | None = None
    entries: list[TraceEntry] = []
    for lineno, obj in json_objects(path):
        if "format" in obj:
            if obj.get("format") != FORMAT or obj.get("version") != VERSION:
                raise ValueError(f"{path}:{lineno}: not a {FORMAT} version {VERSION} line")
            if started is not None:
                segments.append(Segment(started, tuple(entries)))
            started, entries = str(obj.get("started", "")), []
            continue
        if started is None:
            raise ValueError(f"{path}:{lineno}: a record before the trace's first format line")
        try:
            entries.append(TraceEntry(**{k: v for k, v in obj.items() if k in _FIELDS}))
        except TypeError as exc:
            raise ValueError(f"{path}:{lineno}: not a trace record ({exc})") from None
    if started is not None:
        segments.append(Segment(started, tuple(entries)))
    return segments


__all__ = ["DIGEST_CHARS", "FORMAT", "VERSION", "Segment", "TraceEntry", "TraceWriter", "digest", "read_trace"]
