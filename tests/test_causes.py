"""The guesses at a failure's cause: read directly, and as check_kernel's reports give them for a
kernel wrong in a known way (a gradient transposed, scaled or zero, in some gates' rows alone) or
a problem no method can judge alike (chaotic, ill-conditioned, a forward not complex-analytic)."""

import numpy as np
import pytest
from altered import NUMERIC, Wrapped, float32_only, wrong_bias

from lstm_derive import causes, gradcheck
from lstm_derive.kernels import gru, lstm, rnn


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


def _changed_gradient(name, change, kernel=rnn):
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = kernel.backward(params, cache, dys, dstate)
        if name == "x":
            return grads, change(dx), dstate0
        return {**grads, name: change(grads[name])}, dx, dstate0
    return Wrapped(kernel, backward)


@pytest.mark.parametrize("name, change, said", [
    ("W_h", lambda g: g.T, "dW_h 1.5e+00 (it is the numeric gradient transposed: an outer product the wrong way round?)"),
    ("b_x", lambda g: g / 2, "(it is 1/2 of the numeric gradient: a sum of 2 terms, rows or steps, taken as their mean"),
    ("W_x", lambda g: -g, "(it is the numeric gradient with its sign flipped)"),
    ("b_h", lambda g: 3 * g, "(it is 3 times the numeric gradient: a term counted 3 times?)"),
    ("b_h", lambda g: 10000 * g, "(it is 10000 times the numeric gradient: a term counted 10000 times?)"),
    ("b_h", lambda g: 10001 * g, "(it is 10001 times the numeric gradient)"),
    ("b_h", lambda g: 0 * g, "(it is 0 everywhere: never computed, or never accumulated?)"),
    ("b_h", lambda g: 1.01 * g, "(it is 1.01 times the numeric gradient)"),
    ("b_h", lambda g: -0.5 * g, "(it is -0.5 times the numeric gradient)"),
    ("b_h", lambda g: 1e-20 * g, "(it is 1e-20 times the numeric gradient)"),
])
def test_a_wrong_gradient_of_a_simple_kind_is_said_to_be_of_it(name, change, said):
    """A gradient transposed, scaled or zero is named so beside its largest error: what the
    common slips of a hand-written backward pass look like."""
    central, complex_, _ = gradcheck.check_kernel(_changed_gradient(name, change), B=2, H=4)
    assert said in str(central) and said in str(complex_), str(central)


def _gate_transposed(g, gate, H=4):
    g = g.copy()
    g[gate * H:(gate + 1) * H] = g[gate * H:(gate + 1) * H].T.copy()
    return g


def _gate_noisy(g, gate, H=4):
    g = g.copy()
    g[gate * H:(gate + 1) * H] += 0.1 * np.arange(H * g[0].size).reshape(g[gate * H:(gate + 1) * H].shape)
    return g


@pytest.mark.parametrize("kernel, name, change, said", [
    (lstm, "W_h", lambda g: _gate_transposed(g, 3), "(it is by blocks of 4 rows, a gate's each where "
     "gates are stacked: right in rows 0-11; in rows 12-15, the numeric gradient transposed: an outer product the "
     "wrong way round?)"),
    (gru, "W_x", lambda g: _gate_transposed(_gate_transposed(g, 1), 2),
     "(it is by blocks of 4 rows, a gate's each where gates are stacked: right in rows 0-3; in rows 4-11, the "
     "numeric gradient transposed: an outer product the wrong way round?)"),
    (lstm, "b", lambda g: np.concatenate([g[:8], 2 * g[8:12], g[12:]]), "(it is by blocks of 4 rows, a gate's each "
     "where gates are stacked: right in rows 0-7, 12-15; in rows 8-11, 2 times the numeric gradient: a term counted "
     "2 times?)"),
    (gru, "U_h", lambda g: _gate_noisy(g, 1), "(it is by blocks of 4 rows, a gate's each where gates are stacked: "
     "right in rows 0-3, 8-11; wrong in rows 4-7)"),
    (rnn, "x", lambda g: g[::-1], "(it is the numeric gradient with its steps in reverse order: kept in the backward "
     "loop's order?)"),
])
def test_a_stacked_gradient_wrong_in_some_gates_rows_is_said_to_be_in_which(kernel, name, change, said):
    """A gated cell's weights stack one block of H rows per gate: a gate's outer product taken the
    wrong way round (D = H, or a recurrent weight) is a transpose of that block alone, which the
    whole array, not square, never is; the rows a wrong gate's gradient holds are named."""
    central, complex_ = gradcheck.check_kernel(_changed_gradient(name, change, kernel), T=3, B=2, D=4, H=4,
                                               methods=NUMERIC)
    assert said in str(central) and said in str(complex_), str(central)


def test_a_stacked_gradient_wrong_in_every_block_alike_says_nothing_of_blocks():
    central, _ = gradcheck.check_kernel(_changed_gradient("W_h", lambda g: g + 0.1 * np.arange(g.size).reshape(
        g.shape), lstm), T=3, B=2, D=4, H=4, methods=NUMERIC)
    assert not central.ok and "(it is" not in str(central), str(central)


