"""PNG figures for people to look at (matplotlib, headless)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

FIGSIZE = (8, 4.5)  # inches at 100 dpi: 800x450 pixels, readable in a README or an image viewer


@contextlib.contextmanager
def png_figure(path: Path) -> Iterator:
    """Yield matplotlib axes; the figure is written to ``path`` as PNG when the block ends."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=100)
    try:
        yield ax
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
