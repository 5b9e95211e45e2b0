"""The mutation check's fault list cannot rot silently: every `old` snippet still occurs exactly
once in its file (else the fault would no longer be injected), and every test it names exists.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "mutation_check", ROOT / "tools" / "mutation_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mutation_check = _load()
FAULTS = mutation_check.FAULTS


def test_fault_names_are_unique_and_the_issue_rows_are_listed():
    names = [f.name for f in FAULTS]
    assert len(names) == len(set(names))
    required = {
        "knee-rule-off-by-one",
        "tolerance-direction-flipped",
        "higher-judged-as-lower",
        "both-made-one-sided",
        "lora-dropped-at-evaluation",
        "placeholder-not-spliced",
        "cache-key-ignores-lr",
        "cache-key-ignores-seed",
        "cache-key-ignores-eval",
        "stage1-lr-halved",
        "stage1-lr-x0.8",
        "stage2-lr-halved",
        "v-target-sign-flipped",
        "normreg-pull-becomes-push",
        "lora-scale-zero-at-inference",
        "pivot-replaced-by-initial",
        "edit-prompts-without-placeholder",
    }
    assert required <= set(names)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_old_snippet_occurs_exactly_once(fault):
    source = (ROOT / "src" / "ptibench" / fault.file).read_text()
    assert source.count(fault.old) == 1, f"{fault.name}: stale snippet in {fault.file}"
    assert fault.new != fault.old
    assert mutation_check.patched(fault, source) != source


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_named_tests_exist(fault):
    assert fault.tests, f"{fault.name} names no test"
    for test in fault.tests:
        path, _, node = test.partition("::")
        file = ROOT / path
        assert file.is_file() and file.name.startswith("test_"), test
        if node:
            function = node.split("::")[-1].split("[")[0]
            assert re.search(rf"^\s*def {re.escape(function)}\(", file.read_text(), re.M), test


def test_patched_refuses_a_snippet_that_is_not_unique():
    fault = FAULTS[0]
    with pytest.raises(SystemExit, match="occurs 2 times"):
        mutation_check.patched(fault, fault.old + "\n" + fault.old)
    with pytest.raises(SystemExit, match="occurs 0 times"):
        mutation_check.patched(fault, "")
