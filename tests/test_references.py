"""The benchmark references are right where they should be and wrong where they should be.

The handwritten LSTM and the seed's algorithm are what the generated kernels are
timed and compared against, so their gradients are checked here on their own,
by central differences, independently of the engine.
"""
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import handwritten_lstm  # noqa: E402
import seed_lstm  # noqa: E402

T, B, D, H = 3, 2, 3, 4


def make_problem(kernel, scale, seed=1):
    """Parameters, inputs, initial states and upstream gradients, all random."""
    rng = np.random.default_rng(seed)
    params = kernel.init_params(D, H, seed=seed, scale=scale)
    x = rng.standard_normal((T, B, D))
    state = tuple(rng.standard_normal((B, H)) for _ in kernel.STATES)
    dys = rng.standard_normal((T, B, H))
    dstate = tuple(rng.standard_normal((B, H)) for _ in kernel.STATES)
    return params, x, state, dys, dstate


def scalar_loss(kernel, params, x, state, dys, dstate):
    """The scalar whose gradients backward returns: <ys, dys> + <state_T, dstate>."""
    ys, state_T, _ = kernel.forward(params, x, state)
    return np.sum(ys * dys) + sum(np.sum(s * d) for s, d in zip(state_T, dstate))


def inputs_of(params, x, state):
    """Every array the loss depends on, by name, as live references to perturb."""
    named = {k: params[k] for k in params}
    named["x"] = x
    named.update({"state0_%d" % n: s for n, s in enumerate(state)})
    return named


def central_differences(kernel, params, x, state, dys, dstate):
    numeric = {}
    for name, arr in inputs_of(params, x, state).items():
        grad = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            v = arr[idx]
            step = np.cbrt(np.finfo(float).eps) * max(1.0, abs(v))
            arr[idx] = v + step
            up = scalar_loss(kernel, params, x, state, dys, dstate)
            arr[idx] = v - step
            down = scalar_loss(kernel, params, x, state, dys, dstate)
            arr[idx] = v
            grad[idx] = (up - down) / (2 * step)
        numeric[name] = grad
    return numeric


def analytic(kernel, params, x, state, dys, dstate):
    _, _, cache = kernel.forward(params, x, state)
    grads, dx, dstate0 = kernel.backward(params, cache, dys, dstate)
    out = dict(grads, x=dx)
    out.update({"state0_%d" % n: d for n, d in enumerate(dstate0)})
    return out


# The references' worst errors are 1.2e-10 (hand-written, scale 0.5), 9e-11 (scale 2) and 6e-11 (the
# seed's algorithm): the truncation of these differences. A gradient off by 1e-7 of itself fails.
LIMIT = 1e-8


def worst_relative_error(kernel, scale):
    """Largest |analytic - numeric| over all arrays, each relative to its largest entry."""
    problem = make_problem(kernel, scale)
    numeric = central_differences(kernel, *problem)
    exact = analytic(kernel, *problem)
    assert exact.keys() == numeric.keys()
    return max(np.max(np.abs(exact[k] - numeric[k])) / np.max(np.abs(numeric[k]))
               for k in numeric)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_handwritten_lstm_matches_central_differences(scale):
    assert worst_relative_error(handwritten_lstm, scale) < LIMIT


class OffBias:
    """handwritten_lstm with db off by 1e-7 of itself."""

    STATES, init_params, forward = handwritten_lstm.STATES, handwritten_lstm.init_params, handwritten_lstm.forward

    @staticmethod
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = handwritten_lstm.backward(params, cache, dys, dstate)
        return dict(grads, b=grads["b"] * (1 + 1e-7)), dx, dstate0


def test_a_reference_off_by_1e_7_fails():
    assert worst_relative_error(OffBias, 0.5) > LIMIT


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_handwritten_lstm_keeps_dtype(dtype):
    params = handwritten_lstm.init_params(D, H, dtype=dtype)
    x = np.ones((T, B, D), dtype)
    ys, state_T, cache = handwritten_lstm.forward(params, x)
    grads, dx, dstate0 = handwritten_lstm.backward(params, cache, np.ones_like(ys))
    for arr in (ys, dx, *state_T, *dstate0, *grads.values()):
        assert arr.dtype == dtype


def test_seed_correct_variant_matches_central_differences():
    assert worst_relative_error(seed_lstm.KernelAdapter("correct"), 1.0) < LIMIT


@pytest.mark.parametrize("variant", ["drop_carry", "tanh_on_s"])
def test_seed_wrong_fixes_fail_central_differences(variant):
    assert worst_relative_error(seed_lstm.KernelAdapter(variant), 1.0) > 1e-2


def test_seed_module_is_the_correct_kernel():
    problem = make_problem(seed_lstm, 1.0)
    mine = analytic(seed_lstm, *problem)
    adapter = analytic(seed_lstm.KernelAdapter("correct"), *problem)
    for k in mine:
        np.testing.assert_array_equal(mine[k], adapter[k])


def test_toy_example_reproduces_the_seed_losses():
    losses = seed_lstm.toy_example(iterations=100)
    expected = {0: 7.535e-01, 10: 3.319e-01, 50: 4.602e-03, 99: 2.611e-06}
    for it, ref in expected.items():
        assert losses[it] == pytest.approx(ref, rel=1e-3), it


@pytest.mark.parametrize("variant", ["drop_carry", "tanh_on_s"])
def test_wrong_fixes_reach_a_lower_toy_loss(variant):
    # why the wrong fixes were believed: they train the toy problem better
    correct = seed_lstm.toy_example(iterations=100)
    wrong = seed_lstm.toy_example(iterations=100, variant=variant)
    assert wrong[-1] < correct[-1]


@pytest.mark.parametrize("name", ["handwritten_lstm", "handwritten_gru"])
@pytest.mark.parametrize("hidden", [1, 2])
def test_the_handwritten_references_run_in_float32_as_in_float64_at_the_smallest_sizes(name, hidden):
    """At H = 1 (float32) and H = 2 (float64) a gate block's rows are 16 and 64 bytes apart, where
    NumPy 2.4's np.negative(a, out=a) reads the wrong elements."""
    reference = __import__(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 2))
    outputs = {dtype: reference.forward(reference.init_params(2, hidden, dtype=dtype), x.astype(dtype))[0]
               for dtype in (np.float32, np.float64)}
    assert np.max(np.abs(outputs[np.float32] - outputs[np.float64])) < 1e-5
