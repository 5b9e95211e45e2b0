"""Stored baselines: one JSON file per world/concept/method/stage; within it, entries keyed by
the lr, the seed and the settings that change the numbers, and per lr and settings a summary of
the training seeds recorded there.

Layout: `baselines/<world>/<concept>/<method>/<stage>.json`::

    {"format": "ptibench-baseline", "version": 3, "world": ..., "concept": ..., "method": ...,
     "stage": ..., "entries": {"5e-03": {"<seed>": {"<settings>": {
         "spec": {...},                 # the full CaseSpec
         "status": "ok" | "diverged", "diverged_at": int | null,
         "metrics": {"lpips": {"value": 0.31, "direction": "lower", "abs": 0.03, "rel": 0.1}, ...},
         "recorded": {"versions", "seed", "device", "commit", "date", ...}}}},
     "summaries": {"5e-03": {"<settings>": {
         "seeds": [0, 1, 2], "statuses": {"ok": 3},
         "metrics": {"lpips": {"mean": 0.31, "sd": 0.01, "n": 3, "pooled_sd": 0.012, "df": 14,
                               "scale": "linear", "center": 0.31, "allowed": 0.04,
                               "direction": "lower"}, ...}}}}}

Keys are lr values (`5e-03`), not node ids, so renaming a test or changing the grid keeps them.
`<settings>` spells every other spec field that changes the numbers (steps, batch size, pivot
lr, the sampler's settings; `settings_key`), so a 5-step smoke run records entries of its own
beside the 1000-step ones instead of replacing them. The world and method versions, device,
dtype, compiled training and the sampler's precision are recorded with each entry:
`--update-baselines` refuses to replace an entry recorded under others unless forced
(`update(..., force=True)`), and a failing check names them (`what_changed`). Version 1 and 2
files are read as version 3 and rewritten as such on the next update.

**Tolerances from the seed spread.** Where an lr has two or more training seeds recorded (with
`--seeds 3 --update-baselines`), a case is checked against the summary, whatever its own seed:
the allowance is the one-sided 99% prediction bound for one new seed,

    allowed = t(1 - FALSE_ALARM; df) * s_pooled * sqrt(1 + 1/n)

where n is the number of seeds at this lr and s_pooled the within-lr standard deviation pooled
over every lr of the file with two or more seeds at the same settings (df = sum of n_i - 1): one
spread per metric and stage, since three seeds alone give a poor estimate (t(0.99; 2) = 6.96).
An lr whose spread is significantly larger than the others' (F test at OUTLIER_LEVEL, leaving
it out: a break, where seeds collapse differently) is not pooled; it keeps its own spread and df.
`distance` and `pivot_distance` are compared on a log scale (their spread grows with the lr).
Two-sided metrics split FALSE_ALARM over both sides. A share never gets less than one sample's worth
(1 / samples_per_prompt), so a spread of zero does not fail the next sample that changes. With
FALSE_ALARM = 0.01 a rerun with a new training seed fails about 1% of its metric checks, and a
case about 8%; a change of a few pooled standard deviations fails.
**Confirmation.** Another machine's float rounding turns a chaotic lr's 1000 steps into a new
draw even at a recorded seed, so a grid of nine cases would fail about half its runs on such a
machine. A case that fails against the seed spread is therefore trained again with a fresh seed
(`confirmation_seed`) and fails only when that seed fails one of the same metrics too
(`confirmed`): a new draw repeats a given metric's 1% with about 1% probability, a regression
repeats on every draw. The price: a regression caught with probability p per draw is caught
with p squared.

Where an lr has one seed, the fixed tolerances below apply to that seed's entry
(allowed = max(abs, rel * |baseline|)); they are stored with each metric, so a hand-tuned one
survives `--update-baselines`:

- `lpips` (lower, one-sided): abs 0.03, rel 0.10 — a mean over pairs of few samples.
- `clip_i`, `clip_t` (higher, one-sided): abs 0.02, rel 0.03 — cosines move in the 2nd decimal.
- `denoise_loss` (lower, one-sided): abs 0.002, rel 0.05 — fixed noise and timesteps: stable.
- `appearance`, `edit_success`, `edit_identity` (higher), `leakage` (lower; one-sided shares):
  abs = two binomial standard deviations at p = 0.5 over `samples_per_prompt` samples, clipped
  to [0.05, 0.25]; rel 0.
- `distance`, `pivot_distance` (two-sided): abs 1e-3, rel 0.10 — a drift in how far training
  moves, or in the pivot stage 2 starts from, is a change in the method even when the metrics
  look fine.
- `cosine_to_init` (two-sided): abs 0.05; `final_loss` (two-sided): abs 0.005, rel 0.10.
- any other metric a method reports: two-sided, abs 1e-6, rel 0.10.

One-sided means only a change for the worse fails; an improvement beyond the allowance is shown
as a note that suggests `--update-baselines`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptibench import io
from ptibench.errors import PtibenchError
from ptibench.results.tables import render_text
from ptibench.spec import METRICS, CaseResult, CaseSpec, lr_key

IDENTITY_FIELDS = ("world", "concept", "method", "stage", "lr", "seed")
"""Spec fields that place an entry (its file, lr and seed keys) rather than name its settings."""

FORMAT = "ptibench-baseline"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
DIRECTIONS = ("higher", "lower", "both")
STATUSES = ("ok", "diverged")
SHARE_METRICS = ("appearance", "edit_success", "edit_identity", "leakage")
# Spec fields that leave the final metrics unchanged (checkpointed evaluation is tested to end
# bitwise-identical to a plain run), so a baseline recorded without them still applies.
SETTINGS_WITHOUT_EFFECT = ("eval_every",)
FALSE_ALARM = 0.01
"""The share of one metric's checks a new training seed fails by chance (one-sided)."""
OUTLIER_LEVEL = 0.99
"""An lr whose seed spread exceeds the other lrs' at this level keeps its own spread. Three seeds
give the F test little power: at 0.999 stage-1 lr 1e-1 of yellow-ring (seeds' clip_t 0.53,
0.63, 0.66; F = 8.8 against the other lrs, p = 0.004) stayed pooled, and two further draws on
another machine (0.49, 0.48) fell outside the pooled allowance."""
LOG_SCALE_METRICS = ("distance", "pivot_distance")

