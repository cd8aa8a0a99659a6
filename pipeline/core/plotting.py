"""PNG figures for people to look at (matplotlib, headless)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

FIGSIZE = (8, 4.5)  # inches at 100 dpi: 800x450 pixels, readable in a README or an image viewer
DPI = 100


@contextlib.contextmanager
def png_grid(path: Path, rows: int, cols: int, figsize: tuple[float, float]) -> Iterator:
    """Yield ``(figure, axes)`` of a ``rows`` x ``cols`` grid; written to ``path`` as PNG when the block ends."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=figsize, dpi=DPI, squeeze=False)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


@contextlib.contextmanager
def png_figure(path: Path) -> Iterator:
    """Yield matplotlib axes; the figure is written to ``path`` as PNG when the block ends."""
    with png_grid(path, 1, 1, FIGSIZE) as (_, axes):
        ax = axes[0, 0]
        yield ax
        ax.grid(alpha=0.3, which="both")
        ax.legend()
