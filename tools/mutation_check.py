"""Mutation check: inject known faults into a copy of src/ and show that the fast suite fails.

Each Fault is a textual patch of one file under src/ptibench (an exact `old` snippet that must
occur exactly once, replaced by `new`) and the tests that must catch it. For each fault the
script copies src/ to a temporary folder, applies the patch there, and runs

    python -m pytest <tests> -x -q -p no:cacheprovider

from the repository root with PYTHONPATH=<tmp>/src, after checking in a subprocess that
`import ptibench` resolves to the copy. A fault is caught when pytest exits 1 (tests failed);
exit 0 means it survived, any other exit (collection error, usage error) is an error. The
working tree is never modified.

    .venv/bin/python tools/mutation_check.py            # every fault
    .venv/bin/python tools/mutation_check.py --list     # the faults and their tests
    .venv/bin/python tools/mutation_check.py --only stage1-lr-halved --only v-target-sign

Exit status: 0 when every fault run is caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ptibench"


@dataclass(frozen=True)
class Fault:
    """One injected fault: in `file` (relative to src/ptibench), `old` becomes `new`; `tests`
    (files or node ids, relative to the repository root) must fail."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str = ""


GUARD_BASELINES = "tests/test_guard_baselines.py"
GUARD_CACHE = "tests/test_guard_cache.py"
GUARD_EVAL = "tests/test_guard_evaluation.py"
GUARD_TRAINING = "tests/test_guard_training.py"

KEY_LINE = "        blob = json.dumps(self.to_dict(), sort_keys=True, default=repr)"
JUDGE_LINE = '    return -diff if direction == "higher" else diff'