_FIXED_TOLERANCES: dict[str, tuple[float, float, str]] = {
    "lpips": (0.03, 0.10, "lower"),
    "clip_i": (0.02, 0.03, "higher"),
    "clip_t": (0.02, 0.03, "higher"),
    "denoise_loss": (0.002, 0.05, "lower"),
    "distance": (1e-3, 0.10, "both"),
    "pivot_distance": (1e-3, 0.10, "both"),
    "cosine_to_init": (0.05, 0.0, "both"),
    "final_loss": (0.005, 0.10, "both"),
}
_OTHER_TOLERANCE = (1e-6, 0.10, "both")


@dataclass(frozen=True)
class Tolerance:
    """How far an obtained value may move from the baseline, and in which direction it may not."""

    abs: float
    rel: float
    direction: str

    def allowed(self, baseline: float) -> float:
        return max(self.abs, self.rel * abs(baseline))


def default_tolerance(metric: str, samples_per_prompt: int = 8) -> Tolerance:
    """The documented default for `metric` (shares depend on how many samples they count)."""
    if metric in SHARE_METRICS:
        sd = math.sqrt(0.25 / max(samples_per_prompt, 1))
        return Tolerance(min(0.25, max(0.05, round(2 * sd, 3))), 0.0, METRICS[metric].direction)
    abs_tol, rel_tol, direction = _FIXED_TOLERANCES.get(metric, _OTHER_TOLERANCE)
    return Tolerance(abs_tol, rel_tol, direction)


def noise_floor(metric: str, samples_per_prompt: int = 8) -> float:
    """The smallest change of `metric` worth reading as a trend (its absolute tolerance)."""
    return default_tolerance(metric, samples_per_prompt).abs


