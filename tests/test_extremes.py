"""Every generated kernel at the edges: wrong arguments, odd memory layouts, empty sequences,
and pre-activations far into saturation.

tests/test_kernels.py checks the common mistakes (x of the wrong rank or size, an integer x, a
float32 x, a short state, a missing parameter, a short dys) and that read-only inputs stay
untouched; this file adds the rest of the argument checks, non-contiguous and read-only arrays
of every kind, the empty sequence, and extreme values under ``np.errstate(all="raise")`` with
underflow allowed: far into saturation a sigmoid is a number like 1e-300, exact to rounding, and
products of such numbers reach the subnormals, which is rounding, not an error.

The extreme values assume bounded gates (sigmoid, tanh) that saturate, as every packaged cell
but rnn_relu has. A cell of an unbounded function (relu, softplus, exp) of a pre-activation may
overflow there by nature: over a few steps its values stay finite, over many they need not.
"""

import copy
import importlib
import re
import warnings

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_derive import derive, exp, gradcheck, relu, sigmoid, softplus
from lstm_derive.generate import HOME as DERIVATIONS
from lstm_derive.generate import load_cell
from lstm_derive.kernels import CELLS

# Any warning is an error here, as under pytest -W error; but for mpmath's own deprecations, which
# SymPy 1.12's evalf (the exact references below) meets with mpmath 1.4.
pytestmark = [pytest.mark.filterwarnings("error"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:mpmath")]

KERNELS = {name: importlib.import_module(f"lstm_derive.kernels.{name}") for name in CELLS}


def _bounded(name):
    """Whether every function the cell applies saturates: none of relu, softplus and exp."""
    return not any(let.expr.has(relu, softplus, exp) for let in load_cell(DERIVATIONS / f"{name}.py").lets)


BOUNDED = [name for name in CELLS if _bounded(name)]

T, B, D, H = 4, 3, 5, 2


def problem(k, T=T, B=B, D=D, H=H, seed=0, dtype=np.float64):
    return gradcheck.random_problem(k, T, B, D, H, seed=seed).with_dtype(dtype)


def run(k, params, x, state, dys, dstate):
    """forward then backward: (ys, final, grads, dx, dstate0)."""
    ys, final, cache = k.forward(params, x, state)
    grads, dx, dstate0 = k.backward(params, cache, dys, dstate)
    return ys, final, grads, dx, dstate0


def outputs(result):
    ys, final, grads, dx, dstate0 = result
    return [ys, *final, *grads.values(), dx, *dstate0]


def size_weight(k):
    """The weight the kernel reads D and H from: the input weight of the first affine."""
    shapes = k.param_shapes(7, 11)
    return next(n for n, s in shapes.items() if len(s) == 2 and s[1] == 7)


def other_param(k):
    """A parameter other than the size weight, so a dtype or shape error is its own."""
    return next(n for n in reversed(k.PARAMS) if n != size_weight(k))


# -- wrong arguments: a ValueError that names the argument, what it expected and what it got --

def forward_cases(k, p):
    """(label, call, argument, actual): calls of forward() with one argument wrong."""
    s0, w, q = k.STATES[0], size_weight(k), other_param(k)
    params = p.params

    def with_param(name, value):
        return {**params, name: value}

    def with_state(value):
        return (value,) + tuple(p.state[1:])

    cases = [
        ("x of rank 4", lambda: k.forward(params, p.x[..., None], p.state), "x", str(p.x[..., None].shape)),
        ("x of rank 1", lambda: k.forward(params, p.x[0, 0], p.state), "x", str(p.x[0, 0].shape)),
        ("x of dtype object", lambda: k.forward(params, p.x.astype(object), p.state), "x", "object"),
        ("x of dtype bool", lambda: k.forward(params, p.x > 0, p.state), "x", "bool"),
        ("x of dtype int32", lambda: k.forward(params, p.x.astype(np.int32), p.state), "x", "int32"),
        ("x complex, params float64", lambda: k.forward(params, p.x.astype(complex), p.state), "x", "complex128"),
        ("x as a list of strings", lambda: k.forward(params, [["a"]], p.state), "x", "(1, 1)"),
        ("a parameter float32 among float64",
         lambda: k.forward(with_param(q, params[q].astype(np.float32)), p.x, p.state), q, "float32"),
        ("the size weight float32 among float64",
         lambda: k.forward(with_param(w, params[w].astype(np.float32)), p.x, p.state), "W|b|U|p", "float"),
        ("a parameter of dtype int64", lambda: k.forward(with_param(q, params[q].astype(np.int64)), p.x, p.state),
         q, "int64"),
        ("a parameter of dtype object", lambda: k.forward(with_param(q, params[q].astype(object)), p.x, p.state),
         q, "object"),
        ("a parameter of one rank more", lambda: k.forward(with_param(q, params[q][..., None]), p.x, p.state),
         q, str(params[q][..., None].shape)),
        ("a parameter one row short", lambda: k.forward(with_param(q, params[q][:-1]), p.x, p.state),
         q, str(params[q][:-1].shape)),
        ("the size weight of rank 1", lambda: k.forward(with_param(w, params[w][:, 0]), p.x, p.state),
         w, str(params[w][:, 0].shape)),
        ("the size weight's rows not a multiple of its blocks",
         lambda: k.forward(with_param(w, np.vstack([params[w], params[w][:1]])), p.x, p.state),
         w, str((params[w].shape[0] + 1, D))),
        ("a misspelled parameter", lambda: k.forward({**{n: a for n, a in params.items() if n != q}, "W_typo": params[q]},
                                                     p.x, p.state), "params", "W_typo"),
        ("a state of another batch size", lambda: k.forward(params, p.x, with_state(p.state[0][:-1])),
         rf"state\[{s0}\]", str(p.state[0][:-1].shape)),
        ("a state of another size H", lambda: k.forward(params, p.x, with_state(p.state[0][:, :-1])),
         rf"state\[{s0}\]", str(p.state[0][:, :-1].shape)),
        ("a state of rank 1", lambda: k.forward(params, p.x, with_state(p.state[0][0])),
         rf"state\[{s0}\]", str(p.state[0][0].shape)),
        ("a state of rank 3", lambda: k.forward(params, p.x, with_state(p.state[0][None])),
         rf"state\[{s0}\]", str(p.state[0][None].shape)),
        ("a state of dtype int64", lambda: k.forward(params, p.x, with_state(p.state[0].astype(np.int64))),
         rf"state\[{s0}\]", "int64"),
        ("a state float32 with float64 params",
         lambda: k.forward(params, p.x, with_state(p.state[0].astype(np.float32))), rf"state\[{s0}\]", "float32"),
        ("one state too many", lambda: k.forward(params, p.x, p.state + (p.state[0],)), "state",
         str(len(p.state) + 1)),
    ]
    if k.param_shapes(7, 11)[w][0] == 11:  # one block: any row count is a multiple of it
        cases = [c for c in cases if "multiple" not in c[0]]
    return cases


def backward_cases(k, p, cache):
    s0 = k.STATES[0]

    def with_dstate(value):
        return (value,) + tuple(p.dstate[1:])

    return [
        ("dys of another length", lambda: k.backward(p.params, cache, p.dys[1:], p.dstate), "dys",
         str(p.dys[1:].shape)),
        ("dys of another batch size", lambda: k.backward(p.params, cache, p.dys[:, 1:], p.dstate), "dys",
         str(p.dys[:, 1:].shape)),
        ("dys of rank 2", lambda: k.backward(p.params, cache, p.dys[0], p.dstate), "dys", str(p.dys[0].shape)),
        ("dys float32", lambda: k.backward(p.params, cache, p.dys.astype(np.float32), p.dstate), "dys", "float32"),
        ("dys of dtype int64", lambda: k.backward(p.params, cache, p.dys.astype(np.int64), p.dstate), "dys",
         "int64"),
        ("dys of dtype object", lambda: k.backward(p.params, cache, p.dys.astype(object), p.dstate), "dys",
         "object"),
        ("a dstate of another batch size", lambda: k.backward(p.params, cache, p.dys, with_dstate(p.dstate[0][1:])),
         rf"dstate\[{s0}\]", str(p.dstate[0][1:].shape)),
        ("a dstate float32",
         lambda: k.backward(p.params, cache, p.dys, with_dstate(p.dstate[0].astype(np.float32))),
         rf"dstate\[{s0}\]", "float32"),
        ("a dstate too few", lambda: k.backward(p.params, cache, p.dys, p.dstate[:-1] or ()), "dstate",
         str(len(p.dstate) - 1)),
    ]


def assert_names_the_argument(call, argument, actual, label):
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    assert re.match(rf"({argument})[\w\[\]]*: expected ", message), f"{label}: {message!r} does not name {argument}"
    assert ", got " in message or "missing" in message, f"{label}: {message!r} does not say what it got"
    assert actual in message, f"{label}: {message!r} does not show the actual {actual!r}"


@pytest.mark.parametrize("name", CELLS)
def test_wrong_arguments_to_forward_name_the_argument_what_it_expected_and_what_it_got(name):
    k = KERNELS[name]
    p = problem(k)
    for label, call, argument, actual in forward_cases(k, p):
        assert_names_the_argument(call, argument, actual, label)


@pytest.mark.parametrize("name", CELLS)
def test_wrong_arguments_to_backward_name_the_argument_what_it_expected_and_what_it_got(name):
    k = KERNELS[name]
    p = problem(k)
    _, _, cache = k.forward(p.params, p.x, p.state)
    for label, call, argument, actual in backward_cases(k, p, cache):
        assert_names_the_argument(call, argument, actual, label)


@pytest.mark.parametrize("name", CELLS)
def test_backward_with_params_of_another_size_than_the_cache_is_refused(name):
    k = KERNELS[name]
    p = problem(k)
    _, _, cache = k.forward(p.params, p.x, p.state)
    wider = gradcheck.random_problem(k, T, B, D, H + 1).params
    with pytest.raises(ValueError, match=rf"^params: D = {D}, H = {H + 1}, .* made the cache with D = {D}, H = {H}, "):
        k.backward(wider, cache, p.dys, p.dstate)


# -- odd memory layouts: read-only, strided, Fortran-order and reversed arrays -----------------

def strided(a, how):
    """The same values as ``a`` in another memory layout, made read-only."""
    if how == "every other element":  # a[:, ::2] of an array twice as wide in its last axis
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        out = wide[..., ::2]
    elif how == "fortran order":
        out = np.asfortranarray(a)
    elif how == "reversed":
        out = np.ascontiguousarray(a[::-1])[::-1]
    elif how == "transposed view":
        out = np.ascontiguousarray(a.T).T
    elif how == "broadcast":  # a zero-stride view: every row is the same memory
        out = np.broadcast_to(a[:1], a.shape) if a.ndim else a
    else:
        raise ValueError(how)
    out = out.view()
    out.flags.writeable = False
    assert not out.flags.writeable
    return out


LAYOUTS = ["every other element", "fortran order", "reversed", "transposed view"]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("how", LAYOUTS)
def test_read_only_and_non_contiguous_inputs_give_the_same_results_and_stay_untouched(name, how):
    k = KERNELS[name]
    p = problem(k)
    reference = run(k, p.params, p.x, p.state, p.dys, p.dstate)

    params = {n: strided(a, how) for n, a in p.params.items()}
    x, dys = strided(p.x, how), strided(p.dys, how)
    state, dstate = tuple(strided(s, how) for s in p.state), tuple(strided(s, how) for s in p.dstate)
    given = [*params.values(), x, dys, *state, *dstate]
    if how != "fortran order":
        assert any(not a.flags.c_contiguous for a in given)
    copies = [a.copy() for a in given]

    result = run(k, params, x, state, dys, dstate)
    for mine, theirs in zip(outputs(result), outputs(reference)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-13, atol=1e-14)
    for a, c in zip(given, copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", CELLS)
def test_a_zero_stride_state_and_upstream_gradient_work(name):
    """np.broadcast_to gives read-only arrays whose rows share memory; the kernel copies states."""
    k = KERNELS[name]
    p = problem(k)
    state = tuple(np.broadcast_to(s[:1], s.shape) for s in p.state)
    dstate = tuple(np.broadcast_to(s[:1], s.shape) for s in p.dstate)
    reference = run(k, p.params, p.x, tuple(map(np.array, state)), p.dys, tuple(map(np.array, dstate)))
    result = run(k, p.params, p.x, state, p.dys, dstate)
    for mine, theirs in zip(outputs(result), outputs(reference)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
def test_outputs_never_alias_the_callers_arrays(name):
    """Changing a returned array must not change an input, at T = 0 as well, where final is the state."""
    k = KERNELS[name]
    for steps in (0, 3):
        p = problem(k, T=steps)
        given = [*p.params.values(), p.x, *p.state, p.dys, *p.dstate]
        for out in outputs(run(k, p.params, p.x, p.state, p.dys, p.dstate)):
            for a in given:
                assert not np.shares_memory(out, a)


# -- the empty sequence, the empty batch, and None states ---------------------------------------

@pytest.mark.parametrize("name", CELLS)
def test_an_empty_sequence_returns_the_initial_state_and_passes_dstate_through(name):
    """T = 0: ys is (0, B, H), the final state is the initial one, and the gradients of the
    parameters and of x are zero (of their shapes), the initial state's is dstate itself."""
    k = KERNELS[name]
    for state in ("given", None):
        p = problem(k, T=0)
        s = p.state if state else None
        ys, final, cache = k.forward(p.params, p.x, s)
        assert ys.shape == (0, B, H) and ys.dtype == np.float64
        for f, s0 in zip(final, p.state if state else [np.zeros((B, H))] * len(k.STATES)):
            np.testing.assert_array_equal(f, s0)
        for dstate in (p.dstate, None):
            cache = k.forward(p.params, p.x, s)[2]  # one backward() per cache
            grads, dx, dstate0 = k.backward(p.params, cache, p.dys, dstate)
            assert dx.shape == (0, B, D)
            assert {n: g.shape for n, g in grads.items()} == {n: a.shape for n, a in p.params.items()}
            assert not any(np.any(g) for g in grads.values())
            expected = p.dstate if dstate is not None else [np.zeros((B, H))] * len(k.STATES)
            for d, d0 in zip(dstate0, expected):
                np.testing.assert_array_equal(d, d0)


@pytest.mark.parametrize("name", CELLS)
def test_an_empty_batch_gives_empty_results_and_zero_parameter_gradients(name):
    k = KERNELS[name]
    p = problem(k, B=0)
    ys, final, grads, dx, dstate0 = run(k, p.params, p.x, p.state, p.dys, p.dstate)
    assert ys.shape == (T, 0, H) and dx.shape == (T, 0, D)
    assert all(f.shape == (0, H) for f in final) and all(d.shape == (0, H) for d in dstate0)
    assert not any(np.any(g) for g in grads.values())


# -- extreme values ------------------------------------------------------------------------------

# The largest |pre-activation| each dtype is held to.
LIMITS = {np.float64: 1e4, np.float32: 1e3}


def input_weights(k, D, H):
    """The weights that multiply x: shape (k * H, D), told apart with sizes that differ."""
    return [n for n, s in k.param_shapes(7, 11).items() if len(s) == 2 and s[1] == 7]


def extreme_problem(k, T, B, D, H, seed, scale, magnitude, dtype):
    """A problem whose largest input pre-activation |W_x x + b| is exactly ``magnitude``."""
    p = gradcheck.random_problem(k, T, B, D, H, seed=seed, scale=scale)
    rows = p.x.reshape(-1, D)
    parts = [rows @ p.params[w].T for w in input_weights(k, D, H)]
    reached = max(np.max(np.abs(a)) for a in parts)
    p.x = p.x * (magnitude / reached)
    p = p.with_dtype(dtype)
    p.dys, p.dstate = p.dys.astype(dtype), tuple(d.astype(dtype) for d in p.dstate)
    return p


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@settings(max_examples=15)
@given(T=st.integers(1, 6), B=st.integers(1, 3), D=st.integers(1, 4), H=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 1.0, 3.0]) | st.floats(0.1, 3.0),
       fraction=st.sampled_from([1.0]) | st.floats(0.0, 1.0))
def test_saturating_pre_activations_give_finite_results_without_a_floating_point_warning(
        name, dtype, T, B, D, H, seed, scale, fraction):
    """|a| up to 1e4 (float64) or 1e3 (float32): every output and gradient finite, nothing raised
    (bounded gates saturate: see the module's docstring)."""
    k = KERNELS[name]
    magnitude = float(LIMITS[dtype] ** fraction)
    p = extreme_problem(k, T, B, D, H, seed, scale, magnitude, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            result = run(k, p.params, p.x, p.state, p.dys, p.dstate)
    for a in outputs(result):
        assert a.dtype == dtype
        assert np.all(np.isfinite(a)), f"{name} {dtype.__name__} |a| = {magnitude:.3g}: not finite"


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_the_largest_pre_activations_are_reached_and_survived(name, dtype):
    """The limit itself, for both signs, on a problem where every unit saturates."""
    k = KERNELS[name]
    for seed in range(3):
        p = extreme_problem(k, 5, 3, 3, 4, seed, 3.0, LIMITS[dtype], dtype)
        for sign in (1, -1):
            x = sign * p.x
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with np.errstate(all="raise", under="ignore"):
                    result = run(k, p.params, x, p.state, p.dys, p.dstate)
            assert all(np.all(np.isfinite(a)) for a in outputs(result))
        rows = p.x.reshape(-1, 3).astype(np.float64)
        reached = max(np.max(np.abs(rows @ np.asarray(p.params[w], np.float64).T)) for w in input_weights(k, 3, 4))
        assert reached == pytest.approx(LIMITS[dtype], rel=1e-5)


@pytest.mark.parametrize("name", BOUNDED)
def test_long_saturated_float32_sequences_stay_finite(name):
    """Over many steps a vanishing gradient may reach float32's subnormals (underflow, which is
    no error); overflow, invalid operations and division by zero must still never happen."""
    k = KERNELS[name]
    for seed in range(2):
        p = extreme_problem(k, 64, 2, 3, 4, seed, 2.0, 30.0, np.float32)
        with np.errstate(all="raise", under="ignore"):
            result = run(k, p.params, p.x, p.state, p.dys, p.dstate)
        assert all(np.all(np.isfinite(a)) for a in outputs(result))


@pytest.mark.parametrize("name", [n for n in CELLS if hasattr(KERNELS[n], "sigmoid")])
def test_the_kernels_sigmoid_is_exact_to_rounding_deep_in_saturation(name):
    """Where sigmoid(a) is tiny it is exp(a) / (1 + exp(a)); 0.5 + 0.5 tanh(a/2) would lose every
    digit there (relative error 2e-4 at a = -30), and the gate values would be that wrong."""
    a = np.array([-1e4, -745.0, -700.0, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4])
    with np.errstate(all="raise", under="ignore"):
        got = KERNELS[name].sigmoid(a)
    exact = np.where(a < 0, np.exp(np.minimum(a, 0)) / (1 + np.exp(np.minimum(a, 0))),
                     1 / (1 + np.exp(-np.maximum(a, 0))))
    tiny = np.finfo(float).tiny  # below it (a < -708) only subnormals are left: absolute error
    assert np.all(np.abs(got - exact) <= 4 * np.finfo(float).eps * np.abs(exact) + tiny)


def exact_step(name, params, a):
    """The new states of one step from zero states with x = 1 and H = D = 1, from the cell's own
    equations in 50-digit arithmetic: independent of the kernel's code."""
    d = derive(load_cell(DERIVATIONS / f"{name}.py"))
    cell, values = d.cell, {}
    values[cell.inputs[0]] = sympy.Integer(1)
    values.update({cell.prev(s): sympy.Integer(0) for s in cell.states})
    values.update({p: sympy.Float(params[str(p)][0], 50) for p in cell.params})
    exact_sigmoid = lambda u: 1 / (1 + sympy.exp(-u))  # noqa: E731
    for eq in d.forward:
        if eq.rhs is None:  # an affine map: sum the weights' products and the biases, block by block
            node = eq.node
            for j, block in enumerate(node.blocks):
                terms = [sympy.Float(params[w][j, 0], 50) * values[v] for w, v in zip(node.weights, node.inputs)]
                values[block] = sum(terms) + sum(sympy.Float(params[b][j], 50) for b in node.biases)
        else:
            values[eq.lhs[0]] = eq.rhs.replace(sigmoid, exact_sigmoid).subs(values).evalf(50)
    return [float(values[cell.updates[s].symbol]) for s in cell.states]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("a", [-30.0, -100.0])
def test_a_step_deep_in_saturation_is_exact_to_rounding(name, a):
    """Every input pre-activation a, deep where a sigmoid is tiny: the new states agree with the
    cell's equations to a few units of rounding, relative to each value. A gate written as
    0.5 + 0.5 tanh(a/2) would be off by 2e-4 relative at a = -30; the gradient checks, relative to
    each array's largest entry, cannot see that."""
    k = KERNELS[name]
    params = {n: np.zeros(shape) for n, shape in k.param_shapes(1, 1).items()}
    for w in input_weights(k, 1, 1):
        params[w][:] = a
    _, final, _ = k.forward(params, np.ones((1, 1, 1)))
    for got, exact in zip(final, exact_step(name, params, a)):
        assert exact != 0 or name not in BOUNDED  # relu(-30) is 0, exactly; a sigmoid never is
        assert abs(got.item() - exact) <= 16 * np.finfo(float).eps * abs(exact), (got, exact)


@pytest.mark.parametrize("name", CELLS)
def test_a_second_backward_on_one_cache_is_refused_in_every_kernel(name):
    """A cache serves one backward(): a kernel that writes the gates' gradients over their values
    must refuse a second, and every other refuses it too, so that code written for one cell runs
    on all. Through a shallow copy of the dict (which shares the flag and the overwritten arrays)
    too, saying why; a deep copy is a cache of its own, and gives the same gradients."""
    k = KERNELS[name]
    p = problem(k)
    cache = k.forward(p.params, p.x, p.state)[2]
    shallow, deep = dict(cache), copy.deepcopy(cache)
    first = k.backward(p.params, cache, p.dys, p.dstate)
    for used in (cache, shallow):
        with pytest.raises(ValueError, match=r"^cache: backward\(\) has used it up.*run forward\(\) again"):
            k.backward(p.params, used, p.dys, p.dstate)
    second = k.backward(p.params, deep, p.dys, p.dstate)
    for a, b in zip([*first[0].values(), first[1], *first[2]], [*second[0].values(), second[1], *second[2]]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CELLS)
def test_the_complex_step_stays_finite_within_the_bound_the_docstring_gives(name):
    """forward()'s docstring gives |Re a| < bound for complex input: every gate's pre-activation at
    0.98 of it, of either sign, leaves every output finite (the tanh through exp(-2a) halves it)."""
    k = KERNELS[name]
    found = re.search(r"\|Re a\| < (\d+)", k.forward.__doc__)
    if found is None:
        assert "exp" not in k.forward.__doc__
        return
    bound = int(found.group(1))
    for sign in (1, -1):
        params = {n: np.zeros(s, complex) for n, s in k.param_shapes(1, 1).items()}
        for w in input_weights(k, 1, 1):
            params[w][:] = sign * 0.98 * bound
        ys, final, _ = k.forward(params, np.full((1, 1, 1), 1 + 1e-30j))
        assert np.isfinite(ys).all() and all(np.isfinite(s).all() for s in final), (name, sign)


def test_the_bounded_cells_are_told_from_the_others():
    """The saturation tests above skip only the cells of unbounded functions, not all of them."""
    assert "rnn_relu" not in BOUNDED and {"lstm", "gru", "rnn", "lstm_seed"} <= set(BOUNDED)
