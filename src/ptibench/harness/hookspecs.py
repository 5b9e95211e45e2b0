"""The ptibench plugin's own hook: how a benchmark case gets its result.

A conftest may implement it to supply results (tests of the plugin do, with synthetic curves); the
plugin's default implementation runs the case with `ptibench.run.runner.run_case`.
"""

import pytest


@pytest.hookspec(firstresult=True)
def pytest_ptibench_run_case(spec, config):
    """Run `spec` (a CaseSpec) and return its CaseResult; the first non-None result wins."""