def path_part(name: str) -> str:
    """A world/concept/method as one folder name: plain names as they are, paths as their last
    part plus a hash of the whole (so '/data/sd15' never escapes the baseline folder)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        return name
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "path"
    return f"{tail}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def baseline_path(root: Path, spec: CaseSpec) -> Path:
    parts = (path_part(spec.world), path_part(spec.concept), path_part(spec.method))
    return Path(root).joinpath(*parts, f"{spec.stage}.json")


def baseline_lock(path: Path):
    """An inter-process lock for `path`, kept outside the repo so no lock file gets committed."""
    digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
    return io.file_lock(Path(tempfile.gettempdir()) / "ptibench-locks" / f"{digest}.lock")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_case(where: str, case: Any) -> str | None:
    if not isinstance(case, dict) or case.get("status") not in STATUSES:
        return f'{where}: "status" must be one of {", ".join(STATUSES)}'
    if not isinstance(case.get("spec"), dict) or not isinstance(case.get("metrics"), dict):
        return f'{where}: needs "spec" and "metrics" objects'
    for name, metric in case["metrics"].items():
        if not isinstance(metric, dict) or not _finite(metric.get("value")):
            return f'{where}: metric {name!r} needs a finite "value"'
        if metric.get("direction") not in DIRECTIONS:
            return f'{where}: metric {name!r} "direction" must be one of {DIRECTIONS}'
        for tol in ("abs", "rel"):
            if not _finite(metric.get(tol)) or metric[tol] < 0:
                return f'{where}: metric {name!r} "{tol}" must be a number >= 0'
    return None


def _check_schema(data: Any) -> str | None:
    """What is wrong with a parsed baseline file (version 1, 2 or 3), or None."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f'not a ptibench baseline (needs "format": "{FORMAT}")'
    if data.get("version") not in READABLE_VERSIONS:
        return f"unsupported version {data.get('version')!r} (expected {VERSION})"
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return '"entries" must be an object keyed by lr'
    if not isinstance(data.get("summaries", {}), dict):
        return '"summaries" must be an object keyed by lr'
    for lr, by_seed in entries.items():
        if not isinstance(by_seed, dict):
            return f"entry {lr!r} must be an object keyed by seed"
        for seed, cases in by_seed.items():
            where = f"entry {lr}/seed {seed}"
            if data["version"] == 1:
                cases = {"": cases}
            elif not isinstance(cases, dict):
                return f"{where} must be an object keyed by settings"
            for settings, case in cases.items():
                problem = _check_case(f"{where}{'/' if settings else ''}{settings}", case)
                if problem:
                    return problem
    return None


def settings_key(spec: CaseSpec) -> str:
    """The settings of `spec` that change the numbers, as one readable key: every field but
    those that place the entry (world, concept, method, stage, lr, seed) and those without
    effect on the final metrics, e.g. 'batch_size=4,eval.guidance_scale=4.0,...,steps=1000'."""
    data = spec.to_dict()
    parts = []
    for name in sorted(data):
        if name in IDENTITY_FIELDS or name in SETTINGS_WITHOUT_EFFECT:
            continue
        value = data[name]
        if isinstance(value, dict):
            parts += [f"{name}.{key}={value[key]!r}" for key in sorted(value)]
        else:
            parts.append(f"{name}={value!r}")
    return ",".join(parts)


def settings_difference(settings: str, other: str) -> str:
    """The parts of settings key `settings` that differ from `other` ('' when none)."""
    theirs = dict(part.split("=", 1) for part in other.split(",") if "=" in part)
    return ",".join(
        part
        for part in settings.split(",")
        if theirs.get(part.split("=", 1)[0]) != part.split("=", 1)[-1]
    )


def _entry_settings(entry: Mapping[str, Any]) -> str:
    return settings_key(CaseSpec.from_dict(entry["spec"]))


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A version 1 file's entries ({lr: {seed: entry}}) keyed by their settings too; every
    file's summaries computed afresh from its entries (stored ones are for readers)."""
    if data["version"] == 1:
        data["entries"] = {
            lr: {seed: {_entry_settings(entry): entry} for seed, entry in by_seed.items()}
            for lr, by_seed in data["entries"].items()
        }
    data["version"] = VERSION
    data["summaries"] = summarise(data["entries"])
    return data


def _on_scale(metric: str, value: float) -> float:
    """`value` on the scale its spread is measured on (log for metrics that grow with lr)."""
    return math.log(value) if metric in LOG_SCALE_METRICS and value > 0 else value


