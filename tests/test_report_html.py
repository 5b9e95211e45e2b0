"""Reports people would rather look at: labelled sample grids, breaks and readable rates in the
table, plots where up is better, artifacts inside the report folder, files 0644, a time summary
whose parts add up, and report.html checked in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptibench.evaluation.sample_sheet import (
    FONT_SIZE,
    LABEL_WIDTH,
    PAD,
    THUMB_MAX,
    labelled_grid,
    thumb_size,
)
from ptibench.io import atomic_write_text
from ptibench.results.document import results_document, run_context
from ptibench.results.report import render, timing_line
from ptibench.results.tradeoff import build_tables, knee_line, table_cells
from ptibench.spec import CaseSpec

# lr -> (reconstruction 0..1, editability lost 0..1); 1e-2 collapses on both sides
CURVE = {1e-4: (0.0, 0.0), 3e-4: (0.4, 0.02), 1e-3: (0.8, 0.05), 3e-3: (0.9, 0.3), 1e-2: (0.1, 1.0)}


def _metrics(gain: float, loss: float, lr: float) -> dict[str, float]:
    return {
        "lpips": 0.6 - 0.3 * gain,
        "clip_i": 0.5 + 0.3 * gain,
        "clip_t": 0.32 - 0.1 * loss,
        "edit_success": 0.8 - 0.6 * loss,
        "distance": 1e4 * lr,
    }


def _sheet(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, 255, (3, 2, 32, 32, 3), dtype=np.uint8)
    reference = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    return labelled_grid(samples, ["a <c>", "a <c> at the top", "a small <c>"], "t", reference)


def make_document(tmp_path: Path, curve=CURVE, timings=None) -> dict:
    """A finished stage-2 grid as the plugin would record it, artifacts in a fake cache."""
    cases = []
    for i, (lr, (gain, loss)) in enumerate(curve.items()):
        spec = CaseSpec(stage="finetune", lr=lr, steps=5)
        entry = tmp_path / "cache" / spec.key()
        entry.mkdir(parents=True)
        _sheet(i).save(entry / "samples.png")
        (entry / "lora").mkdir()
        (entry / "lora" / "pytorch_lora_weights.safetensors").write_bytes(b"lora %d" % i)
        (entry / "learned_embeds.safetensors").write_bytes(b"embeds %d" % i)
        cases.append(
            {
                "spec": spec.to_dict(),
                "status": "ok",
                "metrics": _metrics(gain, loss, lr),
                "timings": dict(timings or {"train_s": 2.0, "eval_s": 1.0, "total_s": 4.0}),
                "artifacts": {
                    "samples": str(entry / "samples.png"),
                    "lora": str(entry / "lora"),
                    "learned_embeds": str(entry / "learned_embeds.safetensors"),
                },
                "nodeid": f"test_lr_grid.py::test_lr_case[finetune-lr={lr:.0e}]",
                "baseline": {"verdict": "passed", "note": ""},
            }
        )
    context = run_context(tmp_path, ["pytest", "--lr-grid"], {"lr_grid": "x", "steps": 5})
    return results_document(context, cases)


# --- the sample grid


def test_sample_grid_is_labelled_and_sized_for_its_model():
    assert thumb_size(32) == 64 and thumb_size(64) == 64
    assert thumb_size(512) == thumb_size(1024) == THUMB_MAX
    prompts = [f"prompt {i}" for i in range(10)]
    big = np.zeros((10, 8, 512, 512, 3), dtype=np.uint8)
    sheet = labelled_grid(big, prompts, "finetune / pti  lr=1e-03", np.zeros((5, 512, 512, 3)))
    # 11 rows (training images + 10 prompts) x 8 columns of 128 px tiles beside the labels
    assert sheet.width < 1400 and sheet.height < 1600
    pixels = np.asarray(sheet)
    assert (pixels[:, :LABEL_WIDTH] < 128).any(), "the prompts are written beside the rows"
    first_row_top = 2 * FONT_SIZE + 2 * PAD
    assert (pixels[first_row_top + 10, LABEL_WIDTH + 10] == 0).all(), "training images first"


# --- the table: breaks, rates


def test_a_collapse_is_a_break_left_out_of_the_knee(tmp_path):
    document = make_document(tmp_path)
    (table,) = build_tables(document["cases"])
    rows = {row.lr: row for row in table.rows}
    assert rows[1e-2].status == "broken" and rows[1e-2].broken
    assert [row.status for row in table.rows[:4]] == ["ok"] * 4
    assert 1e-2 not in [row.lr for row in table.sound_rows()]
    assert table.knee_lr() == 1e-3 and not rows[1e-2].past_knee
    assert "breaks at lr=1e-02" in knee_line(table)
    header, body = table_cells(table)
    by_lr = {cells[0]: dict(zip(header, cells, strict=True)) for cells in body}
    assert by_lr["1e-02"]["status"] == "broken"
    assert by_lr["3e-04"]["rate"] != "0" and by_lr["3e-04"]["rate"].replace(".", "").isdigit()


def test_the_rate_column_says_free_and_no_gain_in_words(tmp_path):
    curve = {1e-4: (0.0, 0.0), 3e-4: (0.5, 0.0), 1e-3: (0.5, 0.6), 3e-3: (0.9, 0.6)}
    (table,) = build_tables(make_document(tmp_path, curve)["cases"])
    header, body = table_cells(table)
    rates = [cells[header.index("rate")] for cells in body]
    assert rates == ["-", "free", "no gain", "free"]
    assert not any(cell in ("0", "inf") for cells in body for cell in cells)


# --- the time summary


def test_the_time_summary_counts_a_batched_run_once_and_adds_up(tmp_path):
    # three stage-1 cases trained in one 30 s batched run: each records a 10 s share, outside
    # its own total (which covers its loading and evaluation only)
    shared = {"train_s": 10.0, "batched_train_s": 10.0, "eval_s": 3.0, "total_s": 4.0}
    document = make_document(tmp_path, dict(list(CURVE.items())[:3]), shared)
    line = timing_line(document)
    assert "worker time 42 s = training 30 s (30 s of it in group runs" in line
    assert "evaluation 9 s + loading and writing 3 s" in line


# --- the report folder


def test_artifacts_are_copied_in_and_named_relatively(tmp_path):
    out = tmp_path / "out"
    document = make_document(tmp_path)
    render(out, document)
    written = json.loads((out / "results.json").read_text())
    for case in written["cases"]:
        for relative in case["artifacts"].values():
            assert not Path(relative).is_absolute() and (out / relative).exists()
    lora = next(iter(written["cases"]))["artifacts"]["lora"]
    assert (out / lora / "pytorch_lora_weights.safetensors").read_bytes().startswith(b"lora")
    shutil.rmtree(tmp_path / "cache")  # the cache cleared: the report folder still has it all
    render(out)
    again = json.loads((out / "results.json").read_text())
    assert [c["artifacts"] for c in again["cases"]] == [c["artifacts"] for c in written["cases"]]


def test_report_files_are_world_readable(tmp_path):
    umask = os.umask(0o022)
    try:
        render(tmp_path / "out", make_document(tmp_path))
        atomic_write_text(tmp_path / "plain.txt", "x")
    finally:
        os.umask(umask)
    for name in ("results.json", "tradeoff.md", "tradeoff.png", "report.html"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644


def test_the_plot_puts_better_up_and_marks_the_break(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ptibench.results import report

    (table,) = build_tables(make_document(tmp_path)["cases"])
    figure, (left, right) = plt.subplots(1, 2)
    report._plot_tradeoff(left, table)
    report._plot_distance(right, table)
    assert "better" in left.get_ylabel() and "better" in left.get_xlabel()
    assert any("1e-02 breaks" in text.get_text() for text in left.texts)
    labels = right.get_legend_handles_labels()[1]
    assert any(label.startswith("lpips (↓, drawn flipped") for label in labels)
    assert "breaks" in labels
    lpips = next(line for line in right.lines if line.get_label().startswith("lpips"))
    assert list(lpips.get_ydata()) == sorted(lpips.get_ydata()), "lpips falls: drawn rising"
    plt.close(figure)


# --- report.html in a real browser


class _Page(HTMLParser):
    """The parts of the dumped DOM the test checks: <body>'s attributes and the images."""

    def __init__(self):
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.body = dict(attrs)
        elif tag == "img":
            self.images.append(dict(attrs))


