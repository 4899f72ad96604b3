"""A kernel's results are judged as users call it (state=None, a stack of layers, step by step, two
backward() calls on one cache), to rounding, and no closer."""

import importlib.util
import pathlib
import textwrap
import types

import numpy as np
import pytest
from altered import NUMERIC, Wrapped
from test_random_cells import kernel_of

from lstm_derive import callings, gradcheck
from lstm_derive.kernels import rnn


def test_step_functions_in_float32_are_judged_by_float32s_tolerance(tmp_path, monkeypatch):
    """A multiplicative-integration RNN, right, over 30 steps at weight scale 2: its step functions
    from None in float32 sum in another order than forward(), and the problem amplifies float32's
    rounding to 1.2e-5 of dbx's largest entry, which the tolerance of same-order runs (1e-5) called
    a wrong step function."""
    mirnn, _ = kernel_of(textwrap.dedent("""
        from lstm_derive import Cell, tanh

        cell = Cell("mirnn", title="Multiplicative-integration RNN")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a_x,) = cell.affine("Wx", [x], bias="bx")
        (a_h,) = cell.affine("Uh", [h_prev], bias=None)
        al, b1, b2 = cell.param("alpha"), cell.param("beta1"), cell.param("beta2")
        cell.update(h=tanh(al * a_x * a_h + b1 * a_h + b2 * a_x))
    """), tmp_path)
    p = gradcheck.random_problem(mirnn, T=30, B=1, D=4, H=3, seed=24, scale=2.0)
    assert callings.calls_as_users_make_them(mirnn, p) == ""
    monkeypatch.setitem(gradcheck.TOLERANCE, "float32", callings.SAME_ORDER32)
    assert "from state=None in float32, dbx differs by" in callings.calls_as_users_make_them(mirnn, p)


def test_a_gradient_zero_in_exact_arithmetic_is_judged_against_the_losss_rounding(tmp_path):
    """README's stabilised sLSTM from state=None in float32: dm0 is 0 in exact arithmetic, so both
    runs give rounding noise, which the stepwise comparison failed by 1.4 of its largest entry."""
    stabilised, _ = kernel_of(textwrap.dedent("""
        from lstm_derive import Cell, exp, relu, sigmoid, tanh

        cell = Cell("slstm_stab", title="sLSTM with stabiliser state m")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        n_prev = cell.state("n", positive=True)
        m_prev = cell.state("m")
        a_i, a_f, a_z, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_z", "a_o"])
        m = cell.let("m_new", a_i + relu(a_f + m_prev - a_i))
        i = cell.let("i", exp(a_i - m))
        f = cell.let("f", exp(a_f + m_prev - m))
        c = cell.let("c_new", f * c_prev + i * tanh(a_z))
        n = cell.let("n_new", f * n_prev + i)
        cell.update(h=sigmoid(a_o) * c / n, c=c, n=n, m=m)
    """), tmp_path)
    assert all(r.ok for r in gradcheck.check_kernel(stabilised, T=2, B=1, D=4, H=3, seed=24, scale=2.0)), "noise"
    noise = np.array([1e-12, -2e-12])
    assert callings._first_difference({"dm0": (noise, -noise)}, unit=1e-12) == ""  # within 10 units
    assert "dm0 differs by" in callings._first_difference({"dm0": (noise, -noise)}, unit=0.0)


class Workspace:
    """rnn with its outputs in a buffer kept across calls, as a kernel that allocates nothing per
    call might: right for one forward() and its backward(), wrong for two layers."""

    def __init__(self):
        self.k, self.buffer = rnn, None
        for name in ("CELL", "STATES", "PARAMS", "init_params", "backward"):
            setattr(self, name, getattr(rnn, name))

    def forward(self, params, x, state=None, lengths=None):
        ys, final, cache = rnn.forward(params, x, state, lengths=lengths)
        if self.buffer is None or self.buffer.shape != ys.shape or self.buffer.dtype != ys.dtype:
            self.buffer = np.empty_like(ys)
        self.buffer[...] = ys
        return self.buffer, final, cache


def _none_as(value, widened=False):
    """rnn's forward reading state=None as a state of value; widened: then returning float64 ys, as
    a hand-written kernel's np.zeros((B, H)) makes its float32 run."""
    def forward(params, x, state=None, lengths=None):
        none = state is None
        if none:
            state = (np.full((np.shape(x)[1], np.shape(params["W_h"])[0]), value, np.asarray(x).dtype),)
        ys, final, cache = rnn.forward(params, x, state, lengths=lengths)
        return (ys.astype(np.float64) if none and widened else ys), final, cache
    return forward


def _none_offset(params, x, state=None, lengths=None):
    """rnn's forward with its outputs 0.5 above the zeros' where state is None: a difference of one
    sign everywhere fails as one of both does."""
    ys, final, cache = rnn.forward(params, x, state, lengths=lengths)
    return (ys + 0.5 if state is None else ys), final, cache