def summarise(entries: Mapping[str, Any]) -> dict[str, Any]:
    """Per lr and settings: the seeds recorded, their statuses and, per metric over the sound
    seeds, mean, sd and n; then the spread pooled over the lrs of the same settings and the
    allowance it gives (see the module docstring). {lr: {settings: summary}}."""
    from scipy.stats import t as student_t

    groups: dict[tuple[str, str], list[tuple[int, Mapping[str, Any]]]] = {}
    for lr, by_seed in entries.items():
        for seed, variants in by_seed.items():
            for settings, entry in variants.items():
                groups.setdefault((lr, settings), []).append((int(seed), entry))
    by_lr: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for (lr, settings), items in sorted(groups.items()):
        sound = [entry for _, entry in items if entry["status"] == "ok"]
        statuses: dict[str, int] = {}
        for _, entry in items:
            statuses[entry["status"]] = statuses.get(entry["status"], 0) + 1
        metrics: dict[str, Any] = {}
        for name in sorted({name for entry in sound for name in entry["metrics"]}):
            stored = [entry["metrics"][name] for entry in sound if name in entry["metrics"]]
            values = [float(m["value"]) for m in stored]
            scaled = [_on_scale(name, v) for v in values]
            n = len(values)
            center = sum(scaled) / n
            squares = sum((x - center) ** 2 for x in scaled)
            mean = sum(values) / n
            metrics[name] = {
                "mean": mean,
                "sd": math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0,
                "n": n,
                "scale": "log" if name in LOG_SCALE_METRICS else "linear",
                "center": center,
                "direction": stored[0]["direction"],
            }
            if n > 1:
                by_lr.setdefault((settings, name), {})[lr] = (squares, n - 1)
        samples = CaseSpec.from_dict(items[0][1]["spec"]).eval.samples_per_prompt
        summaries.setdefault(lr, {})[settings] = {
            "seeds": sorted(seed for seed, _ in items),
            "statuses": statuses,
            "samples_per_prompt": samples,
            "metrics": metrics,
        }
    spreads = {key: _spreads(lrs) for key, lrs in by_lr.items()}
    for lr, by_settings in summaries.items():
        for settings, summary in by_settings.items():
            for name, metric in summary["metrics"].items():
                own, pooled = spreads.get((settings, name), ({}, None))
                spread, df, shared = own.get(lr) or pooled or (0.0, 0, False)
                if df == 0:
                    metric.update(pooled_sd=None, df=0, pooled=False, allowed=None)
                    continue
                alpha = FALSE_ALARM / 2 if metric["direction"] == "both" else FALSE_ALARM
                allowed = float(student_t.ppf(1 - alpha, df)) * spread
                allowed *= math.sqrt(1 + 1 / metric["n"])
                if name in SHARE_METRICS:
                    allowed = max(allowed, 1 / summary["samples_per_prompt"])
                metric.update(pooled_sd=spread, df=int(df), pooled=shared, allowed=allowed)
    return summaries


def _spreads(
    by_lr: Mapping[str, tuple[float, int]],
) -> tuple[dict[str, tuple[float, int, bool]], tuple[float, int, bool] | None]:
    """Per lr (sum of squares, df) -> per lr (spread, df, pooled?) and the pooled spread. An lr
    whose spread is significantly larger than the other lrs' (one-sided F test at
    OUTLIER_LEVEL: a break, a seed that half-diverged) keeps its own spread and df; pooled with
    the others it would widen every lr's allowance to its own."""
    from scipy.stats import f as f_dist

    outliers = set()
    for lr, (squares, df) in by_lr.items():
        rest = [value for other, value in by_lr.items() if other != lr]
        rest_squares, rest_df = sum(v[0] for v in rest), sum(v[1] for v in rest)
        if not rest_df or not squares:
            continue
        if not rest_squares:
            outliers.add(lr)
            continue
        ratio = (squares / df) / (rest_squares / rest_df)
        if ratio > float(f_dist.ppf(OUTLIER_LEVEL, df, rest_df)):
            outliers.add(lr)
    kept = [value for lr, value in by_lr.items() if lr not in outliers]
    pooled_squares, pooled_df = sum(v[0] for v in kept), sum(v[1] for v in kept)
    pooled = (math.sqrt(pooled_squares / pooled_df), pooled_df, True) if pooled_df else None
    own = {
        lr: (math.sqrt(squares / df), df, False)
        for lr, (squares, df) in by_lr.items()
        if lr in outliers or pooled is None
    }
    return own, pooled


