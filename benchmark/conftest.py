"""Load the ptibench plugin when ptibench is importable but not pip-installed (no pytest11 entry
point), so `PYTHONPATH=src pytest benchmark/ --lr-grid` works from a plain checkout too.

`pytest_plugins` is defined only then: pytest refuses it in a conftest found during collection
(e.g. `pytest .`), and once installed the entry point loads the plugin anyway.
"""

from importlib import metadata

if not any(ep.name == "ptibench" for ep in metadata.entry_points(group="pytest11")):
    pytest_plugins = ["ptibench.harness.plugin"]


def pytest_ignore_collect(collection_path, config):
    """The perf suite runs on its own (`pytest benchmark/perf`), not inside an lr-grid session."""
    if collection_path.name == "perf" and config.getoption("lr_grid", None) is not None:
        return True
    return None
