"""report.html: the trade-off report as one page that opens offline.

Everything it shows is inside the file (the plot and the sample grids as data: URIs, the styles
inline) or next to it under relative links (each case's artifacts, the other report files);
nothing refers to the network. The tables carry the same cells as tradeoff.md, with the knee,
the lrs past it and the broken ones marked. A small inline script records on <body> whether
every image decoded (`data-images="ok"`), so a headless browser can check the page.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptibench.io import atomic_write_text
from ptibench.results.tradeoff import (
    LEGEND,
    TradeoffTable,
    intervals_line,
    knee_line,
    table_cells,
    table_key,
)
from ptibench.spec import lr_key

HTML_REPORT = "report.html"
PLOT = "tradeoff.png"
EMBED_LIMIT = 24 * 2**20
"""Sample grids are embedded until they add up to this many bytes; the rest are linked."""

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .5em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 2px 7px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; }
tr.knee td { background: #fff3b0; font-weight: 600; }
tr.past td { background: #fde4e1; }
tr.broken td { background: #eee; color: #9b1c1c; text-decoration: line-through; }
tr.broken td:nth-child(-n+2) { text-decoration: none; font-weight: 600; }
tr.diverged td { color: #777; font-style: italic; }
.note { color: #555; max-width: 70em; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: .85em; }
.badge.knee { background: #f5c400; } .badge.past { background: #f4a59a; }
.badge.broken { background: #9b1c1c; color: white; } .badge.diverged { background: #999; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
img.plot { max-width: 100%; }
.grids { display: flex; flex-wrap: wrap; gap: 1.5em; }
.grids figure { flex: 1 1 560px; max-width: 820px; }
figcaption { font-size: .95em; } figcaption a { margin-right: .8em; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: 12px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0 1em; }
dt { font-weight: 600; } dd { margin: 0; }
"""