def load_file(path: Path) -> dict[str, Any] | None:
    """A validated baseline file (older versions read as version 3, summaries recomputed),
    None if absent; PtibenchError (one line naming it) if bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise PtibenchError(f"baseline file {path}: cannot read: {error.strerror}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise PtibenchError(
            f"baseline file {path}: corrupt JSON at line {error.lineno}: {error.msg}"
        ) from None
    except ValueError as error:
        raise PtibenchError(f"baseline file {path}: {error}") from None
    problem = _check_schema(data)
    if problem:
        raise PtibenchError(f"baseline file {path}: wrong schema: {problem}")
    return _upgrade(data)


@dataclass
class Lookup:
    """The stored entry for a spec (its own seed's, else another seed's at the same lr and
    settings, for its recording context), the seeds' summary there, or why there is none."""

    path: Path
    entry: dict[str, Any] | None
    reason: str = ""
    summary: dict[str, Any] | None = None

    @property
    def found(self) -> bool:
        return self.entry is not None


def lookup(root: Path, spec: CaseSpec) -> Lookup:
    path = baseline_path(root, spec)
    data = load_file(path)
    if data is None:
        return Lookup(path, None, f"no baseline file {path}")
    settings = settings_key(spec)
    by_seed = data["entries"].get(lr_key(spec.lr), {})
    summary = data["summaries"].get(lr_key(spec.lr), {}).get(settings)
    if summary is not None and _spread_checked(summary):
        own = by_seed.get(str(spec.seed), {}).get(settings)
        first = by_seed[str(summary["seeds"][0])][settings]
        return Lookup(path, own or first, summary=summary)
    variants = by_seed.get(str(spec.seed), {})
    if not variants:
        return Lookup(path, None, f"no entry for lr={lr_key(spec.lr)} seed={spec.seed} in {path}")
    entry = variants.get(settings)
    if entry is not None:
        return Lookup(path, entry)
    stored = next(iter(variants.values()))["spec"]
    wanted = spec.to_dict()
    changed = [
        k
        for k in sorted(set(stored) | set(wanted))
        if k not in SETTINGS_WITHOUT_EFFECT and stored.get(k) != wanted.get(k)
    ]
    shown = ", ".join(f"{k}={stored.get(k)!r} (now {wanted.get(k)!r})" for k in changed)
    others = f" (and {len(variants) - 1} more)" if len(variants) > 1 else ""
    return Lookup(
        path, None, f"the entry in {path} was recorded with other settings: {shown}{others}"
    )


def _spread_checked(summary: Mapping[str, Any]) -> bool:
    """Whether a summary's allowances come from a measured seed spread."""
    return any(m.get("allowed") is not None for m in summary["metrics"].values()) or (
        len(summary["seeds"]) > 1
    )


@dataclass
class Row:
    metric: str
    baseline: float | None
    obtained: float | None
    allowed: float | None
    direction: str
    verdict: str  # "ok", "FAIL", "better", "missing", "new"
    basis: str = ""  # "" = one recorded seed; "3 seeds" = the seed spread; "log" scale marked

    @property
    def diff(self) -> float | None:
        if self.baseline is None or self.obtained is None:
            return None
        return self.obtained - self.baseline


@dataclass
class Comparison:
    passed: bool
    rows: list[Row] = field(default_factory=list)
    status_note: str = ""

    @property
    def improved(self) -> list[str]:
        return [row.metric for row in self.rows if row.verdict == "better"]

    @property
    def failed(self) -> list[str]:
        return [row.metric for row in self.rows if row.verdict in ("FAIL", "missing")]


CONFIRM_SEED_OFFSET = 1000
"""A confirmation trains the case again with its seed + this: a seed no recording uses."""


def confirmation_seed(seed: int) -> int:
    return seed + CONFIRM_SEED_OFFSET


def confirmed(first: Comparison, fresh: Comparison) -> bool:
    """Whether a fresh seed's check confirms a failure against the seed spread: it fails too,
    on at least one of the same metrics (on anything, where the first failed on its status)."""
    if fresh.passed:
        return False
    return not first.failed or bool(set(first.failed) & set(fresh.failed))


def _verdict(worse: float, allowed: float, direction: str) -> str:
    """'FAIL' beyond the allowance on the bad side ('both': either side), 'better' beyond it on
    the good side, else 'ok'; `worse` is the change, signed so that positive is worse."""
    if direction == "both":
        return "FAIL" if abs(worse) > allowed else "ok"
    if worse > allowed:
        return "FAIL"
    return "better" if -worse > allowed else "ok"


def _worse(diff: float, direction: str) -> float:
    return -diff if direction == "higher" else diff