def test_a_wrong_gradient_of_no_simple_kind_is_said_to_be_of_none():
    def noisy(g):
        return g + np.arange(g.size).reshape(g.shape) * 0.01
    central, _, _ = gradcheck.check_kernel(_changed_gradient("W_h", noisy), B=2, H=4)
    assert not central.ok and "(it is" not in str(central), str(central)


def test_the_complex_step_failing_where_central_differences_agree_points_at_a_forward_not_analytic():
    """The final state through .real: right in real arithmetic, but its imaginary part is lost."""
    def forward(params, x, state=None):
        ys, final, cache = rnn.forward(params, x, state)
        return ys, tuple(np.real(f) for f in final), cache

    central, complex_ = gradcheck.check_kernel(Wrapped(rnn, forward=forward), methods=NUMERIC)
    assert central.ok and complex_.mismatches, str(complex_)
    assert "its forward is likely not complex-analytic" in str(complex_)
    assert "not complex-analytic" not in str(central)


def test_float32_failing_where_float64_passes_on_an_ill_conditioned_problem_says_so():
    """gru over 50 steps at weights of scale 10: float32's rounding grows past 1e-3 on a right kernel."""
    reports = gradcheck.check_kernel(gru, T=50, B=2, D=3, H=4, seed=31, scale=10.0, sample=3)
    central, complex_, low = reports
    assert central.ok and complex_.ok and not low.ok
    assert "rounding this problem's inputs to float32 alone moves its float64 gradients by" in str(low)
    assert "an ill-conditioned problem (large weights over many steps)" in str(low)
    wrong = float32_only(gru, change_backward=lambda grads, dx, d0: ({**grads, "b_x": grads["b_x"] * 1.01}, dx, d0))
    central, complex_, low = gradcheck.check_kernel(wrong, T=3, B=2, D=2, H=3, seed=1, scale=3.0)
    assert central.ok and complex_.ok and not low.ok and not low.hint, str(low)  # a well-conditioned problem
    *_, low = gradcheck.check_kernel(wrong, T=50, B=2, D=3, H=4, seed=31, scale=10.0, sample=3)
    assert not low.ok and not low.hint, str(low)  # ill-conditioned, but off by far more than rounding grows


def test_a_float32_path_off_by_a_tenth_of_a_percent_on_an_ill_conditioned_problem_is_not_excused():
    """Off by 1.05e-3 where rounding the inputs moves the gradients by 1.5e-4, 7 times less: as a
    right kernel can be; at weights 8 times smaller, where a right one is off by 1e-6, it is still
    off by 1e-3, and no hint excuses it."""
    wrong = float32_only(gru, change_backward=lambda grads, dx, d0: ({**grads, "b_x": grads["b_x"] * 1.001}, dx, d0))
    *_, low = gradcheck.check_kernel(wrong, T=50, B=2, D=3, H=4, seed=31, scale=10.0, sample=3)
    assert not low.ok and low.sensitivity > causes.ILL_CONDITIONED and low.calmer > causes.CALM, str(low)
    assert not low.hint, low.hint


def test_a_chaotic_problem_on_which_a_right_kernel_fails_every_method_is_said_to_be():
    """rnn at H = 64 with weights of scale 1 (8 times init_params' own) over 50 steps: rounding alone
    moves the gradients by their own size, and no method can judge them; a wrong kernel on a problem
    that is not chaotic is told nothing of the kind."""
    chaotic = gradcheck.check_kernel(rnn, T=50, B=4, D=8, H=64, sample=10, scale=1.0)
    assert all(not r.ok and "a chaotic problem" in r.hint for r in chaotic), "\n".join(map(str, chaotic))
    assert not any("chaotic" in r.hint for r in gradcheck.check_kernel(wrong_bias(lstm), T=3, B=2))


def _small_h0(kernel, float32_error):
    """The kernel with its initial h read at 5e-3 of its size, so that dh0 is some 5e-3 of the other
    gradients' size, right in float64; in float32, dh0 off by float32_error of its own size."""
    def forward(params, x, state=None, lengths=None):
        h0, *rest = state
        return kernel.forward(params, x, (h0 * 5e-3, *rest), lengths=lengths)

    def backward(params, cache, dys, dstate=None):
        grads, dx, (dh0, *rest) = kernel.backward(params, cache, dys, dstate)
        off = 1 + float32_error if dys.dtype == np.float32 else 1
        return grads, dx, (dh0 * 5e-3 * off, *rest)

    return Wrapped(kernel, backward, forward)


