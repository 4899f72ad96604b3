"""Every generated kernel: gradients proven by two numeric methods, and a careful interface."""

import copy
import importlib
import inspect
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from lstm_derive import gradcheck
from lstm_derive.kernels import CELLS

ROOT = Path(__file__).resolve().parents[1]
KERNELS = {name: importlib.import_module(f"lstm_derive.kernels.{name}") for name in CELLS}


def kernel_of(name):
    return KERNELS[name]


sizes = st.fixed_dictionaries({
    "T": st.integers(1, 6), "B": st.integers(1, 3), "D": st.integers(1, 4), "H": st.integers(1, 4),
    "seed": st.integers(0, 2**31 - 1),
    "scale": st.sampled_from([0.1, 0.5, 1.0, 2.0, 3.0]) | st.floats(0.1, 3.0),
})


@pytest.mark.parametrize("name", CELLS)
@settings(max_examples=12)
@given(config=sizes)
@example(config=dict(T=1, B=1, D=1, H=1, seed=42343862, scale=3.0))  # gru saturated: every gradient below 4e-5
@example(config=dict(T=1, B=1, D=1, H=1, seed=59182745, scale=3.0))  # rnn saturated: every gradient near 1e-9
@example(config=dict(T=1, B=1, D=1, H=1, seed=1, scale=0.1))  # rnn_relu off throughout: every gradient 0
def test_every_gradient_agrees_with_central_differences_and_the_complex_step(name, config):
    reports = gradcheck.check_kernel(kernel_of(name), **config)
    assume(not any(r.vacuous for r in reports))  # nothing to judge, and the report says so by failing
    for report in reports:
        assert report.ok, f"{name} {config}\n{report}"


@pytest.mark.parametrize("name", [n for n in CELLS if hasattr(KERNELS[n], "_span")])
@pytest.mark.parametrize("span", [1, 2, 3])
def test_spans_shorter_than_the_sequence_give_proven_gradients(name, span, monkeypatch):
    """Large B*H cut the backward pass into spans of few steps; small problems never are, so
    force short spans here: the gradients still pass both checks."""
    monkeypatch.setattr(kernel_of(name), "_span", lambda B, H, dtype: span)
    for report in gradcheck.check_kernel(kernel_of(name), T=7, B=2, D=2, H=3, seed=span, scale=1.5):
        assert report.ok, f"{name} span {span}\n{report}"


def test_a_span_holds_about_64_kib_per_array():
    span = KERNELS["lstm"]._span
    assert span(1, 32, np.float64) == 256 and span(64, 256, np.float64) == 1 and span(32, 128, np.float32) == 4
    assert span(0, 32, np.float64) == 2**16


def problem(kernel, T=4, B=3, D=3, H=2, seed=0, dtype=np.float64):
    p = gradcheck.random_problem(kernel, T, B, D, H, seed=seed)
    return p.with_dtype(dtype)


@pytest.mark.parametrize("name", CELLS)
def test_step_kernels_in_a_loop_give_the_sequence_results(name):
    k = kernel_of(name)
    p = problem(k)
    ys, final, cache = k.forward(p.params, p.x, p.state)
    grads, dx, dstate0 = k.backward(p.params, cache, p.dys, p.dstate)

    state, caches, frame = p.state, [], np.empty_like(p.x[0])
    for t in range(p.x.shape[0]):
        frame[...] = p.x[t]  # one buffer refilled, as a stream reads its frames: the cache has its own copy
        y, state, c = k.step_forward(p.params, frame, state)
        np.testing.assert_allclose(y, ys[t], rtol=1e-13, atol=1e-15)
        caches.append(c)
    for s, f in zip(state, final):
        np.testing.assert_allclose(s, f, rtol=1e-13, atol=1e-15)

    dstate, total = p.dstate, {n: 0 for n in k.PARAMS}
    for t in reversed(range(p.x.shape[0])):
        g, dx_t, dstate = k.step_backward(p.params, caches[t], p.dys[t], dstate)
        np.testing.assert_allclose(dx_t, dx[t], rtol=1e-12, atol=1e-14)
        total = {n: total[n] + g[n] for n in k.PARAMS}
    for n in k.PARAMS:
        np.testing.assert_allclose(total[n], grads[n], rtol=1e-12, atol=1e-14)
    for a, b in zip(dstate, dstate0):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_results_keep_the_dtype(name, dtype):
    k = kernel_of(name)
    p = problem(k, dtype=dtype)
    ys, final, cache = k.forward(p.params, p.x, p.state)
    grads, dx, dstate0 = k.backward(p.params, cache, p.dys.astype(dtype), tuple(d.astype(dtype) for d in p.dstate))
    for a in [ys, dx, *final, *dstate0, *grads.values()]:
        assert a.dtype == dtype


@pytest.mark.parametrize("name", CELLS)
def test_the_backward_pass_takes_a_complex_step_too(name):
    """In complex128 the backward pass is analytic as the forward is, so a complex step through
    both differentiates the gradient: Im(gradient at p + i h v) / h is its derivative along v (a
    Hessian-vector product), which central differences of the real gradient also give."""
    k = kernel_of(name)
    p = problem(k, seed=4)
    rng = np.random.default_rng(5)
    v = {n: rng.standard_normal(a.shape) for n, a in p.params.items()}

    def gradient(step, dtype):
        q = problem(k, seed=4, dtype=dtype)
        params = {n: a + step * v[n] for n, a in q.params.items()}
        return np.concatenate([a.ravel() for a in _everything(k, q, params).values()])

    h, eps = 1e-20, 1e-6
    by_complex_step = gradient(1j * h, np.complex128).imag / h
    by_differences = (gradient(eps, np.float64) - gradient(-eps, np.float64)).real / (2 * eps)
    scale = np.max(np.abs(by_differences))
    # the differences' rounding, about eps(float64)/eps of the scale: 2.4e-10 of it at worst (lstm_cifg)
    assert scale > 0 and np.max(np.abs(by_complex_step - by_differences)) <= 1e-8 * scale


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("H", [1, 2])
def test_float32_agrees_with_float64(name, seed, H):
    """Every output and gradient, relative to its array's largest entry. float32 rounds every input
    and operation to eps/2, and the errors add up over the T steps: 16 T eps bounds them with a
    margin (the worst measured is 13 eps at T = 4, over 30 problems of every cell)."""
    k = kernel_of(name)
    p64, p32 = problem(k, H=H, seed=seed), problem(k, H=H, seed=seed, dtype=np.float32)
    tolerance = 16 * p64.x.shape[0] * np.finfo(np.float32).eps
    want, got = _everything(k, p64), _everything(k, p32)
    for n in want:
        assert got[n].dtype == np.float32
        scale = np.max(np.abs(want[n]))  # 0 where no path reaches it (relu's units all off)
        error = np.max(np.abs(got[n] - want[n])) / (scale or 1)
        assert error <= tolerance, f"{n}: {error:.1e} > {tolerance:.1e}"


def _everything(k, p, params=None):
    """The outputs, the final state and every gradient of one forward and backward, by name;
    params, if given, in place of the problem's."""
    dtype, params = p.x.dtype, p.params if params is None else params
    ys, final, cache = k.forward(params, p.x, p.state)
    grads, dx, dstate0 = k.backward(params, cache, p.dys.astype(dtype), tuple(d.astype(dtype) for d in p.dstate))
    named = dict(grads, ys=ys, x=dx)
    named.update({f"final {s}": v for s, v in zip(k.STATES, final)})
    named.update({f"initial {s}": v for s, v in zip(k.STATES, dstate0)})
    return named


@pytest.mark.parametrize("name", CELLS)
def test_inputs_are_never_modified(name):
    k = kernel_of(name)
    p = problem(k)
    arrays = [*p.params.values(), p.x, *p.state, p.dys, *p.dstate]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.flags.writeable = False
    ys, final, cache = k.forward(p.params, p.x, p.state)
    k.backward(p.params, cache, p.dys, p.dstate)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", CELLS)