def _judge(metric: Mapping[str, Any], obtained: float | None) -> str:
    if obtained is None or not math.isfinite(obtained):
        return "FAIL"
    baseline = float(metric["value"])
    allowed = Tolerance(metric["abs"], metric["rel"], metric["direction"]).allowed(baseline)
    return _verdict(_worse(obtained - baseline, metric["direction"]), allowed, metric["direction"])


def _spread_row(name: str, spread: Mapping[str, Any], obtained: float | None, n: int) -> Row:
    """A metric checked against the seeds' summary: on its scale, against the allowance."""
    direction = spread["direction"]
    log = spread["scale"] == "log"
    basis = f"{n} seeds" + (", log" if log else "")
    if obtained is None:
        return Row(name, spread["mean"], None, spread["allowed"], direction, "missing", basis)
    if not math.isfinite(obtained) or (log and obtained <= 0):
        return Row(name, spread["mean"], obtained, spread["allowed"], direction, "FAIL", basis)
    diff = _on_scale(name, obtained) - spread["center"]
    verdict = _verdict(_worse(diff, direction), spread["allowed"], direction)
    return Row(name, spread["mean"], obtained, spread["allowed"], direction, verdict, basis)


def _status_against_seeds(summary: Mapping[str, Any], result: CaseResult) -> str:
    """'' when the result's status is one the recorded seeds had, else what changed."""
    statuses = summary["statuses"]
    if statuses.get(result.status, 0):
        return ""
    was = ", ".join(f"{status} in {count}" for status, count in sorted(statuses.items()))
    now = result.status if result.diverged_at is None else f"diverged at step {result.diverged_at}"
    return f"status changed: baseline {was} of {len(summary['seeds'])} seeds, now {now}"


def compare(
    entry: Mapping[str, Any], result: CaseResult, summary: Mapping[str, Any] | None = None
) -> Comparison:
    """Compare a case with its stored baseline: with a seeds' `summary`, each metric against
    the seed spread (metrics without a measured spread against the entry's fixed tolerance);
    without one, against the entry. A diverged case compares as status only."""
    if summary is not None:
        problem = _status_against_seeds(summary, result)
        if problem:
            return Comparison(False, status_note=problem)
        if result.status == "diverged":
            return Comparison(True, status_note="diverged, as a recorded seed did")
        if not summary["metrics"]:
            return Comparison(True, status_note="no sound seed recorded at this lr")
        n = len(summary["seeds"])
        rows = []
        for name, spread in summary["metrics"].items():
            obtained = result.metrics.get(name)
            obtained = None if obtained is None else float(obtained)
            if spread.get("allowed") is not None:
                rows.append(_spread_row(name, spread, obtained, n))
            elif name in entry.get("metrics", {}):
                rows.append(_entry_row(name, entry["metrics"][name], obtained))
        rows += _new_rows(summary["metrics"], result)
        return Comparison(not any(row.verdict in ("FAIL", "missing") for row in rows), rows)
    if entry["status"] == "diverged" or result.status == "diverged":
        if entry["status"] == result.status:
            return Comparison(True, status_note="diverged, as in the baseline")
        was = "diverged" if entry["status"] == "diverged" else "ok"
        now = (
            result.status
            if result.diverged_at is None
            else f"diverged at step {result.diverged_at}"
        )
        return Comparison(False, status_note=f"status changed: baseline {was}, now {now}")
    rows = []
    for name, metric in entry["metrics"].items():
        obtained = result.metrics.get(name)
        rows.append(_entry_row(name, metric, None if obtained is None else float(obtained)))
    rows += _new_rows(entry["metrics"], result)
    passed = not any(row.verdict in ("FAIL", "missing") for row in rows)
    return Comparison(passed, rows)


def _entry_row(name: str, metric: Mapping[str, Any], obtained: float | None) -> Row:
    verdict = "missing" if obtained is None else _judge(metric, obtained)
    allowed = Tolerance(metric["abs"], metric["rel"], metric["direction"]).allowed(
        float(metric["value"])
    )
    return Row(name, float(metric["value"]), obtained, allowed, metric["direction"], verdict)


