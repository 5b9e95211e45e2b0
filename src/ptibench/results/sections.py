"""Report sections: what a study adds to a report directory and to the terminal summary.

The trade-off report is always there; a study (ptibench.studies) registers a Section, and
`ptibench.results.report` renders every registered one from the same results document. The
report never imports a study: the registry is how they meet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Document = Mapping[str, Any]


@dataclass(frozen=True)
class Section:
    """`summary_lines(document)` for the terminal; `render(out_dir, document)` writes its files
    (none when the document holds nothing for it) and returns their paths."""

    name: str
    summary_lines: Callable[[Document], list[str]]
    render: Callable[[Path, Document], list[Path]]


_SECTIONS: dict[str, Section] = {}


def register_section(section: Section) -> None:
    """Add (or replace) a section under its name."""
    _SECTIONS[section.name] = section


def registered_sections() -> list[Section]:
    return list(_SECTIONS.values())
