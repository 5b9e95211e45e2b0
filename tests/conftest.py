"""Fixtures shared by the test files."""

import pytest

from ptibench.models.random_weights import write_random_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A world of the tiny world's shape with random weights (wiring, not quality), written once
    per test session; test files that need another world define their own `world`."""
    return write_random_world(tmp_path_factory.getbasetemp() / "core-random-world")
