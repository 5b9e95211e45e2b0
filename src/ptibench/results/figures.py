"""Saving matplotlib figures the way every report file is written: atomically, so a reader
never sees half a PNG."""

from __future__ import annotations

from pathlib import Path

from ptibench.io import atomic_path


def new_figure(rows: int, width: float, row_height: float = 4.2):
    """A figure of `rows` x 2 axes on the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(max(rows, 1), 2, figsize=(width, row_height * max(rows, 1)), squeeze=False)


def save_figure(figure, path: Path, dpi: int = 100) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(figure)
