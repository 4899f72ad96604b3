"""The checker accepts right gradients and rejects wrong ones, naming the element."""

import functools
import inspect
import re
from dataclasses import replace

import mutants
import numpy as np
import pytest
import seed_lstm
from altered import NUMERIC, Wrapped, float32_only, wrong_bias

from lstm_derive import gradcheck
from lstm_derive.kernels import lstm, lstm_seed, rnn


def reports(kernel, **config):
    return {r.method: r for r in gradcheck.check_kernel(kernel, **{"methods": NUMERIC, **config})}


def test_the_seeds_correct_algorithm_passes():
    for r in reports(seed_lstm.KernelAdapter("correct"), T=3, B=2, D=3, H=3, scale=1.0).values():
        assert r.ok, str(r)


@pytest.mark.parametrize("variant", ["drop_carry", "tanh_on_s"])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_the_two_proposed_fixes_are_rejected_by_both_methods(variant, scale):
    """ds without ds_next; tanh on s in the forward pass only (seed/NOTES.md)."""
    for r in reports(seed_lstm.KernelAdapter(variant), T=3, B=2, D=3, H=3, scale=scale).values():
        assert not r.ok
        assert r.max_error > 1e-2


def test_a_wrong_kernel_is_reported_per_element_by_name():
    wrong = wrong_bias(lstm_seed)
    (r,) = gradcheck.check_kernel(wrong, T=2, B=1, D=2, H=2, methods=("complex",))
    assert not r.ok
    assert {m.name for m in r.mismatches} == {"b"}
    assert [m.index for m in r.mismatches] == [(0,)]
    text = str(r.mismatches[0])
    assert text.startswith("db[0]: analytic ") and ", numeric " in text and ", rel " in text


def test_nan_gradients_fail_and_are_not_hidden():
    analytic = {"W": np.array([1.0, np.nan])}
    numeric = {"W": np.array([1.0, 2.0])}
    r = gradcheck.compare(analytic, numeric, 1e-6)
    assert not r.ok and r.mismatches[0].index == (1,)


def test_a_nan_numeric_gradient_fails():
    """A NaN on the numeric side (a loss that overflowed under a perturbation) is no agreement."""
    r = gradcheck.compare({"W": np.array([1.0, 2.0])}, {"W": np.array([1.0, np.nan])}, 1e-6)
    assert not r.ok and r.mismatches[0].index == (1,)


@pytest.mark.parametrize("methods", [(), "central", ("central", "forward"), iter(())])
def test_check_kernel_refuses_methods_it_cannot_run(methods):
    with pytest.raises(ValueError, match="one or more names"):
        gradcheck.check_kernel(rnn, methods=methods)


def test_check_kernel_refuses_float32_alone_which_passes_a_wrong_gradient():
    """The float32 run compares the kernel with its own float64 run: a doubled db agrees with itself."""
    wrong = wrong_bias(lstm, factor=2.0)
    with pytest.raises(ValueError, match="float32 alone compares a kernel with its own float64 run"):
        gradcheck.check_kernel(wrong, methods=("float32",))
    central, float32 = gradcheck.check_kernel(wrong, methods=("central", "float32"))
    assert not central.ok and float32.ok  # what float32 alone would have passed


def test_methods_may_be_any_iterable_of_names():
    assert [r.method for r in gradcheck.check_kernel(rnn, methods=(m for m in ["central"]))] == ["central"]


def test_a_kernel_whose_parameters_default_to_float32_is_checked_in_float64():
    """random_problem casts what init_params gives: the checks need float64, whatever its default."""
    class Float32Rnn(Wrapped):
        def __init__(self):
            super().__init__(rnn)
            self.init_params = lambda D, H, **kw: rnn.init_params(D, H, **{**kw, "dtype": np.float32})

    p = gradcheck.random_problem(Float32Rnn())
    assert {a.dtype for a in p.params.values()} == {np.dtype(np.float64)}
    assert all(r.ok for r in gradcheck.check_kernel(Float32Rnn()))


def test_check_kernel_refuses_a_problem_not_in_float64():
    p = gradcheck.random_problem(lstm).with_dtype(np.float32)
    with pytest.raises(ValueError, match=r"float32: pass problem.with_dtype\(np.float64\)"):
        gradcheck.check_kernel(lstm, problem=p)


def test_errors_are_relative_to_the_arrays_largest_entry():
    analytic = {"W": np.array([1.0, 1e-9])}
    assert gradcheck.compare(analytic, {"W": np.array([1.0, 1.5e-9])}, 1e-6).ok
    assert not gradcheck.compare(analytic, {"W": np.array([1.0 + 2e-6, 1e-9])}, 1e-6).ok


@pytest.mark.parametrize("method, off, ok", [("complex", 1e-9, False), ("complex", 3e-10, False),
                                              ("complex", 3e-11, True), ("complex", 1e-12, True),
                                              ("central", 1e-5, False), ("central", 2e-6, False),
                                              ("central", 5e-7, True), ("central", 1e-9, True)])
def test_the_tolerances_reject_small_errors_and_accept_rounding(method, off, ok):
    """The checker's own tolerances, pinned: the largest bias gradient off by `off` of itself."""
    (r,) = gradcheck.check_kernel(wrong_bias(lstm_seed, 1 + off, largest=True), T=3, B=2, D=3, H=3,
                                  scale=1.0, methods=(method,))
    assert r.ok == ok, str(r)


class Cube:
    """ys[t] = (x[t] w^T)^3, with a tiny w: the gradient 3 (x w)^2 x is small beside the third
    derivative 6 x^3, where a second-order central difference is off by h^2 x^3 (relative 1e-2
    here). `factor` scales the returned gradient of w."""

    STATES, PARAMS = ("h",), ("w",)

    def __init__(self, factor=1.0):
        self.factor = factor

    def forward(self, params, x, state):
        ys = (x @ params["w"].T) ** 3
        return ys, (ys[-1],), (params, x)

    def backward(self, params, cache, dys, dstate):
        _, x = cache
        dys = dys.copy()
        dys[-1] += dstate[0]
        da = 3 * (x @ params["w"].T) ** 2 * dys
        dw = np.einsum("tbh,tbd->hd", da, x) * self.factor
        return {"w": dw}, da @ params["w"], (np.zeros_like(dstate[0]),)


def cube_problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 1))
    return gradcheck.Problem({"w": np.array([[4e-5]])}, x, (np.zeros((1, 1)),),
                             rng.standard_normal((2, 1, 1)), (rng.standard_normal((1, 1)),))


def test_central_differences_resolve_a_gradient_small_beside_its_third_derivative():
    p = cube_problem()
    for r in gradcheck.check_kernel(Cube(), problem=p):
        assert r.ok, str(r)
    (r,) = gradcheck.check_kernel(Cube(1 + 1e-5), problem=p, methods=("central",))
    assert not r.ok and [m.name for m in r.mismatches] == ["w"]


class SaturatedCube:
    """ys[t] = tanh((x[t] w^T)^3) at (x w)^3 = -12.4: the output-form 1 - y**2 (7e-11) carries
    eps of absolute rounding, times the chain factor 3 (x w)^2 = 16, so the float64 gradient is
    off by 2e-6 of itself with a right formula. `factor` scales the returned gradient of w;
    `narrow` computes the backward pass in float32 (a precision lost, in any dtype)."""

    STATES, PARAMS = ("h",), ("w",)

    def __init__(self, factor=1.0, narrow=False):
        self.factor, self.narrow = factor, narrow

    def forward(self, params, x, state):
        ys = np.tanh((x @ params["w"].T) ** 3)
        return ys, (ys[-1],), (params, x, ys)

    def backward(self, params, cache, dys, dstate):
        _, x, ys = cache
        dys = dys.copy()
        dys[-1] += dstate[0]
        work = np.float32 if self.narrow else ys.dtype
        u = (x @ params["w"].T).astype(work)
        da = (dys.astype(work) * (1 - ys.astype(work) ** 2) * 3 * u ** 2).astype(ys.dtype)
        dw = np.einsum("tbh,tbd->hd", da, x) * self.factor
        return {"w": dw}, da @ params["w"], (np.zeros_like(dstate[0]),)


def saturated_problem():
    return gradcheck.Problem({"w": np.array([[0.85297765]])}, np.array([[[-2.71199551]]]), (np.zeros((1, 1)),),
                             np.array([[[0.7]]]), (np.array([[0.0]]),))