def chromium() -> str:
    """The headless browser, or a skip (a failure where CI requires it: .ci/run installs it)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("PTIBENCH_REQUIRE_BROWSER"):
        pytest.fail("PTIBENCH_REQUIRE_BROWSER is set but no chromium is on PATH")
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")


def _browse(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [browser, *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_html_report_loads_offline_in_a_headless_browser(tmp_path):
    browser = chromium()
    out = tmp_path / "out"
    document = make_document(tmp_path)
    render(out, document)
    page_path = out / "report.html"
    source = page_path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", source), "no network address"

    dumped = _browse(
        browser,
        tmp_path / "profile",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page_path.as_uri(),
    )
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    page = _Page()
    page.feed(dumped.stdout)
    assert page.body.get("data-images") == "ok", page.body
    assert "data-errors" not in page.body
    plots = [img for img in page.images if img.get("id") == "tradeoff-plot"]
    assert len(plots) == 1 and plots[0]["src"].startswith("data:image/png;base64,")
    grids = [img for img in page.images if "sample-grid" in (img.get("class") or "")]
    assert len(grids) == len(CURVE)
    assert all(img["src"].startswith("data:image/png;base64,") for img in grids)
    assert 'href="artifacts/yellow-ring-finetune-pti-lr=1e-02-seed0/lora"' in dumped.stdout
    assert 'class="broken"' in dumped.stdout and 'class="knee"' in dumped.stdout

    shot = tmp_path / "shot.png"
    taken = _browse(
        browser,
        tmp_path / "profile",
        "--window-size=1280,1600",
        f"--screenshot={shot}",
        page_path.as_uri(),
    )
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    colours = np.unique(np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the screenshot shows the plot and the grids, not a blank page"