def _new_rows(known: Mapping[str, Any], result: CaseResult) -> list[Row]:
    return [
        Row(name, None, float(value), None, "", "new")
        for name, value in result.metrics.items()
        if name not in known
    ]


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def format_rows(rows: list[Row]) -> str:
    """The `metric | baseline | obtained | diff | allowed` table of a comparison; `allowed`
    says what it was derived from (one seed's fixed tolerance, or n seeds' spread; on a log
    scale it is a factor)."""
    header = ["metric", "baseline", "obtained", "diff", "allowed", ""]
    body = []
    for row in rows:
        if row.allowed is None:
            allowed = "-"
        elif row.basis.endswith("log"):
            allowed = f"x{math.exp(row.allowed):.3g} ({row.direction}, {row.basis[:-5]})"
        else:
            where = f", {row.basis}" if row.basis else ""
            allowed = f"{_fmt(row.allowed)} ({row.direction}{where})"
        body.append(
            [
                row.metric,
                _fmt(row.baseline),
                _fmt(row.obtained),
                _fmt(row.diff, signed=True),
                allowed,
                "" if row.verdict == "ok" else row.verdict,
            ]
        )
    return render_text(header, body, separator=" | ", align="left")


EXPLAINING_FIELDS = (
    "world_version",
    "method_version",
    "device",
    "cpu",
    "dtype",
    "threads",
    "compiled",
    "deterministic",
    "sample_dtype",
)
RECORDED_DEFAULTS = {"compiled": False, "deterministic": False}
"""Fields that baselines recorded before the field existed had this value (`sample_dtype`:
the world's dtype, see `_as_recorded`)."""


def _as_recorded(context: Mapping[str, Any]) -> dict[str, Any]:
    """A recording context with the fields it predates filled in as they were then."""
    filled = {**RECORDED_DEFAULTS, **context}
    filled.setdefault("sample_dtype", filled.get("dtype"))
    return filled


