"""Atomic writes and the result cache: a half-written file or entry is never read back."""

from __future__ import annotations

import json
import os

import pytest

from ptibench.errors import PtibenchError
from ptibench.io import atomic_path, atomic_write_json, read_json
from ptibench.run.cache import ResultCache
from ptibench.spec import CaseResult, CaseSpec
from ptibench.training.methods import get_method


def test_atomic_write_replaces_whole_and_cleans_up(tmp_path):
    target = tmp_path / "data.json"
    atomic_write_json(target, {"a": 1, "nan": float("nan")})
    assert read_json(target) == {"a": 1, "nan": None}
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert read_json(target) == {"a": 1, "nan": None}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PtibenchError, match="cannot write"):
            atomic_write_json(folder / "x.json", {})
    finally:
        folder.chmod(0o700)


def test_unwritable_target_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PtibenchError, match="cannot"):
        atomic_write_json(blocker / "sub" / "x.json", {})


def _result(spec):
    return CaseResult(spec=spec, status="ok", metrics={"lpips": 0.5, "distance": 1.0})


def test_cache_round_trip_and_half_written_entries(tmp_path):
    cache, method = ResultCache(tmp_path), get_method("pti")
    spec = CaseSpec(stage="inversion", lr=1e-3)
    entry = cache.entry(spec, "w0", method)
    assert cache.load(entry) is None
    staging = cache.staging(entry)
    (staging / "samples.png").write_bytes(b"png")
    result = _result(spec)
    result.artifacts["samples"] = str(staging / "samples.png")
    assert cache.load(entry) is None, "a staging folder is never read"
    stored = cache.store(entry, result, staging)
    assert stored.artifacts["samples"] == str(entry.path / "samples.png")
    loaded = cache.load(entry)
    assert loaded.from_cache and loaded.metrics == result.metrics
    assert loaded.artifacts == stored.artifacts
    assert cache.entry(spec, "w1", method).name != entry.name
    assert cache.entry(spec.with_(lr=2e-3), "w0", method).name != entry.name


def test_corrupt_entry_is_recomputed_not_read(tmp_path):
    cache, method = ResultCache(tmp_path), get_method("pti")
    spec = CaseSpec(stage="inversion", lr=1e-3)
    entry = cache.entry(spec, "w0", method)
    entry.path.mkdir(parents=True)
    (entry.path / "result.json").write_text('{"spec": {"stage": "inv')
    assert cache.load(entry) is None
    stored = cache.store(entry, _result(spec), cache.staging(entry))
    assert stored.metrics["lpips"] == 0.5
    assert json.loads((entry.path / "result.json").read_text())["status"] == "ok"
    assert cache.load(entry).from_cache
