"""Shared test set-up: hypothesis profiles and the kernels under test."""

import os
import pathlib
import sys

from hypothesis import HealthCheck, settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# CI: derandomized (the same examples every run) and no deadline (the machine is shared).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