def _none_overflowing(params, x, state=None, lengths=None):
    """rnn's forward with its first output inf where state is None: inf against a finite value
    differs, whatever the scale of the other entries."""
    ys, final, cache = rnn.forward(params, x, state, lengths=lengths)
    if state is None:
        ys = ys.copy()
        ys.flat[0] = np.inf
    return ys, final, cache


def _none_layered(params, x, state=None, lengths=None):
    """rnn's forward returning its final state as PyTorch's (layers, B, H) where state is None: the same
    numbers, broadcast as they may be, are not the same result."""
    ys, (h,), cache = rnn.forward(params, x, state, lengths=lengths)
    return ys, ((h[np.newaxis] if state is None else h),), cache


def _wrong_step(params, cache, dy_t, dstate=None):
    grads, dx_t, dstate_prev = rnn.step_backward(params, cache, dy_t, dstate)
    return grads, dx_t * 1.1, dstate_prev


@pytest.mark.parametrize("kernel, said", [
    (Workspace(), "with another forward() and backward() between a forward() and its backward() (a stack of "
                  "layers), ys differs by"),
    (Workspace(), "a call must keep nothing for a later one outside the cache it returns, and return arrays no "
                  "later call writes into"),
    (Wrapped(rnn, forward=_none_as(1.0)), "with state=None (meaning zeros) in float64, ys differs by"),
    (Wrapped(rnn, forward=_none_as(0.0, widened=True)), "with state=None (meaning zeros) in float32, ys is float64"),
    (Wrapped(rnn, forward=_none_as(np.nan)), "with state=None (meaning zeros) in float64, ys[0, 0, 0] is nan, where "
                                             "a lone call with every argument given has "),
    (Wrapped(rnn, forward=_none_offset), "with state=None (meaning zeros) in float64, ys differs by"),
    (Wrapped(rnn, forward=_none_overflowing), "with state=None (meaning zeros) in float64, ys[0, 0, 0] is inf, where "
                                              "a lone call with every argument given has "),
    (Wrapped(rnn, forward=_none_layered), "with state=None (meaning zeros) in float64, final h is float64 of shape "
                                          "(1, 2, 4), not float64 of shape (2, 4)"),
])
def test_a_kernel_whose_results_change_with_how_it_is_called_fails(kernel, said):
    central, _, _ = gradcheck.check_kernel(kernel)  # float32 too: its run is judged
    assert not central.ok and said in str(central), str(central)
    assert not central.mismatches  # each call alone, as the other checks make them, is right


def test_a_kernel_for_float64_alone_passes_without_the_float32_method():
    """Its None reads as float64 zeros, which matters only in a float32 run: a check that leaves
    float32 out does not run it in float32 to find that."""
    kernel = Wrapped(rnn, forward=_none_as(0.0, widened=True))
    central, _ = gradcheck.check_kernel(kernel, methods=("central", "complex"))
    assert central.ok, str(central)
    central, _, _ = gradcheck.check_kernel(kernel)
    assert not central.ok and "None must mean zeros (of x's dtype)" in str(central), str(central)


def test_functions_named_step_forward_that_take_other_arguments_are_the_kernels_own():
    """A tutorial's helpers, step_forward(x_t, h_prev, params) and step_backward(dh, cache): not
    the generated kernels' step functions, so not checked as those; with their signatures they are."""
    kernel = Wrapped(rnn)
    kernel.step_forward = lambda x_t, h_prev, params: np.tanh(x_t @ params["W_x"].T + h_prev @ params["W_h"].T)
    kernel.step_backward = lambda dh, cache: (dh, cache)
    assert all(r.ok for r in gradcheck.check_kernel(kernel, methods=NUMERIC))
    kernel.step_backward = lambda dh_next, h, h_prev, params: (dh_next, h, h_prev)  # four, params last
    assert all(r.ok for r in gradcheck.check_kernel(kernel, methods=NUMERIC))
    kernel.step_forward, kernel.step_backward = rnn.step_forward, _wrong_step
    central, _ = gradcheck.check_kernel(kernel, methods=NUMERIC)
    assert "step by step, with step_forward() and step_backward(), dx differs by" in str(central), str(central)


def test_step_functions_are_checked_against_forward_and_backward():
    kernel = Wrapped(rnn)
    kernel.step_forward, kernel.step_backward = rnn.step_forward, _wrong_step
    central, _ = gradcheck.check_kernel(kernel, methods=NUMERIC)
    assert "step by step, with step_forward() and step_backward(), dx differs by" in str(central), str(central)
    kernel.step_backward = rnn.step_backward
    assert all(r.ok for r in gradcheck.check_kernel(kernel, methods=NUMERIC))



