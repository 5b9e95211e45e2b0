"""Deprecated alias of ptibench.training.methods (Method, register_method, get_method), kept
for existing conftests and entry points."""

import warnings

from ptibench.training.methods import (
    PTI,
    Method,
    PTINormReg,
    available_methods,
    get_method,
    register_method,
)

warnings.warn(
    "ptibench.methods is deprecated: import from ptibench.training.methods",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["PTI", "Method", "PTINormReg", "available_methods", "get_method", "register_method"]
