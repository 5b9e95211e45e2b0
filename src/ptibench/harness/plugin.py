"""The ptibench pytest plugin: `pytest benchmark/ --lr-grid` runs the lr grid of each stage, checks
every case against its stored baseline, and ends with the trade-off table, the knee and reports.

The hooks hand off to a PluginSession (ptibench.harness.session). Per-case data travels on
`report.user_properties`, so the controller of an xdist session sees every case; it merges them,
rewrites results.json as cases finish (a killed session keeps them), and renders the reports in
`pytest_sessionfinish`. The terminal summary only prints what was prepared there.
"""

from __future__ import annotations

import functools
import os
import sys

import pytest

import ptibench.studies.concept_order  # noqa: F401  (registers its report section)
from ptibench.case_options import apply_device
from ptibench.harness import hookspecs
from ptibench.harness.fixture import CaseRunner
from ptibench.harness.options import add_options
from ptibench.harness.progress import CaseProgress
from ptibench.harness.session import SESSION, SPEC_FIXTURE, PluginSession
from ptibench.harness.workers import place_worker, world_on_cpu
from ptibench.run.pretrain import pretrain
from ptibench.run.runner import run_case
from ptibench.training.compiling import COMPILE_ENV


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser):
    add_options(parser)


def pytest_configure(config):
    config.addinivalue_line("markers", "ptibench: a ptibench benchmark case (one stage and lr)")
    session = PluginSession.from_config(config)
    if session.is_worker:
        place_worker(os.environ, world_on_cpu(config.option.world, config.option.device))
    if config.option.compile:
        os.environ[COMPILE_ENV] = "1"
    for name, value in apply_device(config.option).items():
        config.add_cleanup(functools.partial(_restore, name, value))
    session.check_executor()
    config.stash[SESSION] = session
    if not session.is_worker:
        config.pluginmanager.register(CaseCollector(session), "ptibench-case-collector")
        config.pluginmanager.register(CaseProgress(session), "ptibench-progress")


def _restore(name: str, value: str | None) -> None:
    """Put an environment variable back as it was before the session (in-process runs)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    session.config.stash[SESSION].check_selection()


def pytest_generate_tests(metafunc):
    if SPEC_FIXTURE not in metafunc.fixturenames:
        return
    plugin = metafunc.config.stash[SESSION]
    if plugin.grid is None:
        metafunc.parametrize(SPEC_FIXTURE, [None], ids=["needs-lr-grid"])
        return
    specs = plugin.specs()
    metafunc.parametrize(SPEC_FIXTURE, specs, ids=[plugin.case_id(s) for s in specs])


def pytest_collection_modifyitems(config, items):
    config.stash[SESSION].order_items(items)


def pytest_collection_finish(session):
    plugin = session.config.stash.get(SESSION, None)
    if plugin is not None:
        plugin.remember_selection(session.items)


@pytest.hookimpl(trylast=True)
def pytest_ptibench_run_case(spec, config):
    """The default implementation: the grid's group runs first (stage 1 batched, stage-2 LoRA
    stacked; each under a file lock: a worker trains the groups nobody else has started, then
    waits for its case's own), then the case, evaluated from its group's slot."""
    plugin = config.stash[SESSION]
    if plugin.executor is not None and spec in plugin.grid_specs:
        return plugin.executor.result(spec)  # --executor ray: submitted at collection
    # a case off the grid (a confirmation's fresh seed) runs here, on the controller under Ray
    progress = False if plugin.is_worker else None
    if spec in plugin.grid_specs:
        show = progress is None and sys.stderr.isatty()
        pretrain(plugin.grid_specs, cache_dir=plugin.cache_dir, progress=show, need=spec)
    return run_case(spec, cache_dir=plugin.cache_dir, progress=progress)


@pytest.fixture
def ptibench(request) -> CaseRunner:
    return CaseRunner(request)


class CaseCollector:
    """Registered on the controller only: merges the cases' payloads as their reports arrive."""

    def __init__(self, session: PluginSession):
        self.session = session

    def pytest_runtest_logreport(self, report):
        self.session.merge(report)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    plugin = session.config.stash.get(SESSION, None)
    if plugin is not None and not plugin.is_worker:
        plugin.finish(session)


def pytest_unconfigure(config):
    plugin = config.stash.get(SESSION, None)
    if plugin is not None:
        plugin.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    plugin = config.stash.get(SESSION, None)
    if plugin is not None:
        plugin.write_summary(terminalreporter)