FAULTS: tuple[Fault, ...] = (
    Fault(
        "knee-rule-off-by-one",
        "results/knee.py",
        "return Knee(first - 1, steps, tested, level, points)",
        "return Knee(first, steps, tested, level, points)",
        ("tests/test_knee.py",),
        "the knee flagged one lr late",
    ),
    Fault(
        "knee-intervals-not-simultaneous",
        "results/knee.py",
        "    return 1 - alpha / max(steps, 1)",
        "    return 1 - alpha",
        ("tests/test_knee.py::test_shuffled_lr_labels_rarely_show_a_knee",),
        "each step tested at 95% alone: noise flags a knee in more than 5% of shuffled grids",
    ),
    Fault(
        "tolerance-direction-flipped",
        "results/baselines.py",
        JUDGE_LINE,
        '    return diff if direction == "higher" else -diff',
        (GUARD_BASELINES,),
        "every one-sided metric judged the wrong way round",
    ),
    Fault(
        "higher-judged-as-lower",
        "results/baselines.py",
        JUDGE_LINE,
        "    return diff",
        (GUARD_BASELINES,),
        "a drop in clip_i / clip_t / appearance / edit_success reads as better",
    ),
    Fault(
        "both-made-one-sided",
        "results/baselines.py",
        '        return "FAIL" if abs(worse) > allowed else "ok"',
        '        return "FAIL" if worse > allowed else "ok"',
        (GUARD_BASELINES,),
        "a two-sided metric (distance) may fall without failing",
    ),
    Fault(
        "lora-dropped-at-evaluation",
        "run/runner.py",
        "evaluation = self.evaluate(outcome.vector, outcome.unet,",
        "evaluation = self.evaluate(outcome.vector, None,",
        (GUARD_EVAL,),
        "the runner evaluates the base UNet instead of the trained adapter",
    ),
    Fault(
        "lora-ignored-by-evaluate",
        "evaluation/evaluate.py",
        "    unet = unet if unet is not None else bundle.unet",
        "    unet = bundle.unet",
        (GUARD_EVAL,),
        "evaluate() always uses the base UNet",
    ),
    Fault(
        "lora-scale-zero-at-inference",
        "evaluation/sampling.py",
        "                guidance_scale=config.guidance_scale,\n",
        "                guidance_scale=config.guidance_scale,\n"
        '                cross_attention_kwargs={"scale": 0.0},\n',
        (GUARD_EVAL,),
        "samples drawn with the adapter switched off (denoise_loss still sees it)",
    ),
    Fault(
        "placeholder-not-spliced",
        "evaluation/evaluate.py",
        "    embeds = bundle.encode(prompts, concept.placeholder, vector)",
        "    embeds = bundle.encode(\n"
        "        prompts, concept.placeholder, bundle.word_embedding(concept.initializer)\n"
        "    )",
        (GUARD_EVAL,),
        "evaluation conditions on the initializer embedding, not the learned vector",
    ),
    Fault(
        "runner-evaluates-the-initial-vector",
        "run/runner.py",
        "evaluation = self.evaluate(outcome.vector, outcome.unet,",
        "evaluation = self.evaluate(outcome.initial, outcome.unet,",
        (GUARD_EVAL,),
        "the runner hands evaluation the stage's starting vector",
    ),
    Fault(
        "edit-prompts-without-placeholder",
        "evaluation/evaluate.py",
        "    prompts = [concept.with_placeholder(t) for t in templates]",
        "    prompts = [concept.with_placeholder(templates[0])] + [\n"
        "        concept.with_class_noun(t) for t in templates[1:]\n"
        "    ]",
        (GUARD_EVAL,),
        "editability measured on prompts that do not contain the learned token",
    ),
    Fault(
        "cache-key-ignores-lr",
        "spec.py",
        KEY_LINE,
        '        blob = json.dumps({**self.to_dict(), "lr": None}, sort_keys=True, default=repr)',
        (GUARD_CACHE, "tests/test_core_cache.py"),
    ),
    Fault(
        "cache-key-ignores-seed",
        "spec.py",
        KEY_LINE,
        '        blob = json.dumps({**self.to_dict(), "seed": None}, sort_keys=True, default=repr)',
        (GUARD_CACHE,),
    ),
    Fault(
        "cache-key-ignores-eval",
        "spec.py",
        KEY_LINE,
        '        blob = json.dumps({**self.to_dict(), "eval": None}, sort_keys=True, default=repr)',
        (GUARD_CACHE,),
        "samples_per_prompt / sample_steps / guidance / eval seed share a cache entry",
    ),
    Fault(
        "cache-trusts-stored-spec",
        "run/cache.py",
        "        if entry.spec is not None and result.spec != entry.spec:\n"
        "            return None\n",
        "",
        (GUARD_CACHE,),
        "an entry holding another spec's result is handed back",
    ),
    Fault(
        "stage1-lr-halved",
        "training/inversion.py",
        '    optimizer = method.optimizer("inversion", [vector], spec.lr)',
        '    optimizer = method.optimizer("inversion", [vector], spec.lr / 2)',
        (GUARD_TRAINING,),
    ),
    Fault(
        "stage1-lr-x0.8",
        "training/inversion.py",
        '    optimizer = method.optimizer("inversion", [vector], spec.lr)',
        '    optimizer = method.optimizer("inversion", [vector], spec.lr * 0.8)',
        (GUARD_TRAINING,),
    ),
    Fault(
        "stage1-batched-lr-halved",
        "training/batched.py",
        '            method.optimizer("inversion", [v], s.lr)',
        '            method.optimizer("inversion", [v], s.lr / 2)',
        (GUARD_TRAINING,),
        "the batched lr grid (the default path of run_cases and the plugin)",
    ),
    Fault(
        "stage2-lr-halved",
        "training/finetune.py",
        "    optimizer = method.optimizer(stage, params, spec.lr)",
        "    optimizer = method.optimizer(stage, params, spec.lr / 2)",
        (GUARD_TRAINING,),
    ),
    Fault(
        "stage2-stacked-lr-halved",
        "training/stacked_lora.py",
        "            method.optimizer(STAGE, params, s.lr)",
        "            method.optimizer(STAGE, params, s.lr / 2)",
        ("tests/test_stacked_lora.py", "tests/test_group_runs.py"),
        "the stacked LoRA grid (the default stage-2 path of run_cases and the plugin)",
    ),
    Fault(
        "group-sampling-adapter-misrouted",
        "training/stacked_lora.py",
        "        rows = rows.repeat(x.shape[0] // len(rows))",
        "        rows = rows.flip(0).repeat(x.shape[0] // len(rows))",
        ("tests/test_group_sampling.py",),
        "evaluation sampled across cases gives a sample another case's adapter",
    ),
    Fault(
        "pivot-replaced-by-initial",
        "training/finetune.py",
        "    pivot = ctx.pivot.to(bundle.device)",
        "    pivot = bundle.word_embedding(ctx.concept.initializer).to(bundle.device)",
        (GUARD_TRAINING, GUARD_EVAL),
        "stage 2 trains and evaluates around the initializer, not the stage-1 pivot",
    ),
    Fault(
        "v-target-sign-flipped",
        "models/diffusion.py",
        "        target = signal * noise - sigma * latents",
        "        target = sigma * latents - signal * noise",
        (GUARD_TRAINING,),
    ),
    Fault(
        "normreg-pull-becomes-push",
        "training/methods.py",
        "        return self.weight * (vector - initial).pow(2).sum()",
        "        return -self.weight * (vector - initial).pow(2).sum()",
        (GUARD_TRAINING,),
    ),
    Fault(
        "leakage-without-base",
        "evaluation/leakage.py",
        "    return copies.share - base.share",
        "    return copies.share",
        ("tests/test_leakage.py::test_copying_every_context_free_sample_leaks_one_less_the_base",),
        "leakage reads the copy share alone: a concept whose room the base model draws anyway "
        "looks leaky",
    ),
    Fault(
        "ray-resubmits-cached-cases",
        "run/ray_executor.py",
        "        if cached is not None:\n            plan.cached[spec] = cached\n",
        "        if False:\n            plan.cached[spec] = cached\n",
        ("tests/test_ray_executor.py::test_the_plan_submits_only_what_the_cache_lacks",),
        "a distributed run recomputes what the cache holds (needs no Ray to be caught)",
    ),
)


