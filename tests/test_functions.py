"""The functions of the cell language: exported where a script imports them, and computed by the
kernels' code as their mathematical definitions say, their derivatives read off their outputs too."""

import dataclasses
import re

import mpmath
import numpy as np
import pytest
import sympy

import lstm_derive
from lstm_derive import spec
from lstm_derive.functions import FUNCTIONS, SUPPORTED_FUNCTIONS

# Each function and its derivative from its definition, in 50-digit arithmetic, independent of the
# package: (f(a), f'(a)).
DEFINED = {
    "sigmoid": lambda a: (1 / (1 + mpmath.exp(-a)), mpmath.exp(-a) / (1 + mpmath.exp(-a)) ** 2),
    "tanh": lambda a: (mpmath.tanh(a), 1 - mpmath.tanh(a) ** 2),
    "relu": lambda a: (max(a, 0), mpmath.mpf(a > 0)),
    "softplus": lambda a: (mpmath.log1p(mpmath.exp(a)), 1 / (1 + mpmath.exp(-a))),
    "exp": lambda a: (mpmath.exp(a), mpmath.exp(a)),
}
POINTS = np.array([-700.0, -40.0, -5.0, -0.5, -1e-8, -1e-300, 0.0, 1e-300, 1e-8, 0.5, 5.0, 40.0, 700.0])


def test_every_function_of_the_language_is_exported_where_a_script_imports_it():
    """lstm_derive/__init__.py lists its names by hand (reading functions.py's table would import
    SymPy): a function added to the table and not there fails here."""
    for name, function in SUPPORTED_FUNCTIONS.items():
        assert name in lstm_derive.__all__ and getattr(lstm_derive, name) is function
        assert name in spec.__all__ and getattr(spec, name) is function
    assert set(DEFINED) == set(SUPPORTED_FUNCTIONS)  # a new function needs its definition here


def kernel_code(name, source, numpy=None):
    """The function as a kernel computes it: its helper's source, or the NumPy function named."""
    if numpy:
        return eval(numpy, {"np": np})
    scope = {"np": np}
    exec("\n".join(source), scope)
    return scope[name]


def slope_code(f):
    """Its derivative as a kernel computes it, from its output y: the derivative the derivation
    takes (fdiff, in output form), with its slope's helper where it has one ([y > 0] for relu)."""
    a, y = sympy.symbols("a y")
    in_output_form = f.cls(a).diff(a).subs(f.cls(a), y)
    assert in_output_form.free_symbols == {y}, in_output_form  # read off the output alone
    helpers = {f.slope.cls.__name__: kernel_code(f.slope.cls.__name__, f.slope.helper)} if f.slope else {}
    return sympy.lambdify(y, in_output_form, modules=[helpers, "numpy"])


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.name)
def test_the_kernels_code_computes_each_function_and_its_derivative_to_rounding(f):
    assert_computed_to_rounding(f)


NAIVE_SOFTPLUS = ("def softplus(a):", "    return np.log(1 + np.exp(a))")  # 0 for a < -37, inf for a > 709
ONES = ("def positive(y):", "    return np.ones_like(y)")  # relu's derivative 1 everywhere


@pytest.mark.parametrize("name, change", [("softplus", dict(helper=NAIVE_SOFTPLUS)),
                                          ("relu", dict(slope_helper=ONES))])
def test_a_function_computed_naively_or_differentiated_wrong_fails(name, change):
    (f,) = [f for f in FUNCTIONS if f.name == name]
    if "slope_helper" in change:
        change = dict(slope=dataclasses.replace(f.slope, helper=change["slope_helper"]))
    with pytest.raises(AssertionError, match=name):
        assert_computed_to_rounding(dataclasses.replace(f, **change))


def assert_computed_to_rounding(f):
    with np.errstate(over="ignore"):
        y = kernel_code(f.name, f.helper, f.numpy)(POINTS)
        dy = np.broadcast_to(slope_code(f)(y), y.shape)  # exp's derivative is y itself
    for a, value, slope in zip(POINTS, y, dy):
        with mpmath.workdps(50):
            exact, exact_slope = (float(v) for v in DEFINED[f.name](mpmath.mpf(a)))
        assert value == pytest.approx(exact, rel=4e-16, abs=0), (f.name, a)
        # read off the output, the derivative loses what the output's rounding loses: relative to
        # the output's size, not the derivative's, where the two differ (σ'(40) ≈ 4e-18 from σ = 1)
        assert slope == pytest.approx(exact_slope, rel=1e-15, abs=2.3e-16 * max(abs(value), 1e-300)), (f.name, a)


def _first_rounding_to_one(rounds_to_one, step=0.001, top=40):
    """The least a on a grid of step from which rounds_to_one(a) holds, found by bisection (it holds
    from some a on, and not at 0)."""
    low, high = 0, round(top / step)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if rounds_to_one(middle * step) else (middle, high)
    return high * step


def _correctly_rounded_to_one(name, dtype):
    """Whether f(a), rounded correctly to dtype, is 1: 1 - f(a) at most half the gap below 1 (eps/4;
    a tie rounds to 1, whose last bit is even)."""
    def rounds(a):
        with mpmath.workdps(50):
            return 1 - DEFINED[name](mpmath.mpf(float(dtype(a))))[0] <= mpmath.mpf(float(np.finfo(dtype).eps)) / 4
    return rounds


def _computed_to_one(f, dtype):
    """Whether f(a), as the kernels' code computes it in dtype, is 1."""
    code = kernel_code(f.name, f.helper, f.numpy)
    with np.errstate(over="ignore", under="ignore"):
        return lambda a: bool(code(np.array([a], dtype))[0] == 1)


@pytest.mark.parametrize("f", [f for f in FUNCTIONS if f.saturates], ids=lambda f: f.name)
def test_the_saturation_bounds_said_are_those_measured(f):
    """Where σ and tanh round to 1, as the records say it: measured for the function rounded
    correctly, which the first figure gives, and as the kernels' code computes it (1/(1 + exp(-a))
    for σ, np.tanh for tanh), which is that figure or the other one the text names (NumPy's SIMD
    np.tanh reaches 1 in float32 only from 10.0, where a correctly rounded tanh does from 9.01)."""
    said64 = re.search(r"≈ ([\d.]+)", f.saturates[0]).group(1)
    said32 = re.findall(r"\d+(?:\.\d+)?", f.saturates[1])
    for dtype, said in ((np.float64, [said64]), (np.float32, said32)):
        def shown(a, like=said[0]):
            return f"{a:.{len(like.partition('.')[2])}f}"
        assert shown(_first_rounding_to_one(_correctly_rounded_to_one(f.name, dtype))) == said[0], (f.name, dtype)
        assert shown(_first_rounding_to_one(_computed_to_one(f, dtype))) in said, (f.name, dtype)