def _said_by_dtype(name: str, recorded: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether a difference in `name` only repeats the dtype's: both sides sample in their
    world's own dtype."""
    return name == "sample_dtype" and all(
        side.get("sample_dtype") == side.get("dtype") for side in (recorded, now)
    )


def what_changed(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """What differs between the baseline's recording context and this run's (versions, device,
    CPU model, world and method versions, compiled training, deterministic CUDA kernels, the
    sampler's precision), as one line; '' when nothing differs."""
    recorded, now = _as_recorded(recorded), _as_recorded(now)
    changes = [
        f"{name} {recorded[name]} -> {now.get(name)}"
        for name in EXPLAINING_FIELDS
        if recorded.get(name) is not None
        and recorded.get(name) != now.get(name)
        and not _said_by_dtype(name, recorded, now)
    ]
    old_versions, new_versions = recorded.get("versions") or {}, now.get("versions") or {}
    changes += [
        f"{name} {old_versions[name]} -> {new_versions.get(name)}"
        for name in sorted(old_versions)
        if old_versions[name] != new_versions.get(name)
    ]
    return "; ".join(changes)


def make_entry(
    result: CaseResult, recorded: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A baseline entry for `result`; tolerances hand-set in `previous` are kept."""
    kept = (previous or {}).get("metrics", {})
    metrics = {}
    for name, value in result.metrics.items():
        if value is None or not math.isfinite(float(value)):
            continue
        tol = default_tolerance(name, result.spec.eval.samples_per_prompt)
        old = kept.get(name, {})
        metrics[name] = {
            "value": float(value),
            "direction": old.get("direction", tol.direction),
            "abs": old.get("abs", tol.abs),
            "rel": old.get("rel", tol.rel),
        }
    return {
        "spec": result.spec.to_dict(),
        "status": result.status,
        "diverged_at": result.diverged_at,
        "metrics": metrics,
        "recorded": {
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "seed": result.spec.seed,
            **dict(recorded),
        },
    }


GUARDED_FIELDS = (
    "world_version",
    "method_version",
    "device",
    "dtype",
    "compiled",
    "sample_dtype",
)
"""What an entry was recorded under besides its spec: replacing an entry recorded under other
values of these takes `force` (the numbers would come from another world, method, device, kind
of training or sampler precision)."""


class BaselineConflict(PtibenchError):
    """--update-baselines would replace an entry recorded under other settings."""


def _guarded(recorded: Mapping[str, Any], name: str) -> Any:
    value = _as_recorded(recorded).get(name)
    return value.split(":")[0] if name == "device" and isinstance(value, str) else value


def recorded_differently(stored: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """Which GUARDED_FIELDS differ between an entry's recording and `now` ('' when none; a
    field either side did not record counts as the same)."""
    changes = [
        f"{name} {_guarded(stored, name)} -> {_guarded(now, name)}"
        for name in GUARDED_FIELDS
        if _guarded(stored, name) is not None
        and _guarded(now, name) is not None
        and _guarded(stored, name) != _guarded(now, name)
        and not _said_by_dtype(name, _as_recorded(stored), _as_recorded(now))
    ]
    return "; ".join(changes)


def update(
    root: Path, result: CaseResult, recorded: Mapping[str, Any], *, force: bool = False
) -> Path:
    """Merge `result`'s entry into its file under a lock. Entries of other lrs, seeds and
    settings are left untouched; the entry of the same settings is replaced, unless it was
    recorded under other GUARDED_FIELDS and `force` is not set (BaselineConflict)."""
    spec = result.spec
    path = baseline_path(root, spec)
    with baseline_lock(path):
        data = load_file(path) or {
            "format": FORMAT,
            "version": VERSION,
            "world": spec.world,
            "concept": spec.concept,
            "method": spec.method,
            "stage": spec.stage,
            "entries": {},
            "summaries": {},
        }
        variants = data["entries"].setdefault(lr_key(spec.lr), {}).setdefault(str(spec.seed), {})
        key = settings_key(spec)
        previous = variants.get(key)
        if previous is not None and not force:
            changed = recorded_differently(previous.get("recorded", {}), recorded)
            if changed:
                raise BaselineConflict(
                    f"the entry for lr={lr_key(spec.lr)} seed={spec.seed} in {path} was "
                    f"recorded under other settings ({changed}); pass --force to replace it"
                )
        variants[key] = make_entry(result, recorded, previous)
        data["summaries"] = summarise(data["entries"])
        io.atomic_write_json(path, data)
    return path


def stored_entry(root: Path, spec: CaseSpec) -> dict[str, Any] | None:
    """The stored entry for `spec` (its lr, seed and settings), or None; an unreadable file
    counts as none (for side-by-side tables, which must not fail a run)."""
    try:
        data = load_file(baseline_path(root, spec))
    except PtibenchError:
        return None
    if data is None:
        return None
    variants = data["entries"].get(lr_key(spec.lr), {}).get(str(spec.seed), {})
    return variants.get(settings_key(spec))


@dataclass(frozen=True)
class Unused:
    """A stored entry no case of a session used; `differs` names its settings that differ
    from those the session ran ('' when they are the same)."""

    path: Path
    lr: str
    seed: str
    settings: str
    differs: str = ""


def unused_entries(
    root: Path, specs: list[CaseSpec], full_grids: Mapping[str, tuple[float, ...]]
) -> list[Unused]:
    """The entries of the baseline files `specs` touched that none of them used, like an
    unused-snapshot report after a whole test suite: where the session ran a stage's whole grid
    (`full_grids`: stage -> its lrs), entries of its settings at lrs outside it, and, if it ran
    the default settings, entries recorded under other settings (old smoke runs, say). Only
    seeds the session ran count; a smaller selection or a smoke run reports nothing, since
    what it left out is not thereby unused."""
    used: dict[Path, set[tuple[str, str, str]]] = {}
    seeds: dict[Path, set[str]] = {}
    lrs: dict[Path, set[float]] = {}
    first: dict[Path, CaseSpec] = {}
    for spec in specs:
        path = baseline_path(root, spec)
        first.setdefault(path, spec)
        used.setdefault(path, set()).add((lr_key(spec.lr), str(spec.seed), settings_key(spec)))
        seeds.setdefault(path, set()).add(str(spec.seed))
        lrs.setdefault(path, set()).add(spec.lr)
    found = []
    for path in sorted(used):
        spec = first[path]
        grid = full_grids.get(spec.stage)
        if not grid or not set(grid) <= lrs[path]:
            continue
        mine = settings_key(spec)
        default = mine == settings_key(CaseSpec(stage=spec.stage, lr=spec.lr))
        try:
            data = load_file(path)
        except PtibenchError:
            continue
        for lr, by_seed in (data or {}).get("entries", {}).items():
            for seed, variants in by_seed.items():
                for settings in variants:
                    if seed not in seeds[path] or (lr, seed, settings) in used[path]:
                        continue
                    if settings == mine or default:
                        found.append(
                            Unused(path, lr, seed, settings, settings_difference(settings, mine))
                        )
    return found
