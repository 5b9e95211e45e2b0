"""The lr-grid benchmark of this checkout: the case test the package ships
(ptibench.benchmark.test_lr_grid), collected here so that `pytest benchmark/ --lr-grid` keeps its
node ids (`benchmark/test_lr_grid.py::test_lr_case[inversion-lr=5e-03]`)."""

from ptibench.benchmark.test_lr_grid import test_lr_case

__all__ = ["test_lr_case"]
