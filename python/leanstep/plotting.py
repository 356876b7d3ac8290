"""PNG plots for the commands and benchmarks that draw one (matplotlib, an optional dependency, loaded only here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def png_figure(path: Path, *, dpi: int = 120, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``with png_figure(path, figsize=(7, 4)) as (fig, ax):`` draw on the axes of ``plt.subplots(**subplots)``;
    when the block ends the figure is laid out, written to ``path`` (its folder made) and closed.

    matplotlib runs on its file-only backend, so no display is needed. Raises ImportError without matplotlib,
    before anything is drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
