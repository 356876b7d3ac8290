"""The progress bar of long work (tqdm, on stderr), or none: what every command's ``--no-progress`` switches off."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """``total`` items of ``unit``, labelled ``desc``; with ``enabled`` False nothing is drawn.

    Lines given to :meth:`write` go above the bar, or to stderr when there is none, so a command says the same
    thing either way. Safe to call from several threads, as tqdm is.
    """

    def __init__(self, total: int, unit: str, desc: str, *, enabled: bool = True) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int = 1, **postfix: Any) -> None:
        """``done`` more items finished; ``postfix`` (e.g. ``solved=3``) is shown after the bar."""
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix(refresh=False, **postfix)
        self._bar.update(done)

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