def test_zero_length_sequences_return_the_initial_state(name):
    k = kernel_of(name)
    p = problem(k, T=0)
    ys, final, cache = k.forward(p.params, p.x, p.state)
    assert ys.shape == (0, 3, 2)
    for s, s0 in zip(final, p.state):
        np.testing.assert_array_equal(s, s0)
    grads, dx, dstate0 = k.backward(p.params, cache, p.dys, p.dstate)
    assert dx.shape == (0, 3, 3)
    assert all(not np.any(g) for g in grads.values())
    for d, d0 in zip(dstate0, p.dstate):
        np.testing.assert_array_equal(d, d0)


@pytest.mark.parametrize("name", CELLS)
def test_bad_inputs_are_refused_with_the_argument_named(name):
    k = kernel_of(name)
    p = problem(k)
    first = k.PARAMS[0]
    single = {n: v.astype(np.float32) for n, v in p.params.items()}
    cases = [
        (lambda: k.forward(p.params, p.x[0], p.state), r"x: expected shape \(T, B, D\)"),
        (lambda: k.forward(p.params, p.x[..., :-1], p.state), r"x: expected shape \(T, B, D\) with D = 3"),
        (lambda: k.forward(p.params, p.x.astype(int), p.state),
         r"x: expected a float or complex array, got dtype int64; convert it with \.astype\(np\.float64, the parameters' dtype\)"),
        (lambda: k.forward(p.params, p.x.astype(np.float32), p.state), r"x: expected dtype float64"),
        (lambda: k.forward(p.params, p.x, tuple(s[:2] for s in p.state)), r"state\[.*\]: expected shape \(B, H\) = \(3, 2\), got \(2, 2\)"),
        (lambda: k.forward(p.params, p.x, p.state[:-1] + (None,) * 0), r"state: expected \d arrays"),
        (lambda: k.forward({**p.params, first: p.params[first][:, :1]}, p.x, p.state),
         rf"^(x: expected shape \(T, B, D\) with D = 1, the columns of {first}|W_\w+: expected shape)"),
        (lambda: k.forward({n: v for n, v in p.params.items() if n != first}, p.x, p.state), r"params: expected .* missing"),
    ]
    if len(p.state) == 1:
        cases.pop(5)
    transposed = {n: v.T for n, v in p.params.items() if v.ndim == 2}
    cases += [
        (lambda: k.forward(p.params, p.x, p.state[0]), r"state: expected a tuple of \d arrays? .*, got ndarray; pass \(" + ", ".join(k.STATES) + r",?\)"),
        (lambda: k.forward({**p.params, **transposed}, p.x, p.state), r"W_x: expected shape \(\d \* H, D\)|W_x .* disagree on H: expected W_x \((\d \* )?H, D\)"),
        (lambda: k.init_params(3, 0), r"D and H: expected positive integers, got D = 3, H = 0"),
        (lambda: k.init_params(3, 4, dtype=int), r"dtype: expected a float or complex dtype"),
        (lambda: k.init_params(3, 4, dtype="flaot"), r"^dtype: expected a float or complex dtype, got 'flaot'$"),
        (lambda: k.forward(p.params, None, p.state), r"^x: expected an array \(T, B, D\), got None$"),
        (lambda: k.forward(p.params, [p.x[0].tolist(), p.x[1, :1].tolist()], p.state),
         r"^x: expected an array \(T, B, D\), got a list that is none \(sequences of different lengths go padded"),
        (lambda: k.forward(single, p.x.tolist(), p.state),
         r"^x: expected dtype float32 like the parameters, got float64; a list reads as float64: pass "
         r"np\.asarray\(x, dtype=np\.float32\)$"),
        (lambda: k.forward(single, p.x.astype(np.float32), [s.tolist() for s in p.state]),
         r"^state\[\w+\]: expected dtype float32 like the parameters, got float64; a list reads as float64: pass "
         r"np\.asarray\(it, dtype=np\.float32\)$"),  # state[h] is no Python to pass
        (lambda: k.forward({**p.params, first: p.params[first].astype(np.float32)}, p.x, p.state),
         rf"^{first}: expected dtype float64 like the parameters, got float32"),  # the odd one out, whichever
        (lambda: k.forward({**p.params, first: [[0.0, 1.0], [2.0]]}, p.x, p.state),
         rf"^{first}: expected an array, got a list NumPy cannot read as one: "),
        (lambda: k.forward({**p.params, k.PARAMS[-1]: [[0.0, 1.0], [2.0]]}, p.x, p.state),
         rf"^{k.PARAMS[-1]}: expected an array, got a list NumPy cannot read as one: "),
        (lambda: k.forward(p.params, p.x, ([[0.0], [1.0, 2.0]],) * len(p.state)),
         r"^state\[\w+\]: expected an array, got a list NumPy cannot read as one: "),
        (lambda: k.forward(p.params, p.x, p.state, lengths=[[1], [1, 2], [3]]),
         r"^lengths: expected an array, got a list NumPy cannot read as one: "),
        (lambda: k.forward(p.params, p.x, tuple(s[np.newaxis] for s in p.state)),  # PyTorch's h_0 as it is
         r"^state\[\w+\]: expected shape \(B, H\) = \(3, 2\), got \(1, 3, 2\); drop the leading axis of length 1 "
         r"with \[0\] \(PyTorch's h_0, c_0, h_n and c_n are \(layers, B, H\)\)$"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    ys, final, cache = k.forward(p.params, p.x, p.state)
    with pytest.raises(ValueError, match=r"dys: expected shape \(T, B, H\)"):
        k.backward(p.params, cache, p.dys[:-1], p.dstate)
    with pytest.raises(ValueError, match=r"^dys: expected an array, got a list NumPy cannot read as one: "):
        k.backward(p.params, cache, [[[0.0]], [[0.0, 1.0]]], p.dstate)
    with pytest.raises(ValueError, match=r"^dys: expected shape \(T, B, H\) = \(\d+, 3, 2\), got \(1, \d+, 3, 2\); drop the "
                                         r"leading axis of length 1 with \[0\]$"):  # not PyTorch's state layout
        k.backward(p.params, cache, p.dys[np.newaxis], p.dstate)
    with pytest.raises(ValueError, match=r"^dstate\[\w+\]: .* got \(1, 3, 2\); drop the leading axis of length 1 with \[0\] \(PyTorch's"):
        k.backward(p.params, cache, p.dys, tuple(d[np.newaxis] for d in p.dstate))


@pytest.mark.parametrize("name", CELLS)
def test_the_final_state_is_the_callers_to_change(name):
    """Resetting a carried state in place (truncated BPTT) changes neither ys nor the gradients."""
    k = kernel_of(name)
    p = problem(k)
    ys, final, cache = k.forward(p.params, p.x, p.state)
    expected_ys = ys.copy()
    expected = k.backward(p.params, cache, p.dys, p.dstate)
    ys, final, cache = k.forward(p.params, p.x, p.state)
    for s in final:
        s[...] = 0
    np.testing.assert_array_equal(ys, expected_ys)
    got = k.backward(p.params, cache, p.dys, p.dstate)
    for name_, g in got[0].items():
        np.testing.assert_array_equal(g, expected[0][name_])
    y_t, new_state, _ = k.step_forward(p.params, p.x[0], p.state)
    assert not np.shares_memory(y_t, new_state[k.STATES.index(k.OUTPUT)])


@pytest.mark.parametrize("name", CELLS)
def test_a_cache_serves_only_its_own_cell_and_parameters(name):
    k = kernel_of(name)
    p = problem(k)
    other = KERNELS["rnn" if name != "rnn" else "lstm"]
    q = problem(other)
    _, _, foreign = other.forward(q.params, q.x, q.state)
    with pytest.raises(ValueError, match=rf"^cache: expected what forward\(\) of {name} returned, got the cache of {other.CELL}$"):
        k.backward(p.params, foreign, p.dys, p.dstate)
    with pytest.raises(ValueError, match=r"^cache: expected what forward\(\) of .* returned, got list$"):
        k.backward(p.params, [], p.dys, p.dstate)
    _, _, cache = k.forward(p.params, p.x, p.state)
    single = {n: v.astype(np.float32) for n, v in p.params.items()}
    with pytest.raises(ValueError, match=r"^params: D = 3, H = 2, dtype float32, but forward\(\) made the cache with D = 3, H = 2, dtype float64"):
        k.backward(single, cache, p.dys, p.dstate)
    wider = k.init_params(3, 5)
    with pytest.raises(ValueError, match=r"^params: D = 3, H = 5, .* with D = 3, H = 2"):
        k.backward(wider, cache, p.dys, p.dstate)
    another_layers = k.init_params(3, 2, seed=1)
    with pytest.raises(ValueError, match=rf"^params: {k.PARAMS[0]} is not what forward\(\) ran with"):
        k.backward(another_layers, cache, p.dys, p.dstate)
    updated = {n: v.copy() for n, v in p.params.items()}
    updated[k.PARAMS[-1]] -= 0.01  # an optimiser's step taken before backward()
    with pytest.raises(ValueError, match=rf"^params: {k.PARAMS[-1]} is not what forward\(\) ran with"):
        k.backward(updated, cache, p.dys, p.dstate)
    k.backward(p.params, cache, p.dys, p.dstate)  # the refusals did not use the cache up
    x = p.x.copy()
    _, _, cache = k.forward(p.params, x, p.state)
    x[...] = 0.5  # the next batch, written into the buffer before backward(): the cache holds x itself
    with pytest.raises(ValueError, match=r"^x: changed since forward\(\) ran .* give forward\(\) a copy$"):
        k.backward(p.params, cache, p.dys, p.dstate)


@pytest.mark.parametrize("name", CELLS)
def test_params_may_be_copies_in_any_layout_and_hold_other_keys(name):
    """The same values in new arrays (Fortran order) are the same parameters; a readout's weights
    beside the cell's in one dict are not the kernel's concern."""
    k = kernel_of(name)
    p = problem(k)
    ys, _, cache = k.forward({**p.params, "w_out": np.ones(3)}, p.x, p.state)
    grads, dx, dstate0 = k.backward({n: np.asfortranarray(v) for n, v in p.params.items()}, cache, p.dys, p.dstate)
    ys_ref, _, cache_ref = k.forward(p.params, p.x, p.state)
    ref = k.backward(p.params, cache_ref, p.dys, p.dstate)
    np.testing.assert_array_equal(ys, ys_ref)
    for n in k.PARAMS:
        np.testing.assert_array_equal(grads[n], ref[0][n])
    np.testing.assert_array_equal(dx, ref[1])


@pytest.mark.parametrize("name", CELLS)
def test_none_for_one_array_means_zeros(name):
    k = kernel_of(name)
    p = problem(k)
    zeros = tuple(np.zeros_like(s) for s in p.state)
    for j in range(len(k.STATES)):
        state = tuple(None if i == j else s for i, s in enumerate(p.state))
        dstate = tuple(None if i == j else s for i, s in enumerate(p.dstate))
        ys, _, cache = k.forward(p.params, p.x, state)
        got = k.backward(p.params, cache, p.dys, dstate)
        filled = tuple(zeros[i] if i == j else s for i, s in enumerate(p.state))
        dfilled = tuple(zeros[i] if i == j else s for i, s in enumerate(p.dstate))
        ys_ref, _, cache_ref = k.forward(p.params, p.x, filled)
        ref = k.backward(p.params, cache_ref, p.dys, dfilled)
        np.testing.assert_array_equal(ys, ys_ref)
        np.testing.assert_array_equal(got[1], ref[1])
        for n in k.PARAMS:
            np.testing.assert_array_equal(got[0][n], ref[0][n])
        for a, b in zip(got[2], ref[2]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CELLS)
def test_step_kernels_and_params_name_what_is_wrong(name):
    k = kernel_of(name)
    p = problem(k)
    with pytest.raises(ValueError, match=r"^x_t: expected shape \(B, D\) with D = 3, the columns of W_x, got \(4, 3, 3\); "
                                         r"steps \(T, B, D\) go to forward\(\)$"):
        k.step_forward(p.params, p.x, p.state)
    with pytest.raises(ValueError, match=r"^x_t: expected shape \(B, D\) with D = 3, the columns of W_x, got \(3, 2\)$"):
        k.step_forward(p.params, p.x[0, :, :2], p.state)
    with pytest.raises(ValueError, match=r"^x_t: expected an array \(B, D\), got a list that is none"):
        k.step_forward(p.params, [[1.0, 2.0, 3.0], [1.0]], p.state)
    _, _, cache = k.step_forward(p.params, p.x[0], p.state)
    with pytest.raises(ValueError, match=r"^dy_t: expected shape \(B, H\) = \(3, 2\), got \(3, 5\)$"):
        k.step_backward(p.params, cache, np.ones((3, 5)), p.dstate)
    _, _, sequence_cache = k.forward(p.params, p.x, p.state)
    with pytest.raises(ValueError, match=r"^cache: forward\(\) made it over T = 4 steps; step_backward\(\) takes"):
        k.step_backward(p.params, sequence_cache, p.dys[0], p.dstate)
    for bad in (list(p.params.values()), None):
        with pytest.raises(ValueError, match=r"^params: expected a dict of arrays"):
            k.forward(bad, p.x, p.state)
    for D in (3.0, "3", 0, True):
        with pytest.raises(ValueError, match=r"^D and H: expected positive integers, got D = "):
            k.init_params(D, 4)
    for scale in (-1, float("nan"), float("inf"), "a", True):
        with pytest.raises(ValueError, match=r"^scale: expected a finite number >= 0 or None \(1/sqrt\(H\)\), got "):
            k.init_params(3, 4, scale=scale)
    for seed in (-1, "x", 0.5):
        with pytest.raises(ValueError, match=r"^seed: expected a non-negative integer \(or None: fresh entropy\), got "):
            k.init_params(3, 4, seed=seed)
    assert not any(np.any(v) for v in k.init_params(3, 4, scale=0).values())


@pytest.mark.parametrize("name", CELLS)
def test_param_shapes_refuses_sizes_that_are_not_positive_integers_and_the_argument_checks_skip_it(name, monkeypatch):
    """param_shapes(3.5, 2) would give shapes of 3.5 columns, param_shapes(0, 2) arrays nothing fills;
    forward() and backward() read D and H off the arrays, so their checks need not pay for this one."""
    k = kernel_of(name)
    for D, H in ((3.5, 2), (0, 2), (2, -1), (2, True), ("3", 2)):
        with pytest.raises(ValueError, match=r"^D and H: expected positive integers, got D = "):
            k.param_shapes(D, H)
    assert {n: a.shape for n, a in k.init_params(3, 2).items()} == k.param_shapes(np.int64(3), 2)
    p = problem(k)
    monkeypatch.setattr(k, "param_shapes", None)
    _, _, cache = k.forward(p.params, p.x, p.state)
    k.backward(p.params, cache, p.dys, p.dstate)


def test_a_kernel_and_the_checker_import_without_sympy():
    """The kernels need NumPy alone: importing one (or the checker) loads no SymPy, while the
    package's cell language still loads it when asked for."""
    code = ("import sys; from lstm_derive.kernels import lstm; from lstm_derive import gradcheck; "
            "print('sympy' in sys.modules); from lstm_derive import Cell, derive; "
            "import lstm_derive.generate; from lstm_derive import derive as d; "
            "print('sympy' in sys.modules, d is derive, callable(d))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "True", "True", "True"]


@pytest.mark.parametrize("name", CELLS)
def test_a_gradient_fading_to_subnormals_is_no_error(name):
    """Under np.errstate(all="raise"), a loss of the last step alone, carried back 300 steps in
    float32, underflows on its way: backward() runs on, as forward() does."""
    k = kernel_of(name)
    params = k.init_params(8, 16, seed=0, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((300, 4, 8)).astype(np.float32)
    with np.errstate(all="raise"):
        ys, _, cache = k.forward(params, x)
        dys = np.zeros_like(ys)
        dys[-1] = 1
        grads, dx, _ = k.backward(params, cache, dys)
    assert dx[-1].any() and all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("name", CELLS)
def test_ys_is_read_only_and_dys_none_means_zeros(name):
    """ys is a view of what backward() reads, so writing into it is refused, even with its flag set
    back (the array it views is read-only); dys=None is a loss of the final state alone."""
    k = kernel_of(name)
    p = problem(k)
    ys, _, cache = k.forward(p.params, p.x, p.state)
    with pytest.raises(ValueError, match="read-only"):
        ys[0] += 1
    with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):  # nor can its flag be set back
        ys.flags.writeable = True
    got = k.backward(p.params, cache, None, p.dstate)
    ref = k.backward(p.params, k.forward(p.params, p.x, p.state)[2], np.zeros_like(ys), p.dstate)
    default = k.backward(p.params, k.forward(p.params, p.x, p.state)[2], dstate=p.dstate)
    for a, b, c in zip(*([*g[0].values(), g[1], *g[2]] for g in (got, ref, default))):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, b)
    y_t, _, step_cache = k.step_forward(p.params, p.x[0], p.state)
    assert not y_t.flags.writeable
    k.step_backward(p.params, step_cache, None, p.dstate)


@pytest.mark.parametrize("name", CELLS)
def test_a_step_names_x_t_and_how_to_convert_a_dtype(name):
    k = kernel_of(name)
    p = problem(k)
    with pytest.raises(ValueError, match=r"^x_t: expected dtype float64 like the parameters, got float32; "
                                         r"convert it with \.astype\(np\.float64\)$"):
        k.step_forward(p.params, p.x[0].astype(np.float32), p.state)
    single = {n: v.astype(np.float32) for n, v in p.params.items()}
    with pytest.raises(ValueError, match=r"^x_t: expected dtype float32 like the parameters, got float64; a list "
                                         r"reads as float64: pass np\.asarray\(x_t, dtype=np\.float32\)$"):
        k.step_forward(single, p.x[0].tolist(), p.state)
    with pytest.raises(ValueError, match=r"^x: expected dtype float64 like the parameters, got complex128; for "
                                         r"complex arithmetic \(the complex step\) make the parameters complex too$"):
        k.forward(p.params, p.x.astype(np.complex128), p.state)


@pytest.mark.parametrize("name", CELLS)
def test_big_endian_arrays_are_float64_too(name):
    """'>f8' holds float64 numbers: the kernels take it, for x or every array, and answer in native
    order (a buffer of x's order would be refused by np.dot's out=, as gru's was)."""
    k = kernel_of(name)
    p = problem(k)
    ys, final, cache = k.forward(p.params, p.x, p.state)
    grads = k.backward(p.params, cache, p.dys, p.dstate)[0]
    swapped = {n: v.astype(">f8") for n, v in p.params.items()}
    for params, x in [(p.params, p.x.astype(">f8")), (swapped, p.x.astype(">f8"))]:
        ys_b, final_b, cache_b = k.forward(params, x, tuple(s.astype(">f8") for s in p.state))
        grads_b = k.backward(params, cache_b, p.dys.astype(">f8"), p.dstate)[0]
        assert ys_b.dtype == np.float64 and ys_b.dtype.isnative
        np.testing.assert_array_equal(ys_b, ys)
        for n in grads:
            np.testing.assert_array_equal(grads_b[n], grads[n])


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("lengths", [None, np.array([6, 3, 1], np.uint32)], ids=["all", "uint32"])
def test_full_bptt_in_chunks_gives_one_calls_gradients(name, lengths):
    """Forward over chunks carrying the state, backward over them in reverse carrying dstate: the
    README's recipe gives one call's outputs exactly and its gradients to rounding; with lengths,
    each chunk's from README's np.clip (unsigned lengths: lengths - t0 would wrap around)."""
    k = kernel_of(name)
    p = problem(k, T=6)
    ys, final, cache = k.forward(p.params, p.x, p.state, lengths=lengths)
    grads, dx, dstate0 = k.backward(p.params, cache, p.dys, p.dstate)
    state, caches = p.state, []
    for t0, x_chunk in zip(range(0, 6, 2), np.split(p.x, 3)):
        chunk_lengths = None if lengths is None else np.clip(np.array(lengths).astype(np.int64) - t0, 0, len(x_chunk))
        ys_chunk, state, chunk_cache = k.forward(p.params, x_chunk, state, lengths=chunk_lengths)
        caches.append((ys_chunk.copy(), chunk_cache))
    np.testing.assert_array_equal(np.concatenate([y for y, _ in caches]), ys)
    dstate, summed, dxs = p.dstate, {n: 0 for n in grads}, []
    for (_, chunk_cache), dys_chunk in reversed(list(zip(caches, np.split(p.dys, 3)))):
        g, dx_chunk, dstate = k.backward(p.params, chunk_cache, dys_chunk, dstate)
        summed = {n: summed[n] + g[n] for n in g}
        dxs.insert(0, dx_chunk)
    for n in grads:
        np.testing.assert_allclose(summed[n], grads[n], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.concatenate(dxs), dx, rtol=1e-12, atol=1e-14)
    for a, b in zip(dstate, dstate0):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
def test_lengths_run_each_sequence_for_its_own_steps(name):
    """With lengths, each row is the row run alone for its own number of steps: its outputs, its
    final state, and (its outputs past its end repeating its final state, their dys added to
    that state's) its gradients; a row of length 0 passes everything through. The first step, which
    no sequence has ended by, is run unmasked."""
    k = kernel_of(name)
    p = problem(k, T=4, B=4)
    lengths = np.array([4, 2, 1, 3])
    x = p.x.copy()
    x[2:, 1], x[1:, 2], x[3:, 3] = np.nan, np.inf, -1e300  # the padding: what it holds changes nothing
    ys, final, cache = k.forward(p.params, x, p.state, lengths=lengths)
    assert cache["masked"] == [False, True, True, True]
    grads, dx, dstate0 = k.backward(p.params, cache, p.dys, p.dstate)
    total = {n: 0.0 for n in k.PARAMS}
    output = k.STATES.index(k.OUTPUT)
    for b, n in enumerate(lengths):
        row = tuple(s[b:b + 1] for s in p.state)
        ys_b, final_b, cache_b = k.forward(p.params, p.x[:n, b:b + 1], row)
        dstate_b = [d[b:b + 1].copy() for d in p.dstate]
        dstate_b[output] += p.dys[n:, b:b + 1].sum(axis=0)  # the outputs past the end are the final state
        grads_b, dx_b, dstate0_b = k.backward(p.params, cache_b, p.dys[:n, b:b + 1], tuple(dstate_b))
        np.testing.assert_allclose(ys[:n, b], ys_b[:, 0], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(ys[n:, b], np.broadcast_to(final[output][b], ys[n:, b].shape))
        for s, s_b in zip(final, final_b):
            np.testing.assert_allclose(s[b], s_b[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx[:n, b], dx_b[:, 0], rtol=1e-10, atol=1e-14)
        np.testing.assert_array_equal(dx[n:, b], 0.0)
        for s, s_b in zip(dstate0, dstate0_b):
            np.testing.assert_allclose(s[b], s_b[0], rtol=1e-10, atol=1e-14)
        total = {m: total[m] + grads_b[m] for m in k.PARAMS}
    for m in k.PARAMS:
        np.testing.assert_allclose(grads[m], total[m], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", CELLS)
def test_a_stream_steps_with_lengths_of_one_and_zero(name):
    """README's stream recipe: one step at a time, lengths 1 for the rows still running and 0 for
    those that have ended, gives one call's outputs and final state."""
    k = kernel_of(name)
    p = problem(k, T=4, B=3)
    lengths = np.array([4, 1, 3])
    ys, final, _ = k.forward(p.params, p.x, p.state, lengths=lengths)
    state = p.state
    for t in range(4):
        still_running = t < lengths
        y_t, state, _ = k.forward(p.params, p.x[t][np.newaxis], state, lengths=still_running.astype(int))
        np.testing.assert_array_equal(y_t[0], ys[t])
    for a, b in zip(state, final):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CELLS)
def test_step_backward_takes_a_one_step_cache_with_lengths_and_no_other(name):
    k = kernel_of(name)
    p = problem(k, T=4, B=2)
    for lengths in ([0, 0], [1, 0]):
        _, _, cache = k.forward(p.params, p.x[:1], p.state, lengths=lengths)
        k.step_backward(p.params, cache, p.dys[0])
    _, _, cache = k.forward(p.params, p.x, p.state, lengths=[1, 0])  # run for 1 step, given 4
    with pytest.raises(ValueError, match=r"cache: forward\(\) made it over T = 4 steps"):
        k.step_backward(p.params, cache, p.dys[0])


@pytest.mark.parametrize("name", CELLS)
def test_the_steps_after_the_longest_sequence_are_not_run_and_change_nothing(name):
    """Lengths all below T: forward() stops at the longest one, the rest of ys repeats the final
    state, and every result equals that of x cut at the longest length, the rest of dys added
    to the final output state's gradient."""
    k = kernel_of(name)
    p = problem(k, T=6, B=3)
    lengths = np.array([2, 4, 0])
    ys, final, cache = k.forward(p.params, p.x, p.state, lengths=lengths)
    assert len(cache["x"]) == 4 and cache["masked"] == [True] * 4
    grads, dx, dstate0 = k.backward(p.params, cache, p.dys, p.dstate)
    ys_cut, final_cut, cache_cut = k.forward(p.params, p.x[:4], p.state, lengths=lengths)
    output = k.STATES.index(k.OUTPUT)
    dstate = list(p.dstate)
    dstate[output] = dstate[output] + p.dys[4:].sum(axis=0)
    grads_cut, dx_cut, dstate0_cut = k.backward(p.params, cache_cut, p.dys[:4], tuple(dstate))
    np.testing.assert_array_equal(ys[:4], ys_cut)
    np.testing.assert_array_equal(ys[4:], np.broadcast_to(final[output], (2, 3, 2)))
    np.testing.assert_array_equal(dx[4:], 0.0)
    for a, b in [*zip(final, final_cut), (dx[:4], dx_cut), *zip(dstate0, dstate0_cut),
                 *((grads[n], grads_cut[n]) for n in k.PARAMS)]:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
@settings(max_examples=4)
@given(config=sizes, data=st.data())
def test_gradients_with_lengths_agree_with_both_numeric_methods(name, config, data):
    lengths = data.draw(st.lists(st.integers(0, config["T"]), min_size=config["B"], max_size=config["B"]))
    for report in gradcheck.check_kernel(kernel_of(name), **config, lengths=lengths):
        assert report.ok, f"{name} {config} lengths={lengths}\n{report}"


@pytest.mark.parametrize("name", CELLS)
def test_lengths_of_t_are_no_lengths_and_bad_ones_are_refused(name):
    k = kernel_of(name)
    p = problem(k)  # T = 4, B = 3
    plain = k.forward(p.params, p.x, p.state)
    full = k.forward(p.params, p.x, p.state, lengths=[4, 4, 4])
    np.testing.assert_array_equal(full[0], plain[0])
    assert full[2]["ended"] is None
    empty = k.forward(p.params, p.x[:, :0], tuple(s[:0] for s in p.state), lengths=[])  # B = 0
    assert empty[0].shape == (4, 0, 2)
    for lengths, message in [([4, 4], r"lengths: expected one integer per sequence, B = 3 \(x is time-major, "
                                      r"\(T, B, D\) = \(4, 3, 3\)\), got shape \(2,\)"),
                             (np.array([4, 2, 1], complex), r"lengths: expected integers, got dtype complex128; "
                                                            r"pass lengths\.real\.astype\(int\) where every imaginary part is 0$"),
                             ([True, False, True], r"lengths: expected integers, got dtype bool"),
                             ([2, 5, 1], r"lengths: expected each from 0 to T = 4, got lengths\[1\] = 5"),
                             ([2, 1, -1], r"lengths: expected each from 0 to T = 4, got lengths\[2\] = -1")]:
        with pytest.raises(ValueError, match=message):
            k.forward(p.params, p.x, p.state, lengths=lengths)


ILL_FORMED_LENGTHS = [  # T = 4, B = 3: (lengths, what the message must say: the problem, then the fix)
    ([2**70, 1, 1], r"expected each from 0 to T = 4, got lengths\[0\] = 1180591620717411303424; x holds T steps: "
                    r"pad x .*np\.clip\(lengths - t0, 0, T\)"),
    (np.array([1, 2**70, 1], dtype=object), r"got lengths\[1\] = 1180591620717411303424; x holds T steps"),
    ([1, -2**70, 1], r"got lengths\[1\] = -1180591620717411303424; a sequence has 0 steps or more"),
    ("ab", r"expected 3 integers from 0 to T = 4, each sequence's number of steps, got a str, 'ab', which is not "
           r"a sequence of lengths; pass a list or an array of integers"),
    (b"\x04\x02\x01", r"got a bytes, .* which is not a sequence of lengths; pass a list or an array of integers"),
    ([1.5, 2, 3], r"expected integers, got lengths\[0\] = 1\.5, not a whole number of steps; pass each "
                  r"sequence's number of steps as an integer"),
    ([1, 2, np.nan], r"got lengths\[2\] = nan, not a whole number of steps; pass each"),
    ([1, np.inf, 2], r"got lengths\[1\] = inf, not a whole number of steps"),
    ([1, None, 2], r"expected integers, got lengths\[1\] = None of type NoneType; pass each sequence's number"),
    ([True, False, True], r"expected integers, got dtype bool, which are not numbers of steps; .* running\.astype\(int\)"),
    ([[1, 2, 3]], r"got shape \(1, 3\); pass lengths\.ravel\(\)"),
    (np.ones((4, 3), bool), r"got shape \(4, 3\); a \(T, B\) mask of the steps .* mask\.sum\(axis=0\)"),
    ([4, 4], r"got shape \(2,\); pass one for each sequence x\[:, b\], b from 0 to B - 1"),
    (2, r"expected 3 integers .*, got the single number 2; pass one per sequence \(np\.full\(3, 2\) where"),
    ((n for n in [4, 2, 1]), r"got a generator, which NumPy reads as one object, not as numbers; pass a list .* "
                             r"\(of an iterator: list\(lengths\)\)"),
    ({4, 2, 1}, r"got a set, which NumPy reads as one object, not as numbers; pass a list or an array of integers "
                r"in the batch's order$"),
    ([2, 5, 1], r"got lengths\[1\] = 5; x holds T steps: pad x to the longest sequence"),
]


@pytest.mark.parametrize("lengths, message", ILL_FORMED_LENGTHS, ids=range(len(ILL_FORMED_LENGTHS)))
def test_ill_formed_lengths_are_refused_saying_what_is_wrong_and_what_to_pass(lengths, message):
    """Python's integers beyond int64 read as dtype object, and a string or a generator as one
    object of shape (): the message says so in the caller's terms (a length beyond T, a string that
    is not lengths), not in NumPy's."""
    k = kernel_of("gru")
    p = problem(k)
    with pytest.raises(ValueError, match=rf"^lengths: .*{message}"):
        k.forward(p.params, p.x, p.state, lengths=lengths)


@pytest.mark.parametrize("lengths", [np.array([4, 2, 0], dtype=object), (4, 2, 0), range(4, -1, -2),
                                     np.array([4, 2, 0], np.uint8)])
def test_lengths_of_python_integers_in_any_container_run_as_an_array_of_them(lengths):
    k = kernel_of("lstm")
    p = problem(k)
    want = k.forward(p.params, p.x, p.state, lengths=np.array([4, 2, 0]))
    got = k.forward(p.params, p.x, p.state, lengths=lengths)
    for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CELLS)
def test_whole_numbers_in_a_float_array_are_lengths_and_are_checked_before_conversion(name):
    """A float tensor's lengths (.numpy() gives float32) or np.array([3.0, 5.0]) name whole numbers of
    steps: they run as those integers. A float beyond T is refused as it is, not converted first
    (1e30 would wrap around in int64)."""
    k = kernel_of(name)
    p = problem(k)  # T = 4, B = 3
    want = k.forward(p.params, p.x, p.state, lengths=np.array([4, 2, 0]))
    for lengths in (np.array([4.0, 2.0, 0.0]), np.array([4, 2, -0.0], np.float32), [4.0, 2, 0],
                    np.array([np.float64(4), 2, 0], dtype=object)):
        got = k.forward(p.params, p.x, p.state, lengths=lengths)
        for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
            np.testing.assert_array_equal(a, b)
        assert got[2]["ended"].shape == (4, 3, 1)
    for lengths, message in [([4.0, 5.0, 1.0], r"got lengths\[1\] = 5\.0; x holds T steps"),
                             ([1e30, 1.0, 1.0], r"got lengths\[0\] = 1e\+30; x holds T steps"),
                             ([4.0, -1.0, 1.0], r"got lengths\[1\] = -1\.0; a sequence has 0 steps or more"),
                             (np.array([4, 2.5, 1], dtype=object), r"got lengths\[1\] = 2\.5 of type float"),
                             (np.array([np.bool_(True), 2, 1], dtype=object), r"got lengths\[0\] = (np\.)?True")]:
        with pytest.raises(ValueError, match=rf"^lengths: expected .*{message}"):
            k.forward(p.params, p.x, p.state, lengths=lengths)


@pytest.mark.parametrize("name", CELLS)
def test_non_finite_x_in_rows_that_run_no_step_draws_no_warning(name):
    """A row of length 0 (a slot not in use) may hold inf or nan in x: it is never read, and NumPy
    has nothing to warn of, in forward() or backward()."""
    k = kernel_of(name)
    p = problem(k)
    x = p.x.copy()
    x[:, 0], x[:, 2, 1] = np.inf, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ys, _, cache = k.forward(p.params, x, p.state, lengths=[0, 3, 0])
        grads, dx, _ = k.backward(p.params, cache, p.dys, p.dstate)
    assert all(np.isfinite(g).all() for g in grads.values()) and np.isfinite(dx).all()


@pytest.mark.parametrize("name", CELLS)
def test_a_non_finite_initial_state_in_rows_that_run_no_step_draws_no_warning(name):
    """A sequence of no steps keeps its initial state, inf or nan too (a slot not in use): no step
    reads it, so NumPy has nothing to warn of, and every other result is that of a finite state there."""
    k = kernel_of(name)
    p = problem(k)
    lengths = [3, 0, 0]
    state = tuple(s.copy() for s in p.state)
    for s in state:
        s[1], s[2, 0] = np.inf, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ys, final, cache = k.forward(p.params, p.x, state, lengths)
        grads, dx, dstate0 = k.backward(p.params, cache, p.dys, p.dstate)
    _, _, finite_cache = k.forward(p.params, p.x, p.state, lengths)
    expected = k.backward(p.params, finite_cache, p.dys, p.dstate)
    np.testing.assert_array_equal(ys[:, 1:], np.broadcast_to(state[k.STATES.index(k.OUTPUT)][1:], ys[:, 1:].shape))
    assert not ys.flags.writeable
    for s, s0 in zip(final, state):
        np.testing.assert_array_equal(s[1:], s0[1:])
    for got, want in zip([grads[n] for n in k.PARAMS] + [dx, *dstate0],
                         [expected[0][n] for n in k.PARAMS] + [expected[1], *expected[2]]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", CELLS)
def test_a_cache_without_what_forward_keeps_is_refused_by_what_it_lacks(name):
    """A cache pickled by another version of the kernel, or trimmed, lacks some of the arrays
    backward() reads: a ValueError names them, where backward() failed with a bare KeyError; the
    whole of forward()'s result is named as such."""
    k = kernel_of(name)
    p = problem(k)
    result = k.forward(p.params, p.x, p.state)
    for dropped in ("x", "spent", next(n for n in result[2] if n.endswith("_seq"))):
        trimmed = {n: v for n, v in result[2].items() if n != dropped}
        with pytest.raises(ValueError, match=rf"^cache: expected what forward\(\) of {name} returned, got a dict of "
                                             rf"{name} without \['{dropped}'\], .*: run forward\(\) again$"):
            k.backward(p.params, trimmed, p.dys)
    with pytest.raises(ValueError, match=r"got tuple, forward\(\)'s whole result: pass its third item, the cache$"):
        k.backward(p.params, result, p.dys)
    k.backward(p.params, result[2], p.dys)  # the refusals did not use it up


@pytest.mark.parametrize("name", CELLS)
def test_a_step_cache_used_twice_is_refused_in_the_step_functions_words(name):
    k = kernel_of(name)
    p = problem(k)
    _, _, cache = k.step_forward(p.params, p.x[0], p.state)
    k.step_backward(p.params, cache, p.dys[0])
    with pytest.raises(ValueError, match=r"^cache: step_backward\(\) has used it up already; run step_forward\(\) again$"):
        k.step_backward(p.params, cache, p.dys[0])


@pytest.mark.parametrize("name", CELLS)
def test_refusals_of_near_misses_say_what_to_pass(name):
    """An argument a shape or a type away from what is expected: the message says how to get there."""
    k = kernel_of(name)
    p = problem(k)  # T = 4, B = 3, D = 3, H = 2
    first, last, state = k.PARAMS[0], k.PARAMS[-1], k.STATES[0]
    single = {n: v.astype(np.float32) for n, v in p.params.items()}
    cases = [
        (lambda: k.forward(p.params, p.x[:, 0]), r"^x: .*got \(4, 3\); one sequence \(T, D\) goes as x\[:, np\.newaxis\], "
                                                  r"one step of B sequences \(B, D\) as x\[np\.newaxis\]$"),
        (lambda: k.forward(p.params, p.x[np.newaxis]), r"^x: .*got \(1, 4, 3, 3\); drop the leading axis of length 1 with \[0\]$"),
        (lambda: k.forward(p.params, "abc"), r"^x: expected shape \(T, B, D\) with D = 3, .*, got a str, 'abc'$"),
        (lambda: k.forward(single, p.x.astype(int)), r"^x: .*got dtype int64; convert it with \.astype\(np\.float32, the parameters' dtype\)$"),
        (lambda: k.step_forward(p.params, p.x[0, 0]), r"^x_t: .*got \(3,\); one sequence's step \(D,\) goes as x_t\[np\.newaxis\]$"),
        (lambda: k.step_forward(p.params, p.x[:1]), r"^x_t: .*got \(1, 3, 3\); drop the leading axis of length 1 with \[0\]$"),
        (lambda: k.step_forward(p.params, p.x), r"^x_t: .*got \(4, 3, 3\); steps \(T, B, D\) go to forward\(\)$"),
        (lambda: k.forward(p.params, p.x, tuple(s[0] for s in p.state)),
         rf"^state\[{state}\]: expected shape \(B, H\) = \(3, 2\), got \(2,\); one initial state for every sequence "
         rf"goes as np\.broadcast_to\({state}, \(3, 2\)\)$"),
        (lambda: k.forward(p.params, p.x, p.state + p.state), rf"^state: expected .* got {2 * len(k.STATES)}; pass \({state},"),
        (lambda: k.backward(p.params, k.forward(p.params, p.x)[2], p.dys, p.state + p.state), r"^dstate: .*; pass \("),
        (lambda: k.forward(None, p.x), r"^params: expected a dict of arrays .*, got NoneType; init_params\(D, H\) makes one$"),
        (lambda: k.forward({n: v for n, v in p.params.items() if n != last}, p.x),
         rf"^params: expected .*, missing \['{last}'\]; pass every parameter by its name in PARAMS, as init_params"),
        (lambda: k.forward({**p.params, last: p.params[last][:-1]}, p.x),
         rf"^{last}: expected shape .* \(D = 3 and H = 2 read off W_x\), got "),
        (lambda: k.forward({**p.params, first: None}, p.x), rf"^{first}: expected shape .*, got None$"),
        (lambda: k.forward({**p.params, first: 0.5}, p.x), rf"^{first}: expected shape .*, got a float, 0\.5$"),
        (lambda: k.forward({**p.params, first: p.params[first][np.newaxis]}, p.x),
         rf"^{first}: expected shape .*, got \(1, \d+, 3\); drop the leading axis of length 1 with \[0\]$"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize("name", CELLS)
def test_the_parameters_sample_spans_every_column_and_compares_values(name):
    """With H = 16 a stride of whole rows would sample column 0 alone: a weight changed in its other
    columns is still refused. Equal values are the same parameters: -0.0 for 0.0, NaN for NaN."""
    k = kernel_of(name)
    p = gradcheck.random_problem(k, T=3, B=2, D=4, H=16)
    for w in (n for n in k.PARAMS if p.params[n].ndim == 2):
        _, _, cache = k.forward(p.params, p.x, p.state)
        changed = {n: v.copy() for n, v in p.params.items()}
        changed[w][:, 1:] *= 3
        with pytest.raises(ValueError, match=rf"^params: {w} is not what forward\(\) ran with"):
            k.backward(changed, cache, p.dys, p.dstate)
    zeros = {n: np.zeros_like(v) if v.ndim == 1 else v for n, v in p.params.items()}
    zeros[k.PARAMS[0]] = zeros[k.PARAMS[0]].copy()
    zeros[k.PARAMS[0]].flat[5] = np.nan
    _, _, cache = k.forward(zeros, p.x, p.state)
    negated = {n: -v if v.ndim == 1 else v.copy() for n, v in zeros.items()}  # -0.0 biases; NaN copied
    k.backward(negated, cache, p.dys, p.dstate)


@pytest.mark.parametrize("name", CELLS)
def test_an_x_refilled_with_the_same_values_elsewhere_is_refused(name):
    """A one-hot batch is zeros nearly everywhere, so a sample of x sees zeros before and after a
    refill: backward() compares a sum of every entry, each weighted by its place. Characters at
    columns none of 16 entries spread over x (a stride of 249 here) would see, moved to others such
    columns, or the same characters moved to other steps or rows, or the batch transposed, are
    refused; x itself unchanged, in Fortran order or holding NaN, is not."""
    k = kernel_of(name)
    T = B = 2
    D = 1000
    p = gradcheck.random_problem(k, T=T, B=B, D=D, H=2)
    characters = np.array([[3, 7], [11, 13]])
    sampled = set(range(0, 16 * 249, 249))  # where sixteen entries spread over x, prime to D, would look
    for moved in (characters + 2, characters[::-1], characters[:, ::-1], characters.T):
        flat = [(t * B + b) * D + d for c in (characters, moved) for (t, b), d in np.ndenumerate(c)]
        assert not sampled & set(flat)
        x = np.eye(D)[characters]
        _, _, cache = k.forward(p.params, x, p.state)
        x[...] = np.eye(D)[moved]
        with pytest.raises(ValueError, match=r"^x: changed since forward\(\) ran \(a weighted sum"):
            k.backward(p.params, cache, p.dys, p.dstate)
    x = np.asfortranarray(np.eye(D)[characters])
    x[1, 0, 3] = np.nan
    _, _, cache = k.forward(p.params, x, p.state)
    k.backward(p.params, cache, p.dys, p.dstate)


@pytest.mark.parametrize("name", CELLS)
def test_a_cache_pickled_or_deep_copied_keeps_an_x_of_any_layout_its_own(name):
    """A pickled or deep-copied cache holds x in C order, whatever order forward() had it in (every
    other column of a wider buffer, say): the same values, so backward() takes the copy as it takes
    the cache itself, and gives the same gradients. A sum that followed x's layout would add in
    another order there, and differ in its last bits: an x said to have changed when none did."""
    k = kernel_of(name)
    rng = np.random.default_rng(0)
    p = gradcheck.random_problem(k, T=6, B=5, D=64, H=3)
    for wide in rng.standard_normal((4, 6, 5, 128)):
        views = (wide[:, :, ::2], np.asfortranarray(wide[:, :, :64]), wide[::-1, :, 64:],
                 wide[:, ::-1, :64].transpose(1, 0, 2).copy().transpose(1, 0, 2))
        for x in views:
            _, _, cache = k.forward(p.params, x, p.state)
            copies = [pickle.loads(pickle.dumps(cache)), copy.deepcopy(cache)]
            expected, expected_dx, _ = k.backward(p.params, cache, p.dys, p.dstate)
            for copied in copies:
                grads, dx, _ = k.backward(p.params, copied, p.dys, p.dstate)
                np.testing.assert_array_equal(dx, expected_dx)
                for n in k.PARAMS:
                    np.testing.assert_array_equal(grads[n], expected[n], err_msg=n)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_sum_that_tells_a_refilled_x_is_taken_in_float64(dtype):
    """In float16, 3e4 in every column would overflow the weighted sum to inf, whatever x then held,
    and from about 600 columns two would share a weight: another refill would go unseen."""
    k = kernel_of("rnn")
    params = {n: v.astype(dtype) for n, v in k.init_params(2000, 2, scale=1e-6).items()}
    x = np.zeros((2, 1, 2000), dtype)
    x[..., 5], x[0, 0, :3] = 1, 3e4
    _, _, cache = k.forward(params, x)
    x[..., 5], x[..., 992] = 0, 1
    with pytest.raises(ValueError, match=r"^x: changed since forward\(\) ran"):
        k.backward(params, cache)


@pytest.mark.parametrize("name", CELLS)
def test_a_sequence_of_no_steps_from_a_state_not_finite_adds_nothing(name):
    """A slot not in use (length 0) may hold nan or inf, which no step reads: its state is kept, and
    the gradients are the other sequence's alone. The sums after the loop read its rows times
    adjoints of 0, and 0 * nan is nan: they must not reach the weights' gradients."""
    k = kernel_of(name)
    p = gradcheck.random_problem(k, T=4, B=3, D=3, H=2)
    state = tuple(s.copy() for s in p.state)
    for s in state:
        s[1], s[2, 0] = np.nan, np.inf
    dys = p.dys.copy()
    dys[:, 1:] = 0
    with np.errstate(invalid="ignore"):  # the steps compute the slots' rows too, then keep their states
        ys, final, cache = k.forward(p.params, p.x, state, lengths=[4, 0, 0])
        grads, dx, dstate0 = k.backward(p.params, cache, dys)
    for s, f in zip(state, final):
        np.testing.assert_array_equal(f[1:], s[1:])  # kept, nan and inf as given
    _, _, alone = k.forward(p.params, p.x[:, :1], tuple(s[:1] for s in state))
    expected, expected_dx, _ = k.backward(p.params, alone, dys[:, :1])
    for n in k.PARAMS:
        np.testing.assert_allclose(grads[n], expected[n], rtol=1e-12, atol=1e-14, err_msg=n)
    np.testing.assert_allclose(dx[:, :1], expected_dx, rtol=1e-12, atol=1e-14)
    assert not np.any(dx[:, 1:])



@pytest.mark.parametrize("name", [n for n in CELLS if n != "rnn_relu"])  # a relu's units flip on float16's rounding
def test_float16_gradients_stay_within_a_few_eps_over_many_steps_and_rows(name):
    """Every parameter's gradient is a sum over every step and row; NumPy adds a float16 matmul in
    float32 (the weights'), but a float16 sum or einsum in float16, which at T * B = 32000 put the
    biases' and peepholes' gradients 13 to 58 eps from float64's on the same float16-rounded
    inputs, where the weights' stayed within 3.1 eps. Relative to each array's largest entry."""
    k = kernel_of(name)
    T, B, D, H = 1000, 32, 2, 4
    rng = np.random.default_rng(0)
    p16 = {n: v.astype(np.float16) for n, v in k.init_params(D, H, seed=0).items()}
    p64 = {n: v.astype(np.float64) for n, v in p16.items()}
    x, dys = rng.standard_normal((T, B, D)).astype(np.float16), rng.standard_normal((T, B, H)).astype(np.float16)
    got = k.backward(p16, k.forward(p16, x)[2], dys)[0]
    want = k.backward(p64, k.forward(p64, x.astype(np.float64))[2], dys.astype(np.float64))[0]
    tolerance = 8 * np.finfo(np.float16).eps
    for n in k.PARAMS:
        assert got[n].dtype == np.float16
        error = np.max(np.abs(got[n] - want[n])) / np.max(np.abs(want[n]))
        assert error <= tolerance, f"d{n}: {error:.1e} > {tolerance:.1e}"


@pytest.mark.parametrize("name", CELLS)
def test_what_a_kernel_keeps_across_calls_stays_bounded_over_ever_new_sizes(name):
    """A server may see a new H or T in every request: the module's dicts of what it made once
    (gate scales, sampled indices, weights of x's sum) start afresh past 256 entries, not grow."""
    k = kernel_of(name)
    kept = {n: v for n, v in vars(k).items() if isinstance(v, dict) and n not in ("_PARAM_DIMS", "__builtins__")}
    for H in range(1, 301):
        params = {n: np.zeros(shape) for n, shape in k.param_shapes(1, H).items()}
        ys, _, cache = k.forward(params, np.zeros((H % 7, 1, 1)))
        k.backward(params, cache, ys)
    assert kept and all(len(v) <= 257 for v in kept.values()), {n: len(v) for n, v in kept.items()}


@pytest.mark.parametrize("name", CELLS)
def test_a_masked_array_is_refused_not_read_without_its_mask(name):
    """np.asarray() drops a masked array's mask: its masked entries (a padding's nan, say) would be
    read as numbers, where the caller meant them not to be."""
    k = kernel_of(name)
    p = problem(k)
    x = np.ma.masked_invalid(np.where(np.arange(4)[:, None, None] < 2, p.x, np.nan))
    with pytest.raises(ValueError, match=r"^x: expected an array, got a masked array, .* pass x\.filled\(value\)"):
        k.forward(p.params, x, p.state)
    state = (np.ma.masked_array(p.state[0], mask=True),) + p.state[1:]
    with pytest.raises(ValueError, match=rf"^state\[{k.STATES[0]}\]: expected an array, got a masked array"):
        k.forward(p.params, p.x, state)
    with pytest.raises(ValueError, match=r"^lengths: expected an array, got a masked array"):
        k.forward(p.params, p.x, p.state, lengths=np.ma.masked_array([4, 2, 1], mask=[0, 0, 1]))
    ys, _, cache = k.forward(p.params, p.x, p.state)
    with pytest.raises(ValueError, match=r"^dys: expected an array, got a masked array"):
        k.backward(p.params, cache, np.ma.masked_array(p.dys, mask=False))


@pytest.mark.parametrize("name", CELLS)
def test_the_module_docstrings_lines_in_use_run_as_written(name):
    """A kernel copied into another project has its docstrings alone to say how it is called."""
    k = kernel_of(name)
    lines = k.__doc__.split("In use:\n\n")[1].split("\n\n")[0].splitlines()
    code = "\n".join(line.split("  # ")[0].strip() for line in lines)
    p = problem(k, T=4, B=3, D=3, H=2)
    scope = {**vars(k), "D": 3, "H": 2, "x": p.x, "dys": p.dys}
    exec(code, scope)
    assert scope["ys"].shape == (4, 3, 2) and scope["dx"].shape == (4, 3, 3)
    assert set(scope["grads"]) == set(k.PARAMS) and len(scope["dstate0"]) == len(k.STATES)


@pytest.mark.parametrize("name", CELLS)
def test_every_argument_and_result_has_its_own_line_in_the_docstring(name):
    """Each argument of forward() and backward(), and each array they return, is described on a line
    of its own that starts with its name, so that a reader finds it (and its shape or type) at once."""
    k = kernel_of(name)
    returned = {"forward": ("ys", "final_state", "cache"), "backward": ("grads", "dx", "dstate0")}
    for function in (k.forward, k.backward):
        doc = inspect.getdoc(function)  # Python 3.13 strips the indentation that 3.10 to 3.12 keep
        names = [*inspect.signature(function).parameters, *returned[function.__name__]]
        undescribed = [n for n in names if f"\n{n}: " not in doc]
        assert not undescribed, f"{function.__name__}() does not describe {undescribed}"
        assert f"Returns ({', '.join(returned[function.__name__])})" in doc
    forward_doc = inspect.getdoc(k.forward)
    assert "dtype" in forward_doc.split("\nx: ")[0] and "parameters' dtype" in forward_doc


def _float32_errors(scale=None, x_factor=1.0, zero_biases=False):
    """lstm in float32 against float64, T = 10, B = 4, D = H = 8, x standard normal, seeds 0-9: per
    seed, the largest error of the outputs and of dW_h over their largest entry, as README's and
    the kernel's docstring's figures were measured."""
    k = KERNELS["lstm"]
    errors = []
    for seed in range(10):
        p = k.init_params(8, 8, seed=seed, scale=scale)
        if zero_biases:
            p["b"][:] = 0
        rng = np.random.default_rng(seed)
        x, dys = x_factor * rng.standard_normal((10, 4, 8)), rng.standard_normal((10, 4, 8))
        runs = []
        for dtype in (np.float64, np.float32):
            q = {n: a.astype(dtype) for n, a in p.items()}
            ys, _, cache = k.forward(q, x.astype(dtype))
            runs.append((ys, k.backward(q, cache, dys.astype(dtype))[0]["W_h"]))
        (ys64, dW64), (ys32, dW32) = runs
        errors.append([np.abs(ys32 - ys64).max() / np.abs(ys64).max(), np.abs(dW32 - dW64).max() / np.abs(dW64).max()])
    return np.array(errors)


@pytest.mark.parametrize("said, where, kwargs, of", [
    ("with weights uniform in ±0.01, 2e-6 to 3e-6", "README", {"scale": 0.01}, 0),
    ("in ±1e-4, 2e-4 to 3e-4", "README", {"scale": 1e-4}, 0),
    ("(±0.35 here), 1.3e-7 to 1.9e-7", "README", {"scale": 0.35}, 0),
    ("at ±3, 3e-7 to 1.2e-6", "README", {"scale": 3.0}, 0),
    ("1e-4, 6e-4 to 1e-3", "README", {"x_factor": 1e-4, "zero_biases": True}, 0),
    ("(dW_h 5e-4 to 1.4e-3)", "README", {"x_factor": 1e-4, "zero_biases": True}, 1),
    ("±0.01, outputs 2e-6 to 3e-6", "docstring", {"scale": 0.01}, 0),
    ("x times 1e-4, 6e-4 to 1e-3", "docstring", {"x_factor": 1e-4, "zero_biases": True}, 0),
])
def test_the_float32_accuracy_figures_of_a_tanh_through_exp_are_what_the_kernel_gives(said, where, kwargs, of):
    """The figures README and lstm's forward() docstring give for a tanh gate computed through exp,
    measured again as they say: a change to how g is computed (np.tanh is 10x closer) must change them.
    Each figure is rounded, to one or two digits: the seeds' least and largest error lie within
    20% of the figures said."""
    text = (ROOT / "README.md").read_text() if where == "README" else " ".join(KERNELS["lstm"].forward.__doc__.split())
    assert said in " ".join(text.split())
    low, high = (float(n) for n in re.findall(r"\d(?:\.\d)?e-\d+", said)[-2:])
    errors = _float32_errors(**kwargs)[:, of]
    assert 0.8 * low <= errors.min() <= 1.2 * low and 0.8 * high <= errors.max() <= 1.2 * high, errors
