"""Shared test set-up: hypothesis profiles and the kernels under test."""

import os
import pathlib
import random
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# CI: derandomized (the same examples every run) and no deadline (the machine is shared).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# hypothesis writes up a failing example with hypothesis.extra._patching, whose import warns (a
# deprecated mypy_extensions API). Imported once here, that warning cannot turn a failure in a
# test that makes warnings errors (tests/test_extremes.py) into a pytest INTERNALERROR.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # an older or newer hypothesis without it reports without it too
        pass


@pytest.fixture(autouse=True)
def _global_generators_seeded():
    """Every test starts from one state of the global random generators (Python's, NumPy's legacy one,
    torch's where a test imported it: a module's initial weights), whatever ran before it in its
    process: pytest-xdist hands the tests to its processes in an order that changes from run to run."""
    random.seed(0)
    np.random.seed(0)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)
