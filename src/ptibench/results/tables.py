"""Plain tables: aligned text for the terminal and GitHub Markdown, from a header and rows of
cells. Every table ptibench prints goes through here.
"""

from __future__ import annotations


def render_text(
    header: list[str], body: list[list[str]], separator: str = "  ", align: str = "right"
) -> str:
    """Columns padded to their widest cell (right-aligned numbers by default)."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    pad = str.rjust if align == "right" else str.ljust
    return "\n".join(
        separator.join(pad(cell, width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    )


def render_markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in body]
    return "\n".join(lines)
