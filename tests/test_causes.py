"""The guesses at a failure's cause, read directly (tests/test_gradcheck.py reads them through
check_kernel's reports)."""

import numpy as np

from lstm_derive import causes


def test_runs_and_steps_text_group_consecutive_indices():
    assert causes.runs([0, 1, 2, 4, 6, 7]) == [(0, 2), (4, 4), (6, 7)]
    assert causes.steps_text([0, 1, 2, 4]) == "0-2, 4" and causes.steps_text([]) == ""


def test_by_blocks_names_the_rows_of_each_kind_of_block():
    """Four gates of H = 2 rows: the second transposed (2 x 2), the fourth 0, the others right."""
    rng = np.random.default_rng(0)
    n = rng.standard_normal((8, 2))
    a = n.copy()
    a[2:4] = n[2:4].T
    a[6:8] = 0
    said = causes.by_blocks(a, n, 1e-9, 2)
    assert said == ("by blocks of 2 rows, a gate's each where gates are stacked: right in rows 0-1, 4-5; in rows 2-3, "
                    "the numeric gradient transposed: an outer product the wrong way round?; in rows 6-7, "
                    "0 everywhere: never computed, or never accumulated?")
    assert causes.by_blocks(n + 1, n, 1e-9, 2) == ""  # wrong in every block alike: nothing to add