def test_float32_failing_on_an_array_far_smaller_than_the_others_alone_says_its_terms_cancel():
    """dh0 of some 5e-3 of the gradient's size, off in float32 by 5e-2 of its own: within tolerance of
    the gradient as a whole, as float32's rounding of a sum whose terms cancel can be. The same
    relative error in a gradient of the others' size (db, 2e-3) is a float32 slip, and told nothing of the kind."""
    central, complex_, low = gradcheck.check_kernel(_small_h0(lstm, 5e-2), T=3, B=2, D=2, H=3, seed=1)
    assert central.ok and complex_.ok and not low.ok and {m.name for m in low.mismatches} == {"h0"}, str(low)
    assert low.hint.startswith("the float64 run passes the other checks, and float32 fails on dh0 alone, whose "
                               "entries are at most "), low.hint
    assert "likely a sum whose terms cancel" in str(low)
    wrong = float32_only(lstm, change_backward=lambda grads, dx, d0: ({**grads, "b": grads["b"] * 1.002}, dx, d0))
    *_, low = gradcheck.check_kernel(wrong, T=3, B=2, D=2, H=3, seed=1)
    assert not low.ok and "cancel" not in low.hint, str(low)
    *_, low = gradcheck.check_kernel(_small_h0(lstm, 1.0), T=3, B=2, D=2, H=3, seed=1)  # off past 1e-3 of the largest
    assert not low.ok and "cancel" not in low.hint, str(low)


def test_the_cancelled_terms_hint_needs_every_other_method_to_pass():
    small = gradcheck.Mismatch("h0", (0, 0), 0.0063847, 0.0063928, 1.3e-3, ("float32", "float64"))
    low = gradcheck.Report("float32", 1e-3, mismatches=[small], largest={"h0": 0.0064, "W_x": 9.0})
    assert "float32 fails on dh0 alone" in causes._cancelled(low)
    central = gradcheck.Report("central", 1e-6, mismatches=[gradcheck.Mismatch("W_x", (0, 0), 1.0, 2.0, 0.1)])
    causes.hint_at_the_cause([central, low])
    assert "cancel" not in low.hint


def test_the_cancelled_terms_hint_reads_a_float64_failure_of_rounding_alone_as_the_float64_runs_passing():
    """The complex step failing only where the kernel run in extended precision meets it (float64's
    rounding of the same cancelled sum, beyond what is excused): the float32 hint is still given, and
    says so; the complex report still fails. Not where that report fails on anything else too."""
    small = gradcheck.Mismatch("h0", (0, 0), 0.0063847, 0.0063928, 1.3e-3, ("float32", "float64"))
    rounded = gradcheck.Mismatch("h0", (0, 1), -1.623602499e-4, -1.623602495e-4, 1.3e-10)

    def hint(**more):
        low = gradcheck.Report("float32", 1e-3, mismatches=[small], largest={"h0": 0.0064, "W_x": 9.0})
        complex_ = gradcheck.Report("complex", 1e-10, mismatches=[rounded],
                                    **{"beyond_rounding": {("h0", (0, 1)): 79.0}, **more})
        causes.hint_at_the_cause([gradcheck.Report("central", 1e-6), complex_, low])
        assert not complex_.ok
        return low.hint

    assert hint().startswith("the float64 run passes the other checks but the complex step on dh0, where the kernel "
                             "run in extended precision agrees with it (float64's own rounding, as said there), and "
                             "float32 fails on dh0 alone"), hint()
    assert hint(directional="the analytic gradient gives 1, central differences 2") == ""
    assert hint(beyond_rounding={}) == ""


def test_the_ill_conditioned_hint_needs_every_other_method_to_pass_and_float32s_dtypes_right():
    """float32 off by 90 times its sensitivity, as right kernels are on ill-conditioned problems, and
    within CALM at weights CALMER times smaller: rounding, where float64 passes every other check; not
    where one of them fails, nor where float32's results are of another dtype, which no conditioning
    explains, nor where it is off by more than CALM at the calmer weights too."""
    sensitivity = 2 * causes.ILL_CONDITIONED
    error = 90 * sensitivity

    def float32_report(**more):
        off = gradcheck.Mismatch("W_x", (0, 0), 1.0, 1.0 + error, error, ("float32", "float64"))
        return gradcheck.Report("float32", 1e-3, errors={"W_x": error}, mismatches=[off], sensitivity=sensitivity,
                                **{"calmer": causes.CALM / 2, **more})

    def hint(*others, **more):
        low = float32_report(**more)
        causes.hint_at_the_cause([*others, low])
        return low.hint

    assert sensitivity < causes.CHAOTIC and error > gradcheck.TOLERANCE["float32"]
    central, complex_ = gradcheck.Report("central", 1e-6), gradcheck.Report("complex", 1e-10)
    assert "an ill-conditioned problem" in hint(central, complex_)
    assert "at weights 8 times smaller the float32 run is off by 2.5e-05" in hint(central, complex_)
    wrong = gradcheck.Report("complex", 1e-10, mismatches=[gradcheck.Mismatch("W_x", (0, 0), 1.0, 2.0, 0.5)])
    assert "ill-conditioned" not in hint(central, wrong)
    assert "ill-conditioned" not in hint(central, complex_, wrong_shapes=["dW_x: float64 from float32 input"])
    assert "ill-conditioned" not in hint(central, complex_, calmer=2 * causes.CALM)
    assert "ill-conditioned" not in hint(central, complex_, calmer=None)