def fault_by_name(name: str) -> Fault:
    for fault in FAULTS:
        if fault.name == name:
            return fault
    raise SystemExit(f"mutation_check: no fault named {name!r} (see --list)")


def patched(fault: Fault, source: str) -> str:
    """`source` with the fault applied; refuses unless `old` occurs exactly once."""
    count = source.count(fault.old)
    if count != 1:
        raise SystemExit(
            f"mutation_check: fault {fault.name!r}: the old snippet occurs {count} times in "
            f"src/ptibench/{fault.file} (must be exactly once):\n{fault.old}"
        )
    return source.replace(fault.old, fault.new)


def _env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def imported_from(src: Path) -> Path:
    """Where `import ptibench` resolves with PYTHONPATH=src, asked of a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", "import ptibench; print(ptibench.__file__)"],
        cwd=ROOT,
        env=_env(src),
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1]).resolve()


def first_failure(output: str) -> str:
    match = re.search(r"^FAILED (\S+)", output, re.MULTILINE)
    if match:
        return match.group(1)
    match = re.search(r"^ERROR (\S+)", output, re.MULTILINE)
    return f"error in {match.group(1)}" if match else ""


@dataclass
class Outcome:
    fault: Fault
    status: str  # "caught", "SURVIVED", "ERROR"
    detail: str
    seconds: float


_shown: list[Path] = []


def run_tests(tests: tuple[str, ...], fault: Fault | None) -> subprocess.CompletedProcess:
    """pytest on `tests` against a copy of src/ (patched with `fault` unless None)."""
    label = fault.name if fault else "clean"
    with tempfile.TemporaryDirectory(prefix=f"ptibench-mutant-{label}-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if fault is not None:
            target = src / "ptibench" / fault.file
            target.write_text(patched(fault, target.read_text()))
        where = imported_from(src)
        if not where.is_relative_to(src.resolve()):
            raise SystemExit(
                f"mutation_check: with PYTHONPATH={src}, ptibench is imported from {where}, "
                "not from the patched copy: the check would test the unpatched code"
            )
        if not _shown:
            print(f"checked: a subprocess with PYTHONPATH={src} imports {where}", flush=True)
            _shown.append(where)
        command = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider"]
        command += ["-rfE", "-W", "ignore"]
        return subprocess.run(command, cwd=ROOT, env=_env(src), capture_output=True, text=True)


def clean_run(faults: list[Fault]) -> str | None:
    """None when every named test passes on the unpatched copy, else pytest's output tail."""
    tests = tuple(dict.fromkeys(t for f in faults for t in f.tests))
    started = time.perf_counter()
    run = run_tests(tests, None)
    print(
        f"clean run of {len(tests)} test file(s): exit {run.returncode} "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    if run.returncode == 0:
        return None
    return "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])


def run_fault(fault: Fault, verbose: bool = False) -> Outcome:
    started = time.perf_counter()
    run = run_tests(fault.tests, fault)
    output = run.stdout + run.stderr
    if verbose:
        print(output)
    seconds = time.perf_counter() - started
    if run.returncode == 1:
        return Outcome(fault, "caught", first_failure(output) or "tests failed", seconds)
    if run.returncode == 0:
        return Outcome(fault, "SURVIVED", "all tests passed", seconds)
    tail = " / ".join(output.strip().splitlines()[-3:])
    return Outcome(fault, "ERROR", f"pytest exit {run.returncode}: {tail}", seconds)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run this fault (repeat)")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--verbose", action="store_true", help="print each pytest output")
    parser.add_argument(
        "--skip-clean-run",
        action="store_true",
        help="do not first run the named tests on the unpatched copy (they must pass there)",
    )
    args = parser.parse_args(argv)
    faults = [fault_by_name(n) for n in args.only] if args.only else list(FAULTS)
    if args.list:
        rows = [["fault", "file", "must be caught by", "what it breaks"]]
        rows += [[f.name, f.file, " ".join(f.tests), f.why] for f in faults]
        print(table(rows))
        return 0
    for fault in faults:  # refuse a stale list before spending minutes on it
        patched(fault, (PACKAGE / fault.file).read_text())
    if not args.skip_clean_run:
        clean = clean_run(faults)
        if clean is not None:
            print(f"mutation_check: the tests fail without any fault, nothing to check:\n{clean}")
            return 1
    outcomes = []
    for fault in faults:
        outcome = run_fault(fault, args.verbose)
        outcomes.append(outcome)
        print(
            f"{outcome.status:8} {fault.name} ({outcome.seconds:.0f} s) {outcome.detail}",
            flush=True,
        )
    rows = [["fault", "caught by", "result"]]
    rows += [[o.fault.name, " ".join(o.fault.tests), f"{o.status}: {o.detail}"] for o in outcomes]
    print()
    print(table(rows))
    survived = [o for o in outcomes if o.status != "caught"]
    total = sum(o.seconds for o in outcomes)
    print(f"\n{len(outcomes) - len(survived)} of {len(outcomes)} faults caught ({total:.0f} s)")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