def test_right_kernels_called_in_ways_of_their_own_pass(tmp_path):
    """A state the cell divides by, started at zeros by None: the same nan both ways is no difference.
    A kernel that refuses None by any exception, one that gives no gradient for a state it was given
    as None, and one whose step_forward is a helper of another kind are left alone."""
    divided, _ = kernel_of(textwrap.dedent("""
        from lstm_derive import Cell, exp, sigmoid, tanh

        cell = Cell("divided", title="A normalised state")
        x = cell.input("x")
        h_prev, n_prev = cell.state("h"), cell.state("n", positive=True)
        a_i, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_o"])
        i = cell.let("i", exp(a_i))
        n = cell.let("n_new", n_prev + i)
        cell.update(h=sigmoid(a_o) * tanh(n_prev / n), n=n)
    """), tmp_path)
    assert all(r.ok for r in gradcheck.check_kernel(divided, methods=NUMERIC)), "nan against nan"

    def refusing(params, x, state=None, lengths=None):
        assert state is not None, "this kernel takes a state"
        return rnn.forward(params, x, state, lengths=lengths)

    def no_gradient_for_none(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        return grads, dx, (None,) if cache.get("given_none") else dstate0

    def marking(params, x, state=None, lengths=None):
        ys, final, cache = rnn.forward(params, x, state, lengths=lengths)
        return ys, final, {**cache, "given_none": state is None}

    helper = Wrapped(rnn)
    helper.step_forward = lambda params, x_t, h: np.tanh(x_t @ params["W_x"].T)  # not (y_t, state, cache)
    helper.step_backward = rnn.step_backward
    for kernel in (Wrapped(rnn, forward=refusing), Wrapped(rnn, no_gradient_for_none, marking), helper):
        assert all(r.ok for r in gradcheck.check_kernel(kernel, methods=NUMERIC))


def test_a_second_layers_call_with_its_own_weights_and_lengths_shows_what_a_kernel_kept_between_calls():
    kept = {}

    def forward(params, x, state=None, lengths=None):
        kept["W_h"] = params["W_h"]  # the last forward()'s weights, read by the next backward()
        return rnn.forward(params, x, state, lengths=lengths)

    def backward(params, cache, dys, dstate=None):
        return rnn.backward({**params, "W_h": kept["W_h"]}, cache, dys, dstate)

    central, _ = gradcheck.check_kernel(Wrapped(rnn, backward, forward), methods=NUMERIC)
    assert not central.ok and not central.mismatches and "(a stack of layers), the kernel raised ValueError" in str(central)


def test_step_functions_are_checked_from_none_in_float32():
    def step_forward(params, x_t, state=None):
        state = (np.ones((np.shape(x_t)[0], np.shape(params["W_h"])[0]), x_t.dtype),) if state is None else state
        return rnn.step_forward(params, x_t, state)  # None read as ones, by the step function alone

    kernel = Wrapped(rnn)
    kernel.step_forward, kernel.step_backward = step_forward, rnn.step_backward
    central, _, _ = gradcheck.check_kernel(kernel)  # float32 too: its run is judged
    assert "step by step, with step_forward() and step_backward() from state=None in float32, ys differs by" \
        in str(central), str(central)



def test_state_none_read_as_1e_9_in_float64_fails():
    central, _ = gradcheck.check_kernel(Wrapped(rnn, forward=_none_as(1e-9)), methods=NUMERIC)
    assert not central.ok and "with state=None (meaning zeros) in float64" in str(central), str(central)


def test_state_none_read_as_3e_5_in_float32_alone_fails():
    def forward(params, x, state=None, lengths=None):
        if state is None and np.asarray(x).dtype == np.float32:
            state = (np.full((np.shape(x)[1], np.shape(params["W_h"])[0]), 3e-5, np.float32),)
        return rnn.forward(params, x, state, lengths=lengths)

    central, _, _ = gradcheck.check_kernel(Wrapped(rnn, forward=forward))  # float32 too: its run is judged
    assert not central.ok and "with state=None (meaning zeros) in float32" in str(central), str(central)



def _handwritten_rnn():
    path = pathlib.Path(__file__).parent.parent / "examples" / "handwritten_rnn.py"
    spec = importlib.util.spec_from_file_location("handwritten_rnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_second_backward_on_one_cache_must_agree_with_the_first_or_refuse():
    """A backward() that writes over the forward values its cache holds gives a second caller
    (two losses on one forward) wrong gradients; one that leaves its cache alone, or refuses a
    cache used before (the generated kernels), is right."""
    handwritten = _handwritten_rnn()
    assert all(r.ok for r in gradcheck.check_kernel(handwritten, methods=NUMERIC))
    assert all(r.ok for r in gradcheck.check_kernel(rnn, methods=NUMERIC))  # it refuses the second

    def overwriting(params, cache, dys, dstate=None):
        out = handwritten.backward(params, cache, dys, dstate)
        cache[1][1:] *= 0.5  # h, read as tanh's output by the next call
        return out

    kernel = types.SimpleNamespace(**{name: getattr(handwritten, name) for name in gradcheck.INTERFACE})
    kernel.backward = overwriting
    central, _ = gradcheck.check_kernel(kernel, methods=NUMERIC)
    assert not central.ok and not central.mismatches, str(central)
    assert "with backward() called twice on one forward()'s cache, the second's dW_x differs by" in str(central)

