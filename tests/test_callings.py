"""A kernel's results are judged as users call it, to rounding, and no closer."""

import pathlib
import textwrap

import numpy as np

from lstm_derive import callings, gradcheck


def test_step_functions_in_float32_are_judged_by_float32s_tolerance(tmp_path, monkeypatch):
    """A multiplicative-integration RNN, right, over 30 steps at weight scale 2: its step functions
    from None in float32 sum in another order than forward(), and the problem amplifies float32's
    rounding to 1.2e-5 of dbx's largest entry, which the tolerance of same-order runs (1e-5) called
    a wrong step function."""
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from test_random_cells import kernel_of

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
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from test_random_cells import kernel_of

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
