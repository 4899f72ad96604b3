"""The problem a check judges: its loss, the loss's magnitude that sets the floors, and its dtypes."""

import numpy as np
import pytest

from lstm_derive import problem
from lstm_derive.kernels import lstm, rnn


def test_the_loss_magnitude_sums_the_magnitudes_of_its_terms():
    """|L| sets the floors: terms that cancel in L must not shrink it."""
    p = problem.random_problem(rnn, T=4)
    p.dys[1::2] *= -1
    ys, final, _ = rnn.forward(p.params, p.x, p.state)
    terms = [ys * p.dys] + [s * ds for s, ds in zip(final, p.dstate)]
    assert problem.loss_magnitude(rnn, p) == pytest.approx(sum(float(np.sum(np.abs(t))) for t in terms), rel=1e-12)
    assert problem.loss_magnitude(rnn, p) > 2 * abs(problem.loss(rnn, p))


def test_a_problem_in_float32_is_one_a_kernel_takes():
    p = problem.random_problem(lstm).with_dtype(np.float32)
    assert p.dys.dtype == np.float32 and all(d.dtype == np.float32 for d in p.dstate)
    grads = problem.analytic_gradients(lstm, p)
    assert grads["W_h"].dtype == np.float32