CHECK_SCRIPT = """
window.addEventListener("error", function (event) {
  document.body.setAttribute("data-errors", String(event.message || event.type));
}, true);
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (image) {
    return !(image.complete && image.naturalWidth > 0);
  });
  document.body.setAttribute("data-images",
    broken.length ? "broken: " + broken.map(function (i) { return i.alt; }).join(", ") : "ok");
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _row_class(table: TradeoffTable, row) -> str:
    if row.status.startswith("diverged"):
        return "diverged"
    if row.broken:
        return "broken"
    if row.past_knee:
        return "past"
    return "knee" if row.lr == table.knee_lr() else ""


def _badge(table: TradeoffTable, row) -> str:
    kind = _row_class(table, row)
    words = {"knee": "knee", "past": "past the knee", "broken": "breaks", "diverged": "diverged"}
    return f' <span class="badge {kind}">{words[kind]}</span>' if kind else ""


def table_html(table: TradeoffTable) -> str:
    header, body = table_cells(table)
    lines = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for row, cells in zip(table.rows, body, strict=True):
        kind = _row_class(table, row)
        attribute = f' class="{kind}"' if kind else ""
        lines.append(
            f"<tr{attribute}>" + "".join(f"<td>{_e(cell)}</td>" for cell in cells) + "</tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


class _Images:
    """Embeds images as data: URIs until EMBED_LIMIT bytes, then links them relatively."""

    def __init__(self, out_dir: Path, limit: int = EMBED_LIMIT):
        self.out_dir, self.left = out_dir, limit

    def src(self, relative: str) -> str:
        path = self.out_dir / relative
        size = path.stat().st_size
        if size <= self.left:
            self.left -= size
            return data_uri(path)
        return _e(relative)


def _artifact_links(case: Mapping[str, Any]) -> str:
    links = []
    for name, relative in sorted((case.get("artifacts") or {}).items()):
        if Path(str(relative)).is_absolute():
            continue  # not copied (its source was gone): no link that works elsewhere
        links.append(f'<a href="{_e(relative)}">{_e(name)}</a>')
    return " ".join(links)


def _grids_html(table: TradeoffTable, cases: Sequence[Mapping[str, Any]], images: _Images) -> str:
    by_lr: dict[float, list[Mapping[str, Any]]] = {}
    for case in cases:
        if table_key(case) == table.key:
            by_lr.setdefault(float(case["spec"]["lr"]), []).append(case)
    figures = []
    for row in table.rows:
        for case in sorted(by_lr.get(row.lr, []), key=lambda c: c["spec"]["seed"]):
            caption = (
                f"lr={_e(lr_key(row.lr))} seed {_e(case['spec']['seed'])}, {_e(row.status)}"
                f"{_badge(table, row)}<br>{_artifact_links(case)}"
            )
            grids = [
                f'<img class="sample-grid" alt="samples {_e(lr_key(row.lr))} seed '
                f'{_e(case["spec"]["seed"])}" src="{images.src("samples/" + name)}">'
                for name in case.get("samples", [])
                if (images.out_dir / "samples" / name).is_file()
            ]
            if grids or _artifact_links(case):
                figures.append(
                    f"<figure>{''.join(grids)}<figcaption>{caption}</figcaption></figure>"
                )
    if not figures:
        return ""
    return '<h3>samples per lr</h3>\n<div class="grids">\n' + "\n".join(figures) + "\n</div>"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _provenance(document: Mapping[str, Any]) -> str:
    commit = document.get("commit") or {}
    facts = {
        "commit": f"{commit.get('id')} (branch {commit.get('branch')}, "
        f"dirty {commit.get('dirty')})",
        "written": document.get("written") or _now(),
        "invocation": " ".join(str(a) for a in document.get("invocation") or []) or "-",
        "options": ", ".join(f"{k}={v}" for k, v in (document.get("options") or {}).items()),
        "machine": ", ".join(f"{k}={v}" for k, v in (document.get("machine") or {}).items()),
        "versions": ", ".join(
            f"{k} {v}" for k, v in sorted((document.get("versions") or {}).items()) if v
        ),
    }
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts.items()) + "</dl>"


def render_html(
    out_dir: Path,
    document: Mapping[str, Any],
    tables: list[TradeoffTable],
    summary: list[str],
    other_files: Sequence[Path] = (),
) -> str:
    """The page for `document` (artifacts already collected into `out_dir`)."""
    out_dir = Path(out_dir)
    images = _Images(out_dir)
    options = document.get("options") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>ptibench trade-off report</title>",
        f"<style>{STYLE}</style>",
        f"<script>{CHECK_SCRIPT}</script>",
        "</head><body>",
        "<h1>ptibench trade-off report</h1>",
        f'<p class="note">grid {_e(options.get("lr_grid"))}, steps {_e(options.get("steps"))}. '
        f"{_e(LEGEND)}</p>",
    ]
    if (out_dir / PLOT).is_file():
        parts.append(
            f'<figure><img id="tradeoff-plot" class="plot" alt="trade-off plot" '
            f'src="{data_uri(out_dir / PLOT)}"><figcaption>Left: reconstruction gain against '
            "editability per lr (up and right is better; ★ the knee, ✕ a break, bars the 95% "
            "intervals). Right: each metric against the distance travelled, oriented so that up is "
            "better.</figcaption></figure>"
        )
    for table in tables:
        parts += [
            f"<h2>{_e(table.title)}</h2>",
            f'<p class="note">{_e(intervals_line(table))}</p>',
            table_html(table),
            f'<p class="note">{_e(knee_line(table))}</p>',
            _grids_html(table, document.get("cases", []), images),
        ]
    links = [
        f'<a href="{_e(Path(p).relative_to(out_dir).as_posix())}">{_e(Path(p).name)}</a>'
        for p in [out_dir / "results.json", out_dir / "tradeoff.md", *other_files]
        if Path(p).is_file() and Path(p).is_relative_to(out_dir)
    ]
    parts += [
        "<h2>run</h2>",
        "<pre>" + _e("\n".join(summary).strip("\n")) + "</pre>",
        "<p>files: " + " ".join(links) + "</p>",
        "<h2>provenance</h2>",
        _provenance(document),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def write_html(
    path: Path,
    document: Mapping[str, Any],
    tables: list[TradeoffTable],
    summary: list[str],
    other_files: Sequence[Path] = (),
) -> Path:
    atomic_write_text(path, render_html(Path(path).parent, document, tables, summary, other_files))
    return path