def test_a_gradient_off_by_its_own_rounding_alone_is_judged_in_extended_precision():
    p = saturated_problem()
    wide = gradcheck.wide_gradients(SaturatedCube(), p)
    if wide is None:
        pytest.skip("np.longdouble is float64 here")
    analytic, exact = gradcheck.analytic_gradients(SaturatedCube(), p), gradcheck.complex_step(SaturatedCube(), p)
    assert abs(analytic["w"][0, 0] / exact["w"][0, 0] - 1) > 1e-7  # the float64 gradient alone fails
    (r,) = gradcheck.check_kernel(SaturatedCube(), problem=p, methods=("complex",))
    assert r.ok and r.widened == 1 and 1e-7 < r.rounding < 1e-5, str(r)
    assert "judged in extended precision" in str(r)


@pytest.mark.parametrize("kernel, wrong", [(SaturatedCube(factor=1 + 3e-6), ["w"]),
                                           (SaturatedCube(narrow=True), ["w", "x"])],
                         ids=["off by 3e-6", "float32 inside"])
def test_extended_precision_excuses_no_wrong_formula_and_no_lost_precision(kernel, wrong):
    """3e-6: beyond the float64 rounding (1e-6) and the complex step's floor here (7e-7)."""
    (r,) = gradcheck.check_kernel(kernel, problem=saturated_problem(), methods=("complex",))
    assert not r.ok and [m.name for m in r.mismatches] == wrong, str(r)


def test_a_report_lists_the_worst_elements_first():
    """Among many failing elements, the one far off is shown, not the first 20 in array order."""
    analytic = {"W": np.concatenate([np.full(30, 1.0 + 1e-4), [1.5]])}
    r = gradcheck.compare(analytic, {"W": np.ones(31)}, 1e-6)
    lines = str(r).splitlines()
    assert lines[0].endswith("31 elements fail, worst first (rel: the error over its array's largest entry):")
    assert lines[1].startswith("  dW[30]: analytic 1.5, numeric 1, rel 3.3e-01")
    assert lines[-2:] == ["  ... and 11 more", "  per array, the largest error: dW 3.3e-01"]
    assert str(gradcheck.compare({"W": np.array([2.0])}, {"W": np.array([1.0])}, 1e-6)).splitlines()[0].endswith(
        "1 element fails, worst first (rel: the error over its array's largest entry):")


def test_a_float64_path_off_by_more_than_rounding_is_not_excused_by_the_extended_run():
    """A kernel whose float64 path alone has a slip (5e-6): the extended-precision run agrees with
    the numbers, but the float64 gradient is off by far more than rounding, so both methods fail."""
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = lstm.backward(params, cache, dys, dstate)
        if dx.dtype == np.float64:
            grads["W_h"] = grads["W_h"] * (1 + 5e-6)
        return grads, dx, dstate0

    for r in gradcheck.check_kernel(Wrapped(lstm, backward), methods=NUMERIC):
        assert not r.ok and not r.widened and {m.name for m in r.mismatches} == {"W_h"}, str(r)


def test_a_backward_that_writes_into_its_arguments_is_judged_on_the_problems_loss():
    """dys[-1] += dh_T in place, a common hand-written pattern: the checker hands over copies."""
    def backward(params, cache, dys, dstate=None):
        dys[-1] += dstate[0]
        return rnn.backward(params, cache, dys, None)

    for r in gradcheck.check_kernel(Wrapped(rnn, backward)):
        assert r.ok, str(r)


def _float_buffers(params, x, state=None):
    """rnn's forward with its inputs cast to float64: what a kernel with np.zeros buffers does."""
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            real = lambda a: np.asarray(a).real.astype(np.float64)  # noqa: E731
            return rnn.forward({k: real(v) for k, v in params.items()}, real(x), tuple(map(real, state)))


def _refuses_complex(params, x, state=None):
    if np.iscomplexobj(x) or any(np.iscomplexobj(v) for v in params.values()):
        raise TypeError("ufunc 'logaddexp' not supported for the input types")
    return rnn.forward(params, x, state)


@pytest.mark.parametrize("forward, why", [(_float_buffers, "no imaginary part reaches the loss"),
                                          (_refuses_complex, "in complex arithmetic, the kernel raised TypeError: ufunc")],
                         ids=["drops the imaginary part", "raises"])
def test_a_kernel_without_complex_numbers_is_judged_by_central_differences_and_the_complex_step_says_why(forward, why):
    central, complex_ = gradcheck.check_kernel(Wrapped(rnn, forward=forward), methods=NUMERIC)
    assert central.ok, str(central)
    assert not complex_.ok and not complex_.mismatches and why in str(complex_), str(complex_)
    assert 'methods=("central", "float32") (on the command line, --methods central float32)' in str(complex_)


def test_a_kernel_that_raises_in_complex_numbers_loses_no_element_to_overflow():
    """lost counts the elements whose complex step overflowed; a kernel that raised judged none."""
    _, complex_ = gradcheck.check_kernel(Wrapped(rnn, forward=_refuses_complex), methods=NUMERIC)
    assert complex_.unjudged and complex_.lost == 0, str(complex_)


def test_a_complex_step_that_overflows_cannot_judge_and_says_so(monkeypatch):
    """At weight scale 100 the gates' exp overflows in complex128 while the real loss is finite:
    central differences pass; the complex step takes those elements again in clongdouble, where
    exp reaches farther, and where that is no wider (some platforms) it names the elements it
    cannot judge."""
    problem = dict(T=4, B=2, D=3, H=4, seed=2, scale=100.0, methods=NUMERIC)
    if gradcheck.WIDE:
        central, complex_ = gradcheck.check_kernel(lstm, **problem)
        assert central.ok and complex_.ok and not complex_.lost, str(complex_)
    monkeypatch.setattr(gradcheck, "_again_in_clongdouble", lambda kernel, p, numeric, lost: (numeric, lost))
    central, complex_ = gradcheck.check_kernel(lstm, **problem)
    assert central.ok, str(central)
    assert not complex_.ok and not complex_.mismatches and complex_.lost, str(complex_)
    assert str(complex_).startswith("complex: cannot judge ") and "|Re a| of about 709, or 354" in str(complex_)


def test_gradients_of_the_wrong_shape_or_missing_are_named():
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        grads["b_x"] = grads["b_x"][np.newaxis]
        return grads, None, dstate0

    (r,) = gradcheck.check_kernel(Wrapped(rnn, backward), methods=("central",))
    text = str(r)
    assert not r.ok and "wrong shape or dtype: db_x: shape (1, 4), expected a float array of shape (4,)" in text
    assert "dx: NoneType, expected a float array of shape (3, 2, 3)" in text, text

    def integers(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        grads["b_h"] = np.zeros(grads["b_h"].shape, int)
        return grads, dx, dstate0

    (r,) = gradcheck.check_kernel(Wrapped(rnn, integers), methods=("complex",), sample=3)
    assert not r.ok and "db_h: dtype int64, expected a float array of shape (4,)" in str(r), str(r)

    def no_bias(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        del grads["b_h"]
        return grads, dx, dstate0

    with pytest.raises(ValueError, match=r"^backward\(\) returned no gradient for \['b_h'\]"):
        gradcheck.check_kernel(Wrapped(rnn, no_bias))
    with pytest.raises(ValueError, match=r"^backward\(\) returned 2 initial-state gradient\(s\); STATES names 1"):
        gradcheck.check_kernel(Wrapped(rnn, lambda *a: (*rnn.backward(*a)[:2], (None, None))))
    for methods in ("central", ("centrl",)):
        with pytest.raises(ValueError, match=r"^methods: expected a tuple of one or more names from \('central', 'complex', 'float32'\)"):
            gradcheck.check_kernel(rnn, methods=methods)


def test_a_gradient_transposed_is_named_as_of_the_wrong_shape_and_left_out_of_the_directions_check():
    """dW_x (H, D) returned as (D, H), an outer product the wrong way round: its shape is named, and
    the check along a random direction, which cannot multiply it by the direction's (H, D) part,
    leaves it to the element-wise comparison."""
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        return {**grads, "W_x": grads["W_x"].T}, dx, dstate0

    (r,) = gradcheck.check_kernel(Wrapped(rnn, backward), D=3, H=4, methods=("central",))
    assert not r.ok and not r.directional
    assert "wrong shape or dtype: dW_x: shape (3, 4), expected a float array of shape (4, 3)" in str(r), str(r)


def test_a_sample_of_elements_judges_a_larger_problem_and_says_so():
    for r in gradcheck.check_kernel(lstm, T=20, B=3, D=8, H=10, sample=15, methods=NUMERIC):
        assert r.ok, str(r)
        judged, total = r.sampled
        assert 6 * 15 <= judged <= 6 * 16 and total == 40 * 8 + 40 * 10 + 40 + 20 * 3 * 8 + 2 * 3 * 10
        assert f"over a sample of {judged} of {total} elements, ok" in str(r)


def test_a_sample_always_holds_each_arrays_largest_entry_so_a_wrong_one_fails():
    """One element wrong, the largest bias gradient: a sample of one element per array finds it."""
    for method in ("central", "complex"):
        (r,) = gradcheck.check_kernel(wrong_bias(lstm, 1 + 1e-4, largest=True), T=6, B=2, D=4, H=5, sample=1,
                                      methods=(method,))
        assert not r.ok and [m.name for m in r.mismatches] == ["b"], str(r)


@pytest.mark.parametrize("sample", [0, -3, 2.5, True, "10"])
def test_a_sample_is_a_whole_number(sample):
    with pytest.raises(ValueError, match=r"^sample: expected a whole number of elements of at least 1, or None"):
        gradcheck.check_kernel(rnn, sample=sample)


@pytest.mark.parametrize("sample", [None, 1, 20])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_entry_fails_and_hides_no_other_error(bad, sample):
    """One inf or nan in an array whose every other entry has its sign flipped: the scale is
    taken from the finite entries, so the flipped ones fail too, and so does the bad one, sampled
    or not."""
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = lstm.backward(params, cache, dys, dstate)
        W_h = -grads["W_h"]
        W_h.flat[-1] = bad
        grads["W_h"] = W_h
        return grads, dx, dstate0

    for r in gradcheck.check_kernel(Wrapped(lstm, backward), sample=sample, methods=NUMERIC):
        failing = [m.index for m in r.mismatches if m.name == "W_h"]
        assert not r.ok and (15, 3) in failing and len(failing) > 1, str(r)


def test_a_forward_that_overflows_judges_nothing_and_says_so():
    """Outputs of inf or nan make a loss with no gradient: every method says so, and none passes;
    the CLI shows no error figure for it (an error of 0 would read as a pass)."""
    def forward(params, x, state=None):
        ys, final, cache = rnn.forward(params, x, state)
        return np.where(np.arange(len(ys))[:, None, None] >= 2, np.inf, ys), final, cache

    for r in gradcheck.check_kernel(Wrapped(rnn, forward=forward), T=4):
        assert not r.ok and not r.mismatches, str(r)
        assert "forward()'s outputs (from step 2 of 0-3) hold inf or nan" in str(r)
        assert r.errors == {}
    p = gradcheck.random_problem(rnn, T=3)
    p.x[1, 0, 0] = np.nan
    for r in gradcheck.check_kernel(rnn, problem=p):
        assert not r.ok and "outputs (from step 1 of 0-2) and final h hold inf or nan" in str(r), str(r)
        assert r.at_any_scale and "at weights 1000 times smaller too" in str(r)  # nan in x: no scale avoids it

    def overflowing(params, x, state=None):  # inf where the weights exceed 1e-2, as exp(a) where they are large
        ys, final, cache = rnn.forward(params, x, state)
        large = max(np.abs(a).max() for a in params.values()) > 1e-2
        return (ys + np.inf if large else ys), final, cache

    for r in gradcheck.check_kernel(Wrapped(rnn, forward=overflowing), T=3):
        assert r.overflowed and not r.at_any_scale and "a smaller weight scale tells" in str(r), str(r)


def test_a_float64_slip_of_a_few_percent_in_a_tiny_saturated_array_is_not_excused():
    """rnn at weight scale 40: dh0 is 2e-10 beside |L| = 60. The extended-precision run agrees with
    the numbers; a float64-only slip of 5% in dh0 is far beyond rounding and fails the complex step."""
    p = gradcheck.random_problem(rnn, T=8, scale=40.0)

    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        return grads, dx, (dstate0[0] * 1.05,) if dx.dtype == np.float64 else dstate0

    (r,) = gradcheck.check_kernel(Wrapped(rnn, backward), problem=p, methods=("complex",))
    assert not r.ok and {m.name for m in r.mismatches} == {"h0"}, str(r)
    (right,) = gradcheck.check_kernel(rnn, problem=p, methods=("complex",))
    assert right.ok, str(right)


def test_a_float64_slip_of_a_hundred_rounding_units_is_not_excused(monkeypatch):
    """The excuse is capped at ROUNDING_UNITS = 50 units of eps*max(|L|, the array's largest entry):
    a float64-only slip of 120 units in the same saturated dh0 fails, and would pass with a cap of 400."""
    p = gradcheck.random_problem(rnn, T=8, scale=40.0)
    dh0 = gradcheck.analytic_gradients(rnn, p)["h0"]
    unit = gradcheck.EPS * max(gradcheck.loss_magnitude(rnn, p), float(np.max(np.abs(dh0))))

    def backward(params, cache, dys, dstate=None):
        grads, dx, (dh,) = rnn.backward(params, cache, dys, dstate)
        if dx.dtype == np.float64:
            dh = dh.copy()
            dh.flat[np.argmax(np.abs(dh))] += 120 * unit
        return grads, dx, (dh,)

    (r,) = gradcheck.check_kernel(Wrapped(rnn, backward), problem=p, methods=("complex",))
    assert not r.ok and {m.name for m in r.mismatches} == {"h0"}, str(r)
    monkeypatch.setattr(gradcheck, "ROUNDING_UNITS", 400)
    (loose,) = gradcheck.check_kernel(Wrapped(rnn, backward), problem=p, methods=("complex",))
    assert loose.ok, str(loose)


def test_a_forward_that_writes_its_final_state_into_the_given_one_is_judged_right():
    """A stateful pattern: forward() copies the final state into the state it was given."""
    def forward(params, x, state=None):
        ys, final, cache = rnn.forward(params, x, state)
        state[0][...] = final[0]
        return ys, final, cache

    for r in gradcheck.check_kernel(Wrapped(rnn, forward=forward)):
        assert r.ok, str(r)


def test_params_that_are_not_params_are_refused():
    fewer = Wrapped(rnn)
    fewer.PARAMS = ("W_x", "b_x", "W_h")
    with pytest.raises(ValueError, match=r"^the problem's parameters \['W_h', 'W_x', 'b_h', 'b_x'\] are not PARAMS"):
        gradcheck.check_kernel(fewer)


def test_the_check_along_a_random_direction_sees_a_forward_the_complex_step_cannot():
    """A forward with a term through .real (not analytic: the complex step sees no derivative
    through it) and a backward that forgets that term: element by element the complex step
    agrees with the wrong backward; the whole gradient along one direction does not."""
    def forward(params, x, state=None):
        ys, final, cache = rnn.forward(params, x, state)
        return ys + 0.1 * x.sum(axis=-1, keepdims=True).real, final, cache

    (r,) = gradcheck.check_kernel(Wrapped(rnn, forward=forward), methods=("complex",))
    assert not r.ok and not r.mismatches and "along a random direction through every array at once" in str(r), str(r)


def test_the_check_along_a_random_direction_sees_what_a_sample_leaves_out():
    """One column of dW_h zeroed: a sample of one element per array (and its largest) misses it;
    the check along a random direction does not."""
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = lstm.backward(params, cache, dys, dstate)
        grads["W_h"] = grads["W_h"].copy()
        grads["W_h"][:, 3] = 0
        return grads, dx, dstate0

    reports = gradcheck.check_kernel(Wrapped(lstm, backward), T=6, B=2, D=4, H=8, sample=1, seed=3, methods=NUMERIC)
    for r in reports:
        assert not any(m.index[1] == 3 for m in r.mismatches)  # the sample itself missed the column
    # said once, by central differences' report (the direction's check is one), not as the complex step's
    central, complex_ = reports
    assert not central.ok and "along a random direction" in str(central), str(central)
    assert "along a random direction" not in str(complex_), str(complex_)


def test_a_gradient_with_an_imaginary_part_shows_it():
    r = gradcheck.compare({"W": np.array([1.0, 2.0 + 1e-3j])}, {"W": np.array([1.0, 2.0])}, 1e-6)
    assert not r.ok and str(r.mismatches[0]) == "dW[1]: analytic 2+0.001j, numeric 2, rel 5.0e-04"


def test_a_kernel_lacking_part_of_the_interface_is_refused_naming_what_it_lacks():
    lacking = Wrapped(rnn)
    del lacking.backward
    with pytest.raises(ValueError, match=r"has no backward: a kernel defines forward\(params, x, state\)"):
        gradcheck.check_kernel(lacking)
    p = gradcheck.random_problem(rnn)
    del lacking.init_params  # a given problem needs no init_params
    lacking.backward = rnn.backward
    assert all(r.ok for r in gradcheck.check_kernel(lacking, problem=p))


def test_a_final_state_that_is_no_tuple_of_states_is_refused_with_what_to_return():
    """Returned bare, the final h would be read row by row as if each row were a state."""
    def forward(params, x, state=None):
        ys, (h,), cache = rnn.forward(params, x, state)
        return ys, h, cache

    with pytest.raises(ValueError, match=r"returned a ndarray as its final state: .*\(return \(h,\), not h\)"):
        gradcheck.check_kernel(Wrapped(rnn, forward=forward))

    def short(params, x, state=None):
        ys, final, cache = rnn.forward(params, x, state)
        return ys[1:], final, cache

    with pytest.raises(ValueError, match=r"returned ys of shape \(2, 2, 4\): expected \(T, B, H\) = \(3, 2, 4\)"):
        gradcheck.check_kernel(Wrapped(rnn, forward=short))


@pytest.mark.parametrize("written", ["x", "W_h"])
def test_a_kernel_that_writes_into_x_or_a_parameter_fails_naming_it(written):
    """Written into, x or a parameter changes the problem the checks judge the kernel on: every
    gradient would look slightly off. (The state, dys and dstate it may write into: see above.)"""
    def forward(params, x, state=None):
        out = rnn.forward(params, x, state)
        target = x if written == "x" else params[written]
        target *= 0.5
        return out

    for r in gradcheck.check_kernel(Wrapped(rnn, forward=forward)):
        assert not r.ok and f"forward() wrote into {written}" in str(r), str(r)
        assert "must leave its caller's x and parameters as they were" in str(r)

    def backward(params, cache, dys, dstate=None):
        out = rnn.backward(params, cache, dys, dstate)
        params["b_h"][0] += 1.0
        return out

    for r in gradcheck.check_kernel(Wrapped(rnn, backward)):
        assert not r.ok and r.written == ["backward() wrote into b_h"], str(r)


def test_central_differences_failing_where_the_complex_step_agrees_is_said_to_be_their_limit(monkeypatch):
    """A right kernel on a long recurrence at the edge of chaos: at their step, central differences
    miss by a few times their tolerance, the complex step agrees; judged at that step alone, the
    verdict stays a failure, with the likely cause; at smaller steps, those elements pass."""
    central, complex_ = gradcheck.check_kernel(rnn, T=50, B=4, D=16, H=32, scale=1.0, sample=20, methods=NUMERIC)
    assert central.ok and central.smaller_steps and complex_.ok, str(central)
    assert "judged at a tenth or a hundredth of the step" in str(central)
    monkeypatch.setattr(gradcheck, "SMALLER_STEPS", ())
    central, complex_ = gradcheck.check_kernel(rnn, T=50, B=4, D=16, H=32, scale=1.0, sample=20, methods=NUMERIC)
    assert central.mismatches and not complex_.mismatches, str(central)
    assert "the complex step, exact to rounding, agrees with the kernel element by element" in str(central)


def test_a_failing_report_gives_each_arrays_largest_error_and_the_steps_of_x_that_fail():
    """No gradient carried back from later steps: dx is right at the last step alone."""
    kernel = seed_lstm.KernelAdapter("drop_carry")
    p = gradcheck.random_problem(kernel, T=4, B=2, D=3, H=3)
    p.dstate = tuple(np.zeros_like(d) for d in p.dstate)  # nothing to carry into the last step either
    (r,) = gradcheck.check_kernel(kernel, problem=p, methods=("complex",))
    last = str(r).splitlines()[-1]
    assert last.startswith("  per array, the largest error: ") and "dx " in last, str(r)
    assert "(at steps 0-2 of 0-3)" in last, last


def test_float32_judges_the_kernels_float32_run_against_its_float64_one():
    """A float64 buffer in a float32 kernel (np.zeros without a dtype) makes its results float64;
    a path taken only in float32 can be wrong where float64's is right; the float64 path alone
    judges neither."""
    def upcast(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        return {k: g + np.zeros(g.shape) for k, g in grads.items()}, dx, dstate0

    central, complex_, float32 = gradcheck.check_kernel(Wrapped(rnn, upcast))
    assert central.ok and complex_.ok and not float32.ok, str(float32)
    assert "float32: wrong shape or dtype: dW_x: float64 from float32 input, expected float32" in str(float32)

    def slip(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        if dx.dtype == np.float32:
            grads["b_h"] = grads["b_h"] * np.float32(1.01)
        return grads, dx, dstate0

    central, complex_, float32 = gradcheck.check_kernel(Wrapped(rnn, slip))
    assert central.ok and complex_.ok and not float32.ok, str(float32)
    assert {m.name for m in float32.mismatches} == {"b_h"} and "db_h[0]: float32 " in str(float32)
    assert ", float64 " in str(float32.mismatches[0])
    # what a failing array is of the other (1.01 times it) is said of a formula, against a numeric gradient
    assert not float32.likely and "numeric gradient" not in str(float32), str(float32)

    def float64_only(params, x, state=None):
        if np.asarray(x).dtype == np.float32:
            raise TypeError("this kernel runs in float64")
        return rnn.forward(params, x, state)

    *_, float32 = gradcheck.check_kernel(Wrapped(rnn, forward=float64_only))
    assert not float32.ok and "on float32 input, the kernel raised TypeError" in str(float32)
    assert "methods=(\"central\", \"complex\"), or --methods central complex, leaves float32 out" in str(float32)


def test_float32_passes_the_packaged_kernels_with_room_to_spare():
    """The tolerance's margin: every packaged kernel's float32 run, on the CLI's saturating problem."""
    import importlib

    from lstm_derive.kernels import CELLS
    for name in CELLS:
        _, r = gradcheck.check_kernel(importlib.import_module(f"lstm_derive.kernels.{name}"), T=3, B=2, D=2, H=3,
                                      seed=1, scale=3.0, methods=("central", "float32"))
        assert r.ok and r.max_error < gradcheck.TOLERANCE["float32"] / 10, (name, str(r))


def test_gradients_rounded_to_float32_in_a_float64_run_are_named_as_such():
    def narrowed(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        return {**grads, "W_h": grads["W_h"].astype(np.float32)}, dx, dstate0

    for r in gradcheck.check_kernel(Wrapped(rnn, narrowed), methods=NUMERIC):
        assert not r.ok and "dW_h: float32 from float64 input, expected float64" in str(r), str(r)
    assert all(r.ok for r in gradcheck.check_kernel(rnn, methods=NUMERIC))


def _edited_kernel(module, old, new):
    """The module's source with old (which must occur) replaced by new, loaded as a module."""
    source = inspect.getsource(module)
    assert old in source, old
    return mutants.load(mutants.Mutant(module.CELL, "edit", 0, old, new, source.replace(old, new)))


@pytest.mark.parametrize("old, new", [
    # forward: the rows of an ended sequence go on running
    ("np.copyto(h, h_prev, where=ended[t])", "pass"),
    # backward: their adjoints are not carried across the steps past their end
    ("dc_next = np.where(ended[t], dc_passing, dc_next)", "pass"),
    # backward: carried across, but what the steps past the end gave them is kept (dW gets its share)
    ("np.copyto(dpre_W_seq[t], 0, where=ended[t])", "pass"),
    # backward: the dys past a sequence's end are dropped, not given to the state it kept
    ("dh_next = np.where(ended[t], dh, dh_next)", "dh_next = np.where(ended[t], dh - dys[t], dh_next)"),
    # both: each sequence runs one step too many, forward() and backward() agreeing (the gradients
    # pass; each sequence against it run alone does not)
    ("ended = (np.arange(len(x))[:, np.newaxis] >= lengths)", "ended = (np.arange(len(x))[:, np.newaxis] > lengths)"),
])
def test_a_kernel_that_mishandles_lengths_fails_the_check_with_lengths_alone(old, new):
    wrong = _edited_kernel(lstm, old, new)
    assert all(r.ok for r in gradcheck.check_kernel(wrong, T=4, B=3, seed=2, methods=("complex",)))
    numeric = ("central", "complex")  # float32 judges the kernel by its own float64 run, wrong alike
    central, _ = gradcheck.check_kernel(wrong, T=4, B=3, seed=2, methods=numeric, lengths=(4, 1, 0))
    assert not central.ok, str(central)  # the check of each sequence run alone is said there, once


def test_sequences_that_end_where_they_should_are_said_to_differ_in_nothing():
    """sequences_alone gives "" for a right kernel, as it does for a problem without lengths."""
    p = gradcheck.random_problem(lstm, T=4, B=3, lengths=[4, 2, 0])
    assert gradcheck.sequences_alone(lstm, p) == ""


def test_a_sequence_that_raises_run_alone_is_named_with_the_error():
    def batch_of_many(params, x, state=None, lengths=None):
        if x.shape[1] == 1:
            raise ValueError("a batch of one")
        return lstm.forward(params, x, state, lengths)
    p = gradcheck.random_problem(lstm, T=4, B=2, lengths=[4, 2])
    assert gradcheck.sequences_alone(Wrapped(lstm, forward=batch_of_many), p) == (
        "sequence 0 (length 4) run alone raised ValueError: a batch of one")


def test_lengths_for_a_kernel_that_takes_none_are_refused():
    with pytest.raises(ValueError, match="lengths: this kernel's forward\\(\\) takes no lengths"):
        gradcheck.check_kernel(seed_lstm, lengths=(3, 1))


def test_a_sequence_ended_at_the_wrong_step_is_named():
    wrong = _edited_kernel(lstm, "ended = (np.arange(len(x))[:, np.newaxis] >= lengths)",
                           "ended = (np.arange(len(x))[:, np.newaxis] > lengths)")
    (report,) = gradcheck.check_kernel(wrong, T=4, B=3, seed=2, methods=("complex",), lengths=(4, 1, 0))
    assert report.errors and max(report.errors.values()) < 1e-12  # the gradients agree with forward()
    assert "complex: with lengths, sequence 1 (length 1): its final h, in the batch and run alone, differ by" in str(report)


def test_a_problem_of_no_steps_is_checked():
    """T = 0: the gradients are those of the final state alone, which is the initial one; an
    initial state's gradient off by 1% there fails, and only it."""
    for r in gradcheck.check_kernel(lstm, T=0, B=2, D=2, H=2):
        assert r.ok, str(r)

    def backward(params, cache, dys, dstate=None):
        grads, dx, (dh0, dc0) = lstm.backward(params, cache, dys, dstate)
        return grads, dx, (dh0 * 1.01, dc0)
    for r in gradcheck.check_kernel(Wrapped(lstm, backward), T=0, B=2, D=2, H=2, methods=NUMERIC):
        assert not r.ok and {m.name for m in r.mismatches} == {"h0"}, str(r)


def test_a_problem_whose_initial_state_is_none_is_checked_from_zeros():
    """None for a state means zeros to a kernel; the checker perturbs those zeros."""
    from dataclasses import replace
    p = gradcheck.random_problem(lstm, T=2, B=2, D=2, H=2)
    reports = gradcheck.check_kernel(lstm, problem=replace(p, state=(None, p.state[1])))
    assert all(r.ok for r in reports), "\n".join(map(str, reports))


# -- the checks' own limits: a kink within the step, the float32 forward ----------------------------

KINK = dict(T=12, B=1, D=1, H=5, seed=34, scale=0.1)  # a relu pre-activation 9e-6 from 0: inside the stencil


def test_a_kink_within_the_step_is_judged_at_a_smaller_one_where_a_wrong_gradient_still_fails(monkeypatch):
    from lstm_derive.kernels import rnn_relu

    def wrong_b_x(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn_relu.backward(params, cache, dys, dstate)
        return {**grads, "b_x": grads["b_x"] * 1.001}, dx, dstate0

    (central,) = gradcheck.check_kernel(rnn_relu, methods=("central",), **KINK)
    assert central.ok and central.smaller_steps == 2, str(central)
    (wrong,) = gradcheck.check_kernel(Wrapped(rnn_relu, wrong_b_x), methods=("central",), **KINK)
    assert not wrong.ok and {m.name for m in wrong.mismatches} == {"b_x"}, str(wrong)
    monkeypatch.setattr(gradcheck, "SMALLER_STEPS", ())  # the full step alone: the kink fails a right kernel
    (central,) = gradcheck.check_kernel(rnn_relu, methods=("central",), **KINK)
    assert {m.name for m in central.mismatches} == {"b_x", "b_h"}, str(central)


@pytest.mark.parametrize("change, said", [
    (dict(change_forward=lambda ys, final, cache: (np.zeros_like(ys), final, cache)),
     "forward()'s ys in float32 differs from the float64 run's by 1.0e+00"),
    (dict(change_forward=lambda ys, final, cache: (ys, (final[0] * np.float32(1.01), final[1]), cache)),
     "forward()'s final h in float32 differs from the float64 run's by"),
    (dict(change_forward=lambda ys, final, cache: (ys, (final[0].astype(np.float64), final[1]), cache)),
     "float32: wrong shape or dtype: forward()'s final h: float64 from float32 input, expected float32"),
    (dict(change_backward=lambda grads, dx, d0: ({**grads, "b": grads["b"].astype(np.float16)}, dx, d0)),
     "db: float16 from float32 input, expected float32"),
    (dict(change_backward=lambda grads, dx, d0: (grads, dx.astype(np.complex64), d0)),
     "dx: complex64 from float32 input, expected float32"),
])
def test_the_float32_run_judges_outputs_values_and_every_dtype(change, said):
    central, r = gradcheck.check_kernel(float32_only(lstm, **change), methods=("central", "float32"))
    assert central.ok and not r.ok and said in str(r), str(r)


def test_a_gradient_of_another_dtype_than_float64_input_fails():
    def complex_db(params, cache, dys, dstate=None):
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        return {**grads, "b_x": grads["b_x"].astype(np.complex128)}, dx, dstate0

    central, _ = gradcheck.check_kernel(Wrapped(rnn, complex_db), methods=NUMERIC)
    assert "db_x: complex128 from float64 input, expected float64" in str(central)


def test_the_smaller_steps_rounding_cannot_pass_a_gradient_just_outside_the_tolerance():
    """lstm over 30 steps at a tiny scale: at a hundredth of the step, central differences' rounding
    in dh0 reaches 1.1e-6 of its largest entry; an element wrong by 1.5e-6 in that direction must
    still fail (it passed when the retry judged the smaller step's value as it is)."""
    config = dict(T=30, B=1, D=1, H=2, seed=3, scale=0.1)
    p = gradcheck.random_problem(lstm, **config)
    analytic = gradcheck.analytic_gradients(lstm, p)["h0"]
    unit = gradcheck.EPS * gradcheck.loss_magnitude(lstm, p)
    scale = max(np.max(np.abs(analytic)), gradcheck.FLOORS["central"] * unit / gradcheck.TOLERANCE["central"])
    noise = (gradcheck.central_differences(lstm, p, None, 100)["h0"] - analytic) / scale
    i = np.unravel_index(np.argmax(np.abs(noise)), noise.shape)
    assert abs(noise[i]) > 5e-7  # the rounding the retry must count against it

    def backward(params, cache, dys, dstate=None):
        grads, dx, (dh0, dc0) = lstm.backward(params, cache, dys, dstate)
        dh0 = np.array(dh0)
        dh0[i] += 1.5e-6 * np.sign(noise[i]) * scale
        return grads, dx, (dh0, dc0)

    (central,) = gradcheck.check_kernel(Wrapped(lstm, backward), methods=("central",), **config)
    assert not central.ok and {m.name for m in central.mismatches} == {"h0"}, str(central)


# -- the tolerances and floors, each pinned by a kernel just wrong enough to fail it ------------------


def test_the_check_along_a_random_direction_sees_a_small_error_a_sample_leaves_out():
    """dW_h's column 3 off by 0.1%: 4.9e-6 of the gradient's norm along the direction, above the
    central tolerance; the sample of one element per array misses the column."""
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = lstm.backward(params, cache, dys, dstate)
        grads["W_h"] = grads["W_h"].copy()
        grads["W_h"][:, 3] *= 1.001
        return grads, dx, dstate0

    central, _ = gradcheck.check_kernel(Wrapped(lstm, backward), T=6, B=2, D=4, H=8, sample=1, seed=3, methods=NUMERIC)
    assert not central.mismatches and "along a random direction" in str(central), str(central)


def test_a_float32_forward_off_by_three_tenths_of_a_percent_fails():
    k = float32_only(lstm, change_forward=lambda ys, final, cache: (ys * np.float32(1.003), final, cache))
    central, r = gradcheck.check_kernel(k, methods=("central", "float32"))
    assert central.ok and not r.ok and "forward()'s ys in float32 differs" in str(r), str(r)
    assert not r.hint, r.hint  # a well-conditioned problem: rounding does not explain it


class Linear:
    """ys = x w^T + c x v^T: dv is c times dw, so c sets dv's size beside |L|; off (off32 in
    float32 runs alone) scales the returned dv, a wrong gradient of that relative size."""

    STATES, PARAMS = ("h",), ("w", "v")

    def __init__(self, c, off=1.0, off32=1.0):
        self.c, self.off, self.off32 = c, off, off32

    def init_params(self, D, H, seed=0, scale=1.0):
        rng = np.random.default_rng(seed)
        return {"w": rng.uniform(-scale, scale, (H, D)), "v": rng.uniform(-scale, scale, (H, D))}

    def forward(self, params, x, state=None, lengths=None):
        ys = x @ params["w"].T + self.c * (x @ params["v"].T)
        return ys, (ys[-1],), (params, x)

    def backward(self, params, cache, dys, dstate=None):
        _, x = cache
        dys = dys.copy()
        dys[-1] += dstate[0]
        dw = np.einsum("tbh,tbd->hd", dys, x)
        dv = self.c * dw * (self.off32 if x.dtype == np.float32 else self.off)
        return {"w": dw, "v": dv.astype(x.dtype)}, dys @ (params["w"] + self.c * params["v"]), (np.zeros_like(dstate[0]),)


def _largest_dv_beside_the_loss(k):
    p = gradcheck.random_problem(k)
    return np.max(np.abs(gradcheck.analytic_gradients(k, p)["v"])) / gradcheck.loss_magnitude(k, p)


def test_a_small_array_is_judged_against_itself_above_the_central_floor():
    """dv about 3e-4 of |L|: the floor, 10/cbrt(eps) units of |L|, lies below it, so dv off by
    5e-6 of itself fails, and only dv."""
    c = 1.2e-3
    assert 1e-4 < _largest_dv_beside_the_loss(Linear(c)) < 5e-4
    assert gradcheck.check_kernel(Linear(c), methods=("central",))[0].ok
    (r,) = gradcheck.check_kernel(Linear(c, off=1 + 5e-6), methods=("central",))
    assert not r.ok and {m.name for m in r.mismatches} == {"v"}, str(r)


def test_a_small_array_is_judged_against_itself_above_the_float32_floor():
    central, r = gradcheck.check_kernel(Linear(4e-3, off32=1 + 5e-3), methods=("central", "float32"))
    assert central.ok and not r.ok and {m.name for m in r.mismatches} == {"v"}, str(r)


class Kink:
    """ys = relu(x w^T) with w = 5e-7 from relu's 0: the central stencil crosses the kink at its step
    and a tenth of it, not at a hundredth."""

    STATES, PARAMS = ("h",), ("w",)

    def forward(self, params, x, state=None, lengths=None):
        ys = np.maximum(x @ params["w"].T, 0.0)
        return ys, (ys[-1],), (params, x)

    def backward(self, params, cache, dys, dstate=None):
        _, x = cache
        dys = dys.copy()
        dys[-1] += dstate[0]
        da = dys * (x @ params["w"].T > 0)
        return {"w": np.einsum("tbh,tbd->hd", da, x)}, da @ params["w"], (np.zeros_like(dstate[0]),)


def test_a_kink_a_tenth_of_the_step_away_is_judged_at_a_hundredth_of_it():
    problem = gradcheck.Problem({"w": np.array([[5e-7]])}, np.ones((1, 1, 1)), (np.zeros((1, 1)),),
                                np.ones((1, 1, 1)), (np.zeros((1, 1)),))
    (r,) = gradcheck.check_kernel(Kink(), problem=problem, methods=("central",))
    assert r.ok and r.smaller_steps == 1 and not r.directional, str(r)


def test_compare_fails_an_all_zero_gradient_against_a_tiny_numeric_one():
    assert not gradcheck.compare({"W": np.zeros(2)}, {"W": np.array([1e-12, 0.0])}, 1e-6).ok


def test_compare_scales_by_the_numeric_gradients_largest_magnitude_where_the_analytic_one_is_0():
    """An analytic gradient never computed, against a negative numeric one: each element's error is
    |n| / max |n|, so the largest is 1 and an entry far below the array's scale is within tolerance."""
    r = gradcheck.compare({"W": np.zeros(2)}, {"W": np.array([-2.0, -1e-9])}, 1e-6)
    assert r.errors == {"W": 1.0} and [m.index for m in r.mismatches] == [(0,)], str(r)


def test_what_a_failing_gradient_is_of_the_numeric_one_is_judged_at_the_arrays_scale():
    """Twice the numeric gradient, with an absolute error of 1e-3 beside entries of 1e3 (1e-6 of the
    largest, 2000): a term counted twice, as it is at a scale of 1."""
    n = np.array([1000.0, -500.0, 250.0])
    r = gradcheck.compare({"W": 2 * n + 1e-3}, {"W": n}, 1e-6, "central")
    assert r.likely == {"W": "2 times the numeric gradient: a term counted 2 times?"}, str(r)


def test_compare_excuses_rounding_relative_to_the_arrays_largest_entry_without_a_loss_scale():
    wide = {"W": np.array([1.0, 2e-15], dtype=np.longdouble)}
    r = gradcheck.compare({"W": np.array([1.0, 0.0])}, {"W": np.array([1.0, 1e-10 + 1e-15])}, 1e-10, wide=wide)
    assert r.ok and r.widened == 1, str(r)


class Offset(Linear):
    """Linear with 500 (or `added`) added to its outputs and final state: |L| grows, the gradient does
    not, so the gradient's norm is about 1e-3 of |L|, near the directional check's floor."""

    def __init__(self, c, added=500.0):
        super().__init__(c)
        self.added = added

    def forward(self, params, x, state=None, lengths=None):
        ys, (final,), cache = super().forward(params, x, state, lengths)
        return ys + self.added, (final + self.added,), cache


def test_the_check_along_a_random_direction_judges_a_small_gradient_against_its_own_norm():
    """dv off by 3e-6 of the gradient's norm per element: along the direction about 2e-6 of that
    norm, above the tolerance of 1e-6; the floor (0.37 of the norm here) ten times larger would
    pass it."""
    k = Offset(1.0)
    p = gradcheck.random_problem(k)
    analytic = gradcheck.analytic_gradients(k, p)
    norm = np.sqrt(sum(float(np.sum(g ** 2)) for g in analytic.values()))
    unit = gradcheck.EPS * gradcheck.loss_magnitude(k, p)
    assert 3e-4 < norm * gradcheck.EPS / unit < 3e-3  # the gradient is about 1e-3 of |L|
    assert gradcheck.directional(k, p, analytic, 0, unit) == ""
    signs = np.random.default_rng(0).choice([-1.0, 1.0], analytic["v"].shape)
    wrong = {**analytic, "v": analytic["v"] + 3e-6 * norm * signs}
    assert "of the gradient's norm" in gradcheck.directional(k, p, wrong, 0, unit)


def test_the_check_along_a_random_direction_counts_a_smaller_steps_rounding_against_it():
    """|L| some 7000 times the gradient's norm (Offset of 3000, arrays of about 0.3): at a hundredth
    of the step, rounding moves the difference along the direction by 1.5e-6 of the check's scale (its
    floor here), and a gradient off by just that along the direction passed when that step's value
    was judged as it is, as the element-wise retry's no longer is; the right one still passes."""
    k, seed = Offset(1.0, added=3000.0), 18
    p = gradcheck.random_problem(k, seed=seed, scale=0.3)
    p = replace(p, x=0.3 * p.x)
    analytic = gradcheck.analytic_gradients(k, p)
    unit = gradcheck.EPS * gradcheck.loss_magnitude(k, p)
    arrays = gradcheck._all_arrays(k, p)
    v = gradcheck._direction(arrays, seed)
    largest = max(np.max(np.abs(a)) for a in arrays.values())
    at = lambda delta: gradcheck.loss(k, gradcheck._shifted(k, p, v, delta))  # noqa: E731
    exact = sum(np.sum(analytic[name] * v[name]) for name in v)
    noise = gradcheck._fourth_order(at, np.cbrt(gradcheck.EPS) * max(1.0, largest) / 100) - exact
    scale = gradcheck.FLOORS["central"] * unit / gradcheck.TOLERANCE["central"]
    norm = np.sqrt(sum(np.sum(g ** 2) for g in analytic.values()))
    assert norm < scale and abs(noise) > 1.2e-6 * scale, (norm, noise / scale)
    assert gradcheck.directional(k, p, analytic, seed, unit) == ""
    wrong = {name: g + noise * v[name] for name, g in analytic.items()}  # off along the direction by noise
    assert "of the gradient's norm" in gradcheck.directional(k, p, wrong, seed, unit)


class Dead(Kink):
    """Kink's relu, with a backward that returns every gradient 0 wherever it is."""

    def backward(self, params, cache, dys, dstate=None):
        grads, dx, dstate0 = super().backward(params, cache, dys, dstate)
        return {"w": 0 * grads["w"]}, 0 * dx, dstate0


def test_a_problem_on_which_every_gradient_is_0_judges_nothing_and_passes_nothing():
    """relu off everywhere (w < 0, x > 0): every gradient is 0, the numeric ones too, so the
    checks compare zeros with zeros; where relu is on, the same zero gradients are wrong, and fail
    as such."""
    def problem(w):
        return gradcheck.Problem({"w": np.array([[w]])}, np.ones((2, 1, 1)), (np.zeros((1, 1)),),
                                 np.ones((2, 1, 1)), (np.zeros((1, 1)),))
    for r in gradcheck.check_kernel(Kink(), problem=problem(-0.5), methods=NUMERIC):
        assert r.vacuous and not r.ok and "nothing was judged: every gradient is exactly 0" in str(r), str(r)
    for r in gradcheck.check_kernel(Dead(), problem=problem(0.5), methods=NUMERIC):
        assert not r.vacuous and not r.ok and {m.name for m in r.mismatches} == {"w", "x"}, str(r)
    assert not any(r.vacuous for r in gradcheck.check_kernel(Kink(), problem=problem(0.5), methods=NUMERIC))


def test_results_beyond_float32s_range_leave_the_float32_run_unjudged_not_wrong():
    """dv = c dw with c = 1e40 fits float64 and not float32 (3.4e38): float32's inf and nan there are
    no wrong gradient, and the report says why it judged nothing; at c = 1e30 it judges as usual."""
    central, r = gradcheck.check_kernel(Linear(1e40), methods=("central", "float32"))
    assert central.ok and not r.ok and not r.mismatches and "beyond float32's range" in r.unjudged, str(r)
    central, r = gradcheck.check_kernel(Linear(1e30), methods=("central", "float32"))
    assert central.ok and r.ok and r.errors, str(r)


def _gradients_as_a_tuple(params, cache, dys, dstate=None):
    grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
    return tuple(grads.values()), dx, dstate0


@pytest.mark.parametrize("change, said", [
    (lambda k: setattr(k, "init_params", lambda D, H, **_: list(rnn.init_params(D, H).values())),
     "init_params() returned a list; a kernel's parameters are a dict of arrays"),
    (lambda k: setattr(k, "backward", lambda *a: tuple(rnn.backward(*a)[0].values())),
     "backward() returned 4 values; a kernel's backward returns three: (gradients, a dict"),
    (lambda k: setattr(k, "backward", _gradients_as_a_tuple),
     "backward() returned its gradients as a tuple; they are a dict, name -> array"),
])
def test_a_kernel_that_returns_another_structure_is_told_which(change, said):
    """What a hand-written kernel returns in another shape of its own is named, not met as a NumPy
    error deep in the checker."""
    kernel = Wrapped(rnn)
    change(kernel)
    with pytest.raises(ValueError, match=re.escape(said)):
        gradcheck.check_kernel(kernel)


def _upstream_mishandled(which):
    """rnn with its backward() given dstate as zeros (dstate dropped), dys as zeros at the last step
    (a step's dys dropped), or its derivative off by a factor (a formula wrong, in both terms)."""
    def backward(params, cache, dys, dstate=None):
        if which == "dstate":
            dstate = tuple(np.zeros_like(d) for d in dstate)
        if which == "dys":
            dys = np.array(dys)
            dys[-1] = 0
        grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
        if which == "formula":
            grads = {**grads, "W_h": 1.01 * grads["W_h"]}
        return grads, dx, dstate0
    return Wrapped(rnn, backward)


@pytest.mark.parametrize("which, said", [
    ("dstate", "complex: with dys = 0 (the final state's term alone) the gradients fail along a random direction, "
               "with dstate = 0 (the outputs' term alone) they pass: backward() mishandles dstate"),
    ("dys", "complex: with dstate = 0 (the outputs' term alone) the gradients fail along a random direction, "
            "with dys = 0 (the final state's term alone) they pass: backward() mishandles dys"),
    ("formula", None),
])
def test_a_gradient_wrong_in_one_of_the_losss_terms_alone_is_said_to_be(which, said):
    """Dropping dstate, or one step's dys, fails every array at every step; the loss's two terms
    judged apart tell which of backward()'s inputs it mishandles. A formula wrong fails both."""
    (report,) = gradcheck.check_kernel(_upstream_mishandled(which), T=4, B=2, methods=("complex",))
    assert not report.ok
    assert (said in str(report)) if said else "mishandles" not in str(report) and not report.term, str(report)


@pytest.mark.parametrize("dstate_zero", [False, True])
def test_a_carry_dropped_is_not_said_to_mishandle_dys_or_dstate(dstate_zero):
    """A carry dropped fails both terms; with dstate 0 the final state's term is 0, which passes
    whatever the kernel, so that it tells nothing."""
    kernel = seed_lstm.KernelAdapter("drop_carry")
    p = gradcheck.random_problem(kernel, T=4, B=2, D=3, H=3)
    if dstate_zero:
        p.dstate = tuple(np.zeros_like(d) for d in p.dstate)
    (r,) = gradcheck.check_kernel(kernel, problem=p, methods=("complex",))
    assert not r.ok and not r.term and "mishandles" not in str(r), str(r)


def test_every_report_that_fails_says_which_of_the_losss_terms_fails():
    """The direction's check goes in the first report alone; the term found fails the others too."""
    reports = gradcheck.check_kernel(_upstream_mishandled("dstate"), T=4, B=2, methods=NUMERIC)
    assert [r.method for r in reports] == list(NUMERIC) and not reports[1].directional
    assert all("backward() mishandles dstate" in str(r) for r in reports), "\n".join(map(str, reports))


def _doubled_before_the_end(a, lengths):
    """a (T, B, H) with each sequence that ends before T doubled at its last step."""
    factor = np.ones((len(a), np.shape(a)[1], 1))
    for b, n in enumerate([] if lengths is None else lengths):
        if 0 < n < len(a):
            factor[n - 1, b] = 2.0
    return a * factor


def test_outputs_off_before_a_sequences_end_are_named_where_its_final_state_is_right():
    """A forward() that doubles a sequence's last output in a batch, with a backward() to match, and
    its final state right: the gradients agree; the outputs against it run alone do not."""
    def forward(params, x, state=None, lengths=None):
        ys, final, cache = rnn.forward(params, x, state, lengths=lengths)
        return _doubled_before_the_end(ys, lengths), final, (cache, lengths)

    def backward(params, cache, dys, dstate=None):
        inner, lengths = cache
        return rnn.backward(params, inner, _doubled_before_the_end(dys, lengths), dstate)

    (report,) = gradcheck.check_kernel(Wrapped(rnn, backward, forward), T=4, B=2, methods=("complex",),
                                       lengths=(4, 2))
    assert not report.mismatches and not report.ok
    assert report.alone.startswith("sequence 1 (length 2): its outputs, in the batch and run alone, differ by"), report.alone


LSTMP = '''
from lstm_derive import Cell, sigmoid, tanh

cell = Cell("lstmp", title="LSTM whose output is projected, P = H, and fed back")
x = cell.input("x")
r_prev, c_prev = cell.state("r"), cell.state("c")
a_i, a_f, a_g, a_o = cell.affine("W", [x, r_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
i = cell.let("i", sigmoid(a_i))
f = cell.let("f", sigmoid(a_f))
g = cell.let("g", tanh(a_g))
o = cell.let("o", sigmoid(a_o))
c = cell.let("c", f * c_prev + i * g)
m = cell.let("m", o * tanh(c))
(a_r,) = cell.affine("P", [m], blocks=["a_r"], bias=None)
cell.update(c=c, r=a_r)
'''
# 12 steps at weights of scale 8, where the projection multiplies the recurrent gain: dx reaches
# 2e4 beside |L| = 229, and the loss bends within the central difference's full step
STEEP = dict(T=12, B=2, D=3, H=3, seed=1, scale=8.0)


@pytest.fixture(scope="module")
def lstmp(tmp_path_factory):
    from lstm_derive.derive import derive
    from lstm_derive.emit import emit_kernel
    from lstm_derive.generate import load_cell, load_kernel_module

    directory = tmp_path_factory.mktemp("lstmp")
    script = directory / "lstmp.py"
    script.write_text(LSTMP)
    path = directory / "lstmp_kernel.py"
    path.write_text(emit_kernel(derive(load_cell(script))))
    return load_kernel_module(path)


def test_a_full_steps_truncation_near_the_tolerance_is_judged_at_a_smaller_step(lstmp, monkeypatch):
    """At the full step, dx's worst element is off by 9.8e-7 of the array's largest entry, and by a
    sixteenth of that at half the step: the fourth-order difference's truncation, not the kernel's
    error (the complex step agrees to 1e-14). Judged at a tenth of the step, it shows what it is."""
    p = gradcheck.random_problem(lstmp, **STEEP)
    analytic = gradcheck.analytic_gradients(lstmp, p)["x"]
    largest = np.max(np.abs(analytic))
    errors = [np.abs(gradcheck.central_differences(lstmp, p, None, shrink)["x"] - analytic) / largest
              for shrink in (1, 2)]
    i = np.unravel_index(np.argmax(errors[0]), analytic.shape)
    assert 5e-7 < errors[0][i] < 1e-6 and 12 < errors[0][i] / errors[1][i] < 20
    central, complex_ = gradcheck.check_kernel(lstmp, methods=NUMERIC, **STEEP)
    assert central.ok and complex_.ok and central.smaller_steps, str(central)
    assert central.errors["x"] < 1e-8 and "judged at a tenth or a hundredth of the step" in str(central)
    monkeypatch.setattr(gradcheck, "NEAR", 1.0)  # failing elements alone judged again: the full step's number
    (central,) = gradcheck.check_kernel(lstmp, methods=("central",), **STEEP)
    assert central.ok and central.errors["x"] > 5e-7, str(central)


@pytest.mark.parametrize("off, ok", [(1e-5, False), (2e-6, False), (5e-7, True)])
def test_where_the_full_steps_truncation_nears_the_tolerance_a_wrong_gradient_still_fails(lstmp, off, ok):
    """dx's element of the largest truncation moved by `off` of dx's largest entry, away from the
    numeric value: judged at a smaller step, it fails beyond the tolerance and passes within it."""
    p = gradcheck.random_problem(lstmp, **STEEP)
    analytic = gradcheck.analytic_gradients(lstmp, p)["x"]
    numeric = gradcheck.central_differences(lstmp, p)["x"]
    i = np.unravel_index(np.argmax(np.abs(numeric - analytic)), analytic.shape)
    shift = off * np.max(np.abs(analytic)) * np.sign(analytic[i] - numeric[i])

    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = lstmp.backward(params, cache, dys, dstate)
        dx = np.array(dx)
        dx[i] += shift
        return grads, dx, dstate0

    (central,) = gradcheck.check_kernel(Wrapped(lstmp, backward), methods=("central",), **STEEP)
    assert central.ok == ok, str(central)
    assert ok or {(m.name, m.index) for m in central.mismatches} == {("x", tuple(int(k) for k in i))}, str(central)


def test_a_smaller_steps_rounding_beyond_a_fixed_allowance_passes_no_wrong_gradient(lstmp, monkeypatch):
    """lstmp over 30 steps at weights of scale 0.1 (seed 0): at a hundredth of the step, the loss's
    rounding moves dW_r[3, 1]'s difference by 0.7 of the tolerance more than 1.5 units of eps|L| in
    each loss would; an element 1.6 times the tolerance off on that side passed when those units were
    the allowance. Counted as measured in extended precision, it fails; without extended precision,
    counted at LOSS_ROUNDING units, it fails too. (The element alone is judged again, the others'
    numeric gradient taken as the right kernel's, which central differences meet to rounding.)"""
    config, i = dict(T=30, B=1, D=1, H=2, seed=0, scale=0.1), (3, 1)
    p = gradcheck.random_problem(lstmp, **config)
    right = gradcheck._as_numeric(gradcheck.analytic_gradients(lstmp, p))
    unit = gradcheck.EPS * gradcheck.loss_magnitude(lstmp, p)
    floor = gradcheck.FLOORS["central"] * unit
    allowed = gradcheck.TOLERANCE["central"] * max(np.max(np.abs(right["W_r"])), floor / gradcheck.TOLERANCE["central"])
    chosen = {name: np.zeros(np.shape(a), bool) for name, a in right.items()}
    chosen["W_r"][i] = True
    noise = gradcheck.central_differences(lstmp, p, chosen, 100)["W_r"][i] - right["W_r"][i]
    fixed = 1.5 * 100 * unit / np.cbrt(gradcheck.EPS)  # 1.5 units of eps|L| per loss, over the step's hundredth
    assert abs(noise) - fixed > 0.5 * allowed, (abs(noise) - fixed) / allowed
    wrong = {**right, "W_r": right["W_r"].copy()}
    wrong["W_r"][i] += noise + np.sign(noise) * 0.9 * (allowed - fixed)  # held by `fixed`, 0.9 of the tolerance off
    assert abs(wrong["W_r"][i] - right["W_r"][i]) > 1.5 * allowed
    numeric = {**right, "W_r": np.where(chosen["W_r"], gradcheck.central_differences(lstmp, p, chosen)["W_r"],
                                        right["W_r"])}
    judge = functools.partial(gradcheck.compare, wrong, tolerance=gradcheck.TOLERANCE["central"], method="central",
                              floor=floor)
    for wide in (True, False) if gradcheck.WIDE else (False,):
        monkeypatch.setattr(gradcheck, "WIDE", wide)
        report = gradcheck._at_smaller_steps(lstmp, p, numeric, judge(numeric), judge, wrong, unit)
        assert [(m.name, m.index) for m in report.mismatches] == [("W_r", i)], str(report)
    right_judge = functools.partial(judge.func, right, **judge.keywords)
    assert gradcheck._at_smaller_steps(lstmp, p, numeric, right_judge(numeric), right_judge, right, unit).ok


def test_float32_off_by_more_than_thirty_times_its_sensitivity_on_a_right_kernel_is_said_to_be_rounding(lstmp):
    """lstmp at weights of scale 8 over 12 steps (seed 27): rounding the inputs moves the float64
    gradients by 3.8e-5, and the float32 run is off by 1.3e-3, 34 times that; at weights 8 times
    smaller it is off by 3e-7, as a right kernel is, so the hint says the problem is ill-conditioned."""
    *_, low = gradcheck.check_kernel(lstmp, T=12, B=2, D=3, H=3, seed=27, scale=8.0, methods=("central", "float32"))
    assert not low.ok and 30 < low.max_error / low.sensitivity < 40, str(low)
    assert low.calmer < 1e-5 and "an ill-conditioned problem" in low.hint, str(low)


MLSTM = LSTMP.replace('"lstmp", title="LSTM whose output is projected, P = H, and fed back"',
                      '"mlstm", title="Multiplicative LSTM"').split("x = cell.input")[0] + '''
x = cell.input("x")
h_prev, c_prev = cell.state("h"), cell.state("c")
(a_mx,) = cell.affine("M", [x], blocks=["a_mx"], bias=None)
(a_mh,) = cell.affine("U", [h_prev], blocks=["a_mh"], bias=None)
m = cell.let("m", a_mx * a_mh)
a_i, a_f, a_g, a_o = cell.affine("W", [x, m], blocks=["a_i", "a_f", "a_g", "a_o"])
i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
c = cell.let("c", f * c_prev + i * g)
cell.update(h=o * tanh(c), c=c)
'''


def test_a_float64_gradient_off_by_its_cancelled_terms_rounding_beyond_the_excuse_is_said_to_be(tmp_path):
    """An mLSTM at weights of scale 8 over 12 steps (seed 6): dh0 is 2.5e-3, a sum of terms far larger
    that cancel, and its float64 element [0, 0] is 79 units of eps|L| from the extended run, which
    the complex step (in clongdouble: complex128's exp overflows) meets to 1e-14. Not excused, as a
    float64 slip of 120 units is not; the report says what the extended run found."""
    if not gradcheck.WIDE:
        pytest.skip("np.longdouble is float64 here")
    from lstm_derive.derive import derive
    from lstm_derive.emit import emit_kernel
    from lstm_derive.generate import load_cell, load_kernel_module

    (tmp_path / "mlstm.py").write_text(MLSTM)
    (tmp_path / "mlstm_kernel.py").write_text(emit_kernel(derive(load_cell(tmp_path / "mlstm.py"))))
    mlstm = load_kernel_module(tmp_path / "mlstm_kernel.py")
    central, complex_, low = gradcheck.check_kernel(mlstm, T=12, B=2, D=3, H=3, seed=6, scale=8.0)
    assert central.ok and [(m.name, m.index) for m in complex_.mismatches] == [("h0", (0, 0))], str(complex_)
    assert 50 < complex_.beyond_rounding[("h0", (0, 0))] < 120
    assert complex_.hint.startswith("the kernel run in extended precision (np.longdouble) agrees with the complex "
                                    "step on every failing element (dh0), and its float64 run is off from it there "
                                    "by up to 79 units"), complex_.hint
    assert "not complex-analytic" not in str(complex_)
    # float32 fails on dh0 too, by 2.2e-3 of its 2.5e-3: the same cancelled sum, said so, and still a failure
    assert not low.ok and {m.name for m in low.mismatches} == {"h0"}, str(low)
    assert low.hint.startswith("the float64 run passes the other checks but the complex step on dh0, where the kernel "
                               "run in extended precision agrees with it"), low.hint
    assert "float32 fails on dh0 alone" in low.hint and "likely a sum whose terms cancel" in low.hint, low.hint
    (wrong,) = gradcheck.check_kernel(wrong_bias(lstm), T=3, B=2, methods=("complex",))
    assert not wrong.ok and not wrong.beyond_rounding and "extended precision" not in wrong.hint
