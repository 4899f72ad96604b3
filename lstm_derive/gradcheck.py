"""Gradient checks for any kernel module: central differences and the complex step.

A kernel module is anything with the kernel interface (``forward``, ``backward``,
``init_params``, ``STATES``, ``PARAMS``); the generated ones and hand-written ones alike.

The scalar whose gradient is checked is L = sum(ys * dys) + sum_k sum(state_T[k] * dstate[k])
with random upstream gradients dys and dstate, so every output and every final state
contributes. Every element of every parameter, of x and of the initial states is perturbed.

Errors are measured relative to the largest entry of each array (what a gradient's scale is),
never after ``nan_to_num``: a NaN compares as a failure. One exception: no method resolves a
gradient below the rounding of the loss itself, so an error under a method's rounding floor
(see ``FLOORS``) passes; this matters only when a whole array's gradient is that small, e.g.
every unit of a tiny problem saturated. Where the float64 analytic gradient's own rounding
is the difference, the same kernel run in extended precision judges it (see ``ROUNDING_UNITS``).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from .callings import calls_as_users_make_them
from .causes import CALMER, ILL_CONDITIONED, WITHOUT_COMPLEX, by_blocks, hint_at_the_cause, likely, steps_text
from .problem import (ALONE_TOLERANCE, EPS, FLOORS, LOSS_ROUNDING, TOLERANCE, Problem, analytic_gradients, copy_or_none,
                      loss, loss_magnitude, raised, random_problem, run_forward, run_problem, state_names,
                      takes_lengths, zeros_like_each)

__all__ = [
    "TOLERANCE",
    "FLOORS",
    "ROUNDING_UNITS",
    "Problem",
    "Mismatch",
    "Report",
    "random_problem",
    "loss_magnitude",
    "analytic_gradients",
    "wide_gradients",
    "central_differences",
    "complex_step",
    "compare",
    "directional",
    "check_kernel",
    "DEFAULT_METHODS",
    "checked_interface",
    "written_inputs",
    "takes_lengths",
    "sequences_alone",
    "failing_term",
]

WIDE = np.finfo(np.longdouble).eps < EPS  # long double wider than float64 (x86's 80 bits; not on every platform)

COMPLEX_STEP = 1e-30

# Where an output-form derivative cancels behind a large chain factor (tanh(a**3) saturated:
# 1 - y**2 off by eps, times 3 a**2), the float64 analytic gradient's own rounding can exceed
# the floors. The kernel run in extended precision (np.longdouble) has 2048 times less rounding:
# an element the float64 gradient misses passes if the extended one meets the tolerance and the
# float64 one is within ROUNDING_UNITS * eps * max(|L|, the array's largest entry) of it, which
# is rounding's size, not a formula's. Measured: 14 units (tests/test_gradcheck.py's saturated
# cube), and 0.06 for a saturated rnn's dh0; no element of 300 random cells needs the extended
# run at all. 50 units leave a margin of 3.5: with 1000, a float64-only slip of 5% passed in an
# array 2e-10 in size beside |L| = 60. A wrong formula, a precision lost (float32 inside), or a
# float64 path that differs from the extended one by more than rounding fails (tests show all
# three).
ROUNDING_UNITS = 50


INTERFACE = ("forward", "backward", "init_params", "STATES", "PARAMS")


def checked_interface(kernel, problem_given=False, name=None):
    """The kernel itself, or a ValueError naming what of the interface it lacks (init_params only
    where the problem is to be drawn); name: what to call the kernel, by default its __name__."""
    needed = [part for part in INTERFACE if not (problem_given and part == "init_params")]
    missing = [part for part in needed if not hasattr(kernel, part)]
    if missing:
        name = name or getattr(kernel, "__name__", type(kernel).__name__)
        raise ValueError(f"{name} has no {', '.join(missing)}: a kernel defines forward(params, x, state) -> "
                         "(ys, final state, cache), backward(params, cache, dys, dstate) -> (gradients, dx, "
                         "initial state's gradients), init_params(D, H, *, seed, scale), STATES and PARAMS")
    return kernel


def written_inputs(kernel, p: Problem):
    """What a forward() and a backward() call wrote into of the caller's x and parameters, as
    "forward() wrote into x"; a ValueError if forward() does not return (ys, final state, cache)
    of the problem's shapes. The state, dys and dstate a kernel may write into (a stateful forward,
    dys[-1] += dh_T): the checks hand it copies of those. x and the parameters it must leave
    alone: written into, they change the very problem the checks judge it on."""
    q, kept = p.with_dtype(), p.with_dtype()
    with np.errstate(all="ignore"):  # a problem the cell overflows on is said so by the checks, not here
        out = run_forward(kernel, q, q.state)
        _check_outputs(kernel, q, out)
        written = [f"forward() wrote into {name}" for name in _changed(q, kept)]
        if written:  # enough said: backward() may well refuse parameters that changed since forward()
            return written
        kernel.backward(q.params, out[2], q.with_dtype().dys, q.with_dtype().dstate)
    return [f"backward() wrote into {name}" for name in _changed(q, kept)]


def _changed(p, kept):
    """The names of the arrays of x and the parameters that differ from the kept copies."""
    pairs = [(name, p.params[name], kept.params[name]) for name in p.params] + [("x", p.x, kept.x)]
    return [name for name, a, b in pairs if not np.array_equal(a, b, equal_nan=True)]


def _check_outputs(kernel, p, out):
    """A ValueError unless forward()'s output is (ys (T, B, H), final state: one (B, H) array per
    state, cache)."""
    T, B = np.shape(p.x)[:2]
    H = np.shape(p.dys)[-1]
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise ValueError(f"forward() returned {type(out).__name__}: expected (ys, final state, cache)")
    ys, final, _ = out
    if np.shape(ys) != (T, B, H):
        raise ValueError(f"forward() returned ys of shape {np.shape(ys)}: expected (T, B, H) = {(T, B, H)}")
    states = list(kernel.STATES)
    if not isinstance(final, (tuple, list)) or len(final) != len(states):
        got = f"a {type(final).__name__}" + (f" of {len(final)}" if isinstance(final, (tuple, list)) else "")
        raise ValueError(f"forward() returned {got} as its final state: expected a tuple of {len(states)} (B, H) "
                         f"arrays, one per state of STATES {tuple(states)}" + (" (return (h,), not h)" if len(states) == 1 else ""))
    for name, a in zip(states, final):
        if np.shape(a) != (B, H):
            raise ValueError(f"forward() returned a final {name} of shape {np.shape(a)}: expected (B, H) = {(B, H)}")


def _perturbed(kernel, p: Problem, name, index, delta):
    """The problem with one element of the named array moved by delta."""
    arrays = _all_arrays(kernel, p)
    arrays[name] = _moved(arrays[name], index, delta)
    return _with_arrays(kernel, p, arrays)


def _with_arrays(kernel, p: Problem, arrays):
    """The problem with its parameters, x and initial states replaced by the named arrays (as
    _all_arrays names them), and its upstream gradients kept."""
    params = {name: arrays[name] for name in p.params}
    state = tuple(arrays[name] for name in state_names(kernel))
    return replace(p, params=params, x=arrays["x"], state=state)


def _moved(a, index, delta):
    a = np.array(a, dtype=np.result_type(a, delta))
    a[index] += delta
    return a


def _all_arrays(kernel, p):
    named = p.arrays()
    named.update(zip(state_names(kernel), p.state))
    return named


def _elementwise(kernel, p, derivative, chosen=None, of=loss):
    """Every array's gradient, one element at a time: derivative(loss_of, value) per element;
    with ``chosen`` (a boolean mask per array), only those elements, NaN elsewhere. of: what of
    each moved problem loss_of gives, of(kernel, problem); the loss itself by default."""
    out = {}
    for name, a in _all_arrays(kernel, p).items():
        g = np.full(a.shape, np.nan)
        mask = np.ones(a.shape, bool) if chosen is None else chosen[name]
        for index in zip(*np.nonzero(mask)):
            moved = lambda delta: of(kernel, _perturbed(kernel, p, name, index, delta))  # noqa: E731
            g[index] = derivative(moved, a[index])
        out[name] = g
    return out


def central_differences(kernel, p: Problem, chosen=None, shrink=1):
    """dL/da[i] by the fourth-order central difference, with h = cbrt(eps) * max(1, |a_i|):
    (8 (L(a + h e_i) - L(a - h e_i)) - (L(a + 2h e_i) - L(a - 2h e_i))) / 12h.

    The second-order difference (L(a + h) - L(a - h)) / 2h is off by h^2 L'''/6, an absolute
    error: where a gradient is small beside the third derivative (d/dw (w x)^3 = 3 w^2 x^3 for a
    tiny w, while the third derivative is 6 x^3) that error is the gradient's whole size. This
    one is off by h^4 L^(5)/30, about 1e-21 times the fifth derivative, for 1.5x the rounding.
    shrink: h divided by it, for an element whose stencil may cross a kink (relu's 0)."""

    def derivative(moved, value):
        return _fourth_order(moved, _step(value, shrink))

    return _elementwise(kernel, p.with_dtype(np.float64), derivative, chosen)


def _step(value, shrink=1):
    """Central differences' step at a value (or the largest of several): cbrt(eps) * max(1, |value|),
    divided by shrink."""
    return np.cbrt(EPS) * np.maximum(1.0, np.abs(value)) / shrink


def _fourth_order(moved, h):
    """(8 (L(h) - L(-h)) - (L(2h) - L(-2h))) / 12h, moved(delta) being L moved by delta."""
    return (8 * (moved(h) - moved(-h)) - (moved(2 * h) - moved(-2 * h))) / (12 * h)


def complex_step(kernel, p: Problem, chosen=None, dtype=np.complex128):
    """dL/da[i] = Im L(a + i h e_i) / h with h = 1e-30: no cancellation, exact to rounding.
    dtype: the complex type the kernel runs in (np.clongdouble reaches farther before exp overflows)."""

    def derivative(moved, value):
        return moved(1j * COMPLEX_STEP).imag / COMPLEX_STEP

    return _elementwise(kernel, p.with_dtype(dtype), derivative, chosen)


@dataclass(frozen=True)
class Mismatch:
    name: str
    index: tuple
    analytic: float  # or complex, where the kernel's gradient has an imaginary part
    numeric: float
    rel: float
    labels: tuple = ("analytic", "numeric")  # what the two values are: ("float32", "float64") for that method

    def __str__(self):
        where = ",".join(map(str, self.index))
        judged, against = self.labels
        return (f"d{self.name}[{where}]: {judged} {self.analytic:.10g}, {against} {self.numeric:.10g}, "
                f"rel {self.rel:.1e}")


@dataclass
class Report:
    """How far the analytic gradients are from one numeric method, per array."""

    method: str
    tolerance: float
    errors: dict = field(default_factory=dict)  # array name -> max relative error
    mismatches: list = field(default_factory=list)
    # elements judged by the extended-precision gradient, and the float64 one's largest rounding
    widened: int = 0
    rounding: float = 0.0
    # failing elements the extended-precision gradient meets the tolerance on -> how far the float64
    # one is from it, in units of eps * max(|L|, the array's largest entry): beyond ROUNDING_UNITS
    beyond_rounding: dict = field(default_factory=dict)
    wrong_shapes: list = field(default_factory=list)  # "dW_h: shape (4, 16), expected (16, 4)"
    unjudged: str = ""  # why the method could not judge some elements (never a pass)
    lost: int = 0  # complex: of those, the elements whose complex step overflowed where the loss is finite
    overflowed: bool = False  # forward() gave inf or nan on the problem: no element was judged
    at_any_scale: bool = False  # overflowed, and at weights 1000 times smaller too: no scale avoids it
    sampled: tuple = ()  # (elements judged, elements in all) where a sample was judged
    directional: str = ""  # what the check along one random direction found, where it failed
    alone: str = ""  # with lengths, a sequence whose outputs or final state differ from it run alone
    forward: str = ""  # float32: an output or final state off from the float64 run's
    smaller_steps: int = 0  # central: elements judged at a smaller step (a kink or a bend within the full one)
    calls: str = ""  # what differs called as users call it: None for zeros, interleaved calls, step functions
    sensitivity: float = 0.0  # float32: how far rounding the inputs alone moves the float64 gradients
    calmer: float = None  # float32, failing on an ill-conditioned problem: its error at weights CALMER times smaller
    largest: dict = field(default_factory=dict)  # float32: array name -> the float64 gradient's largest entry
    written: list = field(default_factory=list)  # "forward() wrote into x": the problem itself changed
    hint: str = ""  # what the other method's verdict suggests, where the two differ
    steps: int = 0  # x's steps, to say which of them fail
    vacuous: bool = False  # every gradient exactly 0, analytic and numeric: nothing was judged
    likely: dict = field(default_factory=dict)  # failing array name -> what its error looks like (causes.likely)
    term: str = ""  # which of the loss's two terms the gradients fail with alone, where one does (failing_term)

    @property
    def ok(self):
        return not (self.mismatches or self.wrong_shapes or self.unjudged or self.directional or self.alone
                    or self.written or self.forward or self.calls or self.vacuous)

    @property
    def max_error(self):
        return max(self.errors.values(), default=0.0)

    def __str__(self):
        text = self._verdict()
        notes = [note for note in (self.term, self.hint) if note and not self.ok]
        return "\n".join([text] + [f"{self.method}: {note}" for note in notes])

    def _verdict(self):
        if self.written:
            return (f"{self.method}: not judged: {'; '.join(self.written)}, which changes the problem it is judged "
                    "on; a kernel must leave its caller's x and parameters as they were")
        head = f"{self.method}: max rel error {self.max_error:.1e} (tolerance {self.tolerance:.0e})"
        if self.unjudged or self.wrong_shapes or self.directional or self.alone or self.forward or self.calls:
            lines = [f"{self.method}: cannot judge {self.unjudged}"] if self.unjudged else []
            lines += [f"{self.method}: {self.forward}"] if self.forward else []
            lines += [f"{self.method}: wrong shape or dtype: {w}" for w in self.wrong_shapes]  # gradients, or forward's outputs
            if self.directional:
                lines.append(f"{self.method}: along a random direction through every array at once, {self.directional}")
            if self.alone:
                lines.append(f"{self.method}: with lengths, {self.alone}")
            if self.calls:
                lines.append(f"{self.method}: {self.calls}")
            rest = Report(self.method, self.tolerance, self.errors, self.mismatches, sampled=self.sampled,
                          steps=self.steps, likely=self.likely)
            return "\n".join(lines + ([str(rest)] if self.mismatches else []))
        if self.sampled:
            head += f" over a sample of {self.sampled[0]} of {_elements(self.sampled[1])}"
        if self.vacuous:
            return head + (", but nothing was judged: every gradient is exactly 0 on this problem, the numeric ones "
                           "too (as when every relu is off at every step); check the kernel on another one")
        if self.ok and self.smaller_steps:
            return head + (f", ok ({_elements(self.smaller_steps)} judged at a tenth or a hundredth of the step: "
                           "the loss bends within the full one there: a kink such as relu's 0, or a fast change)")
        if self.ok and self.widened:
            return head + (f", ok ({_elements(self.widened)} judged in extended precision: the float64 gradient "
                           f"differs from it by at most {self.rounding:.1e} of its array's largest entry, within rounding)")
        if self.ok:
            return head + ", ok"
        count = len(self.mismatches)
        lines = [head + f", {_elements(count)} fail{'s' if count == 1 else ''}, worst first (rel: the error over "
                        "its array's largest entry):"]
        lines += [f"  {m}" for m in sorted(self.mismatches, key=lambda m: -m.rel)[:20]]
        if len(self.mismatches) > 20:
            lines.append(f"  ... and {len(self.mismatches) - 20} more")
        return "\n".join(lines + [self._per_array()])

    def _per_array(self):
        """The largest error of each array that fails, and the steps of x that fail: a wrong
        gradient carried back from later steps fails at every step but the last."""
        failing = {m.name for m in self.mismatches}
        parts = []
        for name, error in sorted(self.errors.items(), key=lambda item: -item[1]):
            if name in failing:
                steps = sorted({m.index[0] for m in self.mismatches if m.name == "x"}) if name == "x" else []
                where = f" (at step{'s' if len(steps) > 1 else ''} {steps_text(steps)} of 0-{self.steps - 1})" if steps else ""
                likely = f" (it is {self.likely[name]})" if self.likely.get(name) else ""
                parts.append(f"d{name} {error:.1e}{where}{likely}")
        passing = [f"d{n}" for n in self.errors if n not in failing]
        return f"  per array, the largest error: {', '.join(parts)}" + (f"; within tolerance: {', '.join(passing)}" if passing else "")


def _elements(n):
    return f"{n} element{'s' if n != 1 else ''}"


def wide_gradients(kernel, p: Problem):
    """The analytic gradients of the kernel run in np.longdouble; None where longdouble is
    float64 (some platforms) or the kernel does not run in it."""
    if not WIDE:
        return None
    try:
        with np.errstate(all="ignore"):
            return analytic_gradients(kernel, p.with_dtype(np.longdouble))
    except Exception:  # noqa: BLE001 - a kernel that refuses longdouble is judged in float64 alone
        return None


def compare(analytic, numeric, tolerance, method="numeric", floor=0.0, wide=None, loss_scale=0.0, chosen=None,
            labels=("analytic", "numeric"), blocks=None):
    """Element by element, |analytic - numeric| / (largest |entry| of the array) <= tolerance.

    ``floor`` is the absolute error the method cannot resolve: errors are relative to
    max(largest entry, floor / tolerance), so an error below the floor always passes. ``wide``,
    the same kernel's gradients in extended precision, judges an element the float64 gradient
    misses where it differs from that one by its rounding alone: ROUNDING_UNITS * eps *
    max(loss_scale, largest entry), loss_scale being |L|. ``chosen``, a boolean mask per array,
    limits the judgement to those elements (the numeric gradient is NaN elsewhere). ``blocks``,
    rows per block of the arrays stacked by blocks (a gated cell's weights and biases, H rows per
    gate), by name: a failing one is also described block by block."""
    report = Report(method, tolerance, steps=np.shape(numeric["x"])[0] if "x" in numeric else 0)
    for name, n in numeric.items():
        a = np.asarray(analytic[name])
        if a.shape != n.shape or a.dtype.kind not in "fc":
            report.errors[name] = np.inf
            got = (f"shape {a.shape}" if a.dtype.kind in "fc" else f"dtype {a.dtype}" if isinstance(analytic[name], np.ndarray)
                   else type(analytic[name]).__name__)
            report.wrong_shapes.append(f"d{name}: {got}, expected a float array of shape {n.shape}")
            continue
        judged = np.ones(n.shape, bool) if chosen is None else chosen[name]
        # the scale from finite entries only: an inf must not make every other error look small
        finite = np.isfinite(a)
        largest = np.max(np.abs(a[finite]), initial=0.0)
        scale = max(largest, np.max(np.abs(n[judged & np.isfinite(n)]), initial=0.0), floor / tolerance)
        rel = np.where(judged, _relative(a, n, scale), 0.0)
        rel[~finite] = np.inf  # a non-finite gradient fails, sampled or not
        if wide is not None and np.shape(wide[name]) == a.shape and np.asarray(wide[name]).dtype.kind == "f":
            w = np.asarray(wide[name], dtype=np.longdouble)
            rounding, rel_wide = _relative(a, w, largest), _relative(w, n, scale)
            cap = ROUNDING_UNITS * EPS * max(loss_scale, largest)
            with np.errstate(invalid="ignore"):
                widened = ~(rel <= tolerance) & (rel_wide <= tolerance) & (np.abs(a - w) <= cap)
            rel = np.where(widened, rel_wide, rel)
            report.widened += int(np.count_nonzero(widened))
            with np.errstate(invalid="ignore", over="ignore"):  # an inf entry fails as it is, beyond no rounding
                beyond = ~(rel <= tolerance) & (rel_wide <= tolerance)
                units = np.abs(a - w) / (EPS * max(loss_scale, largest)) if max(loss_scale, largest) > 0 else None
            report.beyond_rounding.update({(name, tuple(int(i) for i in index)): float(units[index])
                                           for index in zip(*np.nonzero(beyond))} if units is not None else {})
            report.rounding = max(report.rounding, float(np.max(rounding[widened], initial=0.0)))
        report.errors[name] = float(np.max(rel, initial=0.0))
        if not report.errors[name] <= tolerance and chosen is None and method in METHODS:
            report.likely[name] = likely(a, n, tolerance * scale) or by_blocks(a, n, tolerance * scale,
                                                                                  (blocks or {}).get(name, 0))
        for index in zip(*np.nonzero(~(rel <= tolerance))):
            index = tuple(int(i) for i in index)
            value = a[index]  # a gradient with an imaginary part shows it: the real parts may agree
            value = complex(value) if np.iscomplexobj(value) and value.imag != 0 else float(np.real(value))
            report.mismatches.append(Mismatch(name, index, value, float(n[index]), float(rel[index]), labels))
    return report


def _relative(a, b, scale):
    """|a - b| / scale in float64, a NaN as inf (a failure)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rel = np.asarray(np.abs(a - b) / scale if scale > 0 else np.abs(a - b), dtype=np.float64)
    return np.where(np.isnan(rel), np.inf, rel)


METHODS = {"central": central_differences, "complex": complex_step}  # the numeric ones: element by element

DEFAULT_METHODS = (*METHODS, "float32")  # float32: _float32_report


def check_kernel(kernel, *, T=3, B=2, D=3, H=4, seed=0, scale=1.0, methods=DEFAULT_METHODS, problem=None,
                 sample=None, lengths=None):
    """Checks every gradient of a kernel; returns one Report per method. ``sample``: judge at most
    that many elements of each array, drawn at random (seeded by ``seed``), for problems too large
    to perturb every element of; None judges them all (float32 always judges them all: it costs
    one run). ``lengths``: each sequence's number of steps, passed to forward() (a problem
    given carries its own)."""
    methods = _checked_methods(methods)
    checked_interface(kernel, problem is not None)
    p = problem or random_problem(kernel, T, B, D, H, seed, scale, lengths=lengths)
    p = _checked_problem(kernel, _zeros_for_none(p))
    written = written_inputs(kernel, p)
    if written:
        return [Report(m, TOLERANCE[m], written=written) for m in methods]
    overflowed, at_any_scale = _not_finite(kernel, p)
    if overflowed:
        return [Report(m, TOLERANCE[m], unjudged=overflowed, overflowed=True, at_any_scale=at_any_scale)
                for m in methods]
    straight = run_problem(kernel, p)
    analytic = straight[2]
    wide = wide_gradients(kernel, p)
    magnitude = loss_magnitude(kernel, p)
    unit = EPS * magnitude if np.isfinite(magnitude) else 0.0  # an overflow must not hide errors
    values = _as_numeric(analytic)
    chosen = _sample(_all_arrays(kernel, p), values, sample, seed)
    along = directional(kernel, p, analytic, seed, unit)
    alone = sequences_alone(kernel, p)
    calls = calls_as_users_make_them(kernel, p, seed, straight, unit, float32="float32" in methods)
    narrowed = _in_other_dtypes(analytic, np.float64)
    blocks = dict.fromkeys(kernel.PARAMS, np.shape(p.dys)[-1])  # H rows per gate, where gates are stacked
    # what no one method finds (the direction's check is central differences) goes in one report
    first = "central" if "central" in methods else next((m for m in methods if m != "float32"), None)
    reports = []
    term = functools.cache(lambda: failing_term(kernel, p, seed, unit))  # the same for every method: run once
    for m in methods:
        if m == "float32":
            reports.append(_float32_report(kernel, p, unit, values))
            continue
        numeric, unjudged, lost = _numeric(kernel, p, m, values, np.isfinite(magnitude), chosen)
        judge = functools.partial(compare, analytic, tolerance=TOLERANCE[m], method=m, floor=FLOORS[m] * unit,
                                  wide=wide, loss_scale=unit / EPS, chosen=chosen, blocks=blocks)
        report = judge(values if numeric is None else numeric)
        if numeric is None:  # the method judged no element: it has no error to state, not one of 0
            report.errors = {}
        if m == "central":
            report = _at_smaller_steps(kernel, p, numeric, report, judge, values, unit)
        report.unjudged, report.lost = unjudged, lost
        if m == first:
            report.directional, report.alone, report.calls = along, alone, calls
        if report.mismatches or report.directional:
            report.term = term()
        report.wrong_shapes += narrowed
        if chosen is not None:
            report.sampled = (sum(int(c.sum()) for c in chosen.values()), sum(c.size for c in chosen.values()))
        reports.append(report)
    zero = not any(np.any(a) for a in values.values())  # every gradient, exactly
    for report in reports:  # where nothing else failed: a nonzero numeric gradient fails as a mismatch
        report.vacuous = zero and report.ok
    hint_at_the_cause(reports)
    return reports


def _checked_methods(methods):
    """methods as a tuple of names from DEFAULT_METHODS, or a ValueError."""
    methods = methods if isinstance(methods, str) else tuple(methods)  # a generator is read once
    if isinstance(methods, str) or not methods or any(m not in DEFAULT_METHODS for m in methods):
        raise ValueError(f"methods: expected a tuple of one or more names from {DEFAULT_METHODS}, got {methods!r}")
    if set(methods) == {"float32"}:  # a wrong formula is as wrong in float64: this would pass it
        raise ValueError(FLOAT32_ALONE)
    return methods


FLOAT32_ALONE = ("methods: float32 alone compares a kernel with its own float64 run, which it cannot judge: "
                 "add central or complex")


def _checked_problem(kernel, p):
    """p, or a ValueError where the kernel cannot be checked on it: lengths it does not take,
    arrays not in float64, parameters not its PARAMS."""
    if p.lengths is not None and not takes_lengths(kernel):
        raise ValueError("lengths: this kernel's forward() takes no lengths (forward(params, x, state, lengths=None) "
                         "runs sequences of different lengths); check it without them")
    dtypes = sorted({str(np.asarray(a).dtype) for a in _all_arrays(kernel, p).values() if a is not None} - {"float64"})
    if dtypes:
        raise ValueError(f"problem: the checks run the kernel in float64 (the step of the central differences and "
                         f"the complex step are chosen for it), got {', '.join(dtypes)}: pass "
                         "problem.with_dtype(np.float64)")
    if set(p.params) != set(kernel.PARAMS):
        raise ValueError(f"the problem's parameters {sorted(p.params)} are not PARAMS {sorted(kernel.PARAMS)}: "
                         "every parameter forward() reads must be named in PARAMS, and only those")
    return p


# Central differences again at these fractions of the step, for the elements that fail at it: a
# kink (relu's 0) or a fast bend within the stencil, +-2h, spoils them there, and a step that no
# longer reaches it does not. Their rounding error grows as the step shrinks, to 1.5 r / (h/k) at
# step h/k where each loss is off by r: the difference at h/k is held that much farther from the
# kernel's value than it is (_held_away), r measured at each of its four losses against the kernel
# run in extended precision (or LOSS_ROUNDING units where it cannot be), so that rounding cannot
# bring a wrong gradient within the tolerance (a gradient wrong by 1.2e-6 of its array passed with
# no allowance, and one wrong by 1.6 times the tolerance with 1.5 units of eps |L| for r, which the
# loss's rounding exceeds on ill-conditioned problems); a wrong gradient fails at every step, as
# they all converge to the true one (tests/test_gradcheck.py shows these). The element-wise retry
# and the check along a random direction judge a smaller step alike.
SMALLER_STEPS = (10, 100)

# Elements that pass, but by an error above this fraction of the tolerance, are judged at
# SMALLER_STEPS too, and keep the smaller step's value where it is nearer the kernel's, its rounding
# counted against it. On a saturated recurrence the loss bends within the full step, and the
# fourth-order difference's truncation (h^4, a sixteenth at half the step) is its whole error:
# lstmp (an LSTM whose projection feeds W_r, 12 steps, weights of scale 8) had dx 9.8e-7 of its
# largest entry from central differences, 1.4e-10 at a tenth of the step, the complex step 5e-15.
# The full step's number would say the kernel sits at its tolerance; it is the method that does.
NEAR = 0.1


def _at_smaller_steps(kernel, p, numeric, report, judge, analytic, unit):
    """The central report with the elements whose error exceeds NEAR times the tolerance judged
    again at SMALLER_STEPS: each takes the first smaller step's value that, with its rounding
    counted against it, meets the tolerance and is nearer the kernel's value than the one it had
    (judge: compare with the full step's floor; analytic: _as_numeric's; unit: eps |L|)."""
    tolerance = TOLERANCE["central"]
    near = functools.partial(judge, tolerance=NEAR * tolerance, floor=NEAR * FLOORS["central"] * unit)
    errors = _errors(near(numeric))
    if not errors:
        return report
    numeric = {name: np.array(a, dtype=np.float64) for name, a in numeric.items()}
    moved = 0
    for shrink in SMALLER_STEPS:
        if not errors:
            break
        smaller = central_differences(kernel, p, _mask(numeric, errors), shrink)
        # holding a value away can only take it farther: rounding is measured where it could pass
        candidates = {key: errors[key] for key in _nearer(near, numeric, smaller, errors)}
        rounding = _rounding_of_differences(kernel, p, _mask(numeric, candidates), shrink, unit)
        held = {name: _held_away(n, analytic[name], rounding[name]) if np.shape(analytic[name]) == n.shape else n
                for name, n in smaller.items()}
        for name, index in _nearer(near, numeric, held, candidates):
            numeric[name][index] = held[name][index]
            moved += 1
            del errors[(name, index)]
    rejudged = judge(numeric)
    rejudged.smaller_steps = moved
    return rejudged


def _mask(arrays, keys):
    """A boolean mask per array (name -> array), True at the keys' (name, index)."""
    chosen = {name: np.zeros(np.shape(a), bool) for name, a in arrays.items()}
    for name, index in keys:
        chosen[name][index] = True
    return chosen


def _nearer(near, numeric, smaller, errors):
    """Of the elements that errors holds ((name, index) -> error), those whose value in smaller, put
    in numeric's place, meets the tolerance and is nearer the kernel's value than before (near:
    compare at NEAR times the tolerance, which leaves out an element within that)."""
    chosen = _mask(numeric, errors)
    found = _errors(near({name: np.where(chosen[name], smaller[name], a) for name, a in numeric.items()}))
    return [key for key, before in errors.items() if found.get(key, 0.0) <= TOLERANCE["central"]
            and found.get(key, 0.0) < before]


def _held_away(numeric, exact, rounding):
    """A central difference moved away from the kernel's value (exact) by the most rounding can have
    moved it, so that rounding, which grows as the step shrinks, cannot bring a wrong gradient
    within the tolerance: judged so, it is at least as far from the kernel's value as the exact
    difference is."""
    return np.where(numeric >= exact, numeric + rounding, numeric - rounding)


def _rounding_of_differences(kernel, p, chosen, shrink, unit):
    """For each chosen element, the most the losses' rounding moves its central difference at a
    shrink-th of the step (_stencil_rounding); NaN elsewhere."""
    def derivative(rounding_at, value):
        return _stencil_rounding(rounding_at, _step(value, shrink), unit)

    return _elementwise(kernel, p.with_dtype(np.float64), derivative, chosen, of=_loss_rounding)


def _stencil_rounding(rounding_at, h, unit):
    """The most rounding moves (8 (L(h) - L(-h)) - (L(2h) - L(-2h))) / 12h: each loss's rounding,
    rounding_at(delta), weighted 8, 8, 1 and 1. Where the kernel's run in extended precision cannot
    measure it, LOSS_ROUNDING units of eps |L| (unit) each."""
    rounding = [rounding_at(delta) for delta in (h, -h, 2 * h, -2 * h)]
    if not np.all(np.isfinite(rounding)):
        rounding = [LOSS_ROUNDING * unit] * 4
    return (8 * (rounding[0] + rounding[1]) + rounding[2] + rounding[3]) / (12 * h)


def _loss_rounding(kernel, q):
    """How far the float64 loss of the problem is from the loss of the kernel run in extended
    precision (np.longdouble), 2048 times less rounded: the float64 loss's own rounding. NaN where
    longdouble is float64, or the kernel does not run in it, or is not finite there."""
    if not WIDE:
        return np.nan
    try:
        with np.errstate(all="ignore"):
            wide = loss(kernel, q.with_dtype(np.longdouble))
            return float(abs(np.longdouble(loss(kernel, q)) - wide))
    except Exception:  # noqa: BLE001 - a kernel that refuses longdouble: rounding counted at LOSS_ROUNDING
        return np.nan


def _errors(report):
    """A report's mismatches as (name, index) -> error."""
    return {(m.name, m.index): m.rel for m in report.mismatches}


def _not_finite(kernel, p):
    """("", False) where forward()'s outputs and final state are finite on the problem; else which
    are not, and whether they are not at weights 1000 times smaller either. A loss of inf or nan has
    no gradient to judge, by any method."""
    bad = _not_finite_results(kernel, p)
    if not bad:
        return "", False
    said = f"any element: forward()'s {bad} hold inf or nan on this problem, so the loss has no gradient to judge"
    small = replace(p, params={name: 1e-3 * np.asarray(a) for name, a in p.params.items()})
    if _not_finite_results(kernel, small):
        return (f"{said}, and they do at weights 1000 times smaller too: no weight scale avoids it (a division by "
                "a value that can be 0, as a/relu(a) where a <= 0? inf or nan in an input or a state?)"), True
    return (f"{said} (the cell overflows at these weights and inputs; with lengths, padding may leak into the "
            "results); a smaller weight scale tells (scale=, or --scale of lstm-derive check)"), False


def _not_finite_results(kernel, p):
    """Which of forward()'s results are not finite on the problem, in words, or ""."""
    q = p.with_dtype()
    with np.errstate(all="ignore"):
        ys, final, _ = run_forward(kernel, q, q.state)
    bad = [f"final {s}" for s, a in zip(kernel.STATES, final) if not np.isfinite(a).all()]
    ys = np.asarray(ys)
    steps = np.flatnonzero(~np.isfinite(ys).all(axis=tuple(range(1, ys.ndim))))  # T = 0: none
    if steps.size:
        bad.insert(0, f"outputs (from step {steps[0]} of 0-{len(ys) - 1})")
    return " and ".join(bad)


def _zeros_for_none(p):
    """The problem with an initial state given as None (zeros, to a kernel) as zeros: the checks
    perturb every element of it, and judge its gradient."""
    if all(s is not None for s in p.state):
        return p
    zeros = np.zeros((np.shape(p.x)[1], np.shape(p.dys)[-1]))
    return replace(p, state=tuple(zeros.copy() if s is None else s for s in p.state))


def _float32_report(kernel, p, unit, original=None):
    """The float32 run (outputs, final state and gradients) against the float64 run on the same
    numbers, the problem rounded to float32 (rounding the inputs is no error of the kernel's, and on
    an ill-conditioned problem it moves the gradients by more than the arithmetic does); and the
    dtypes it returns: a float64 buffer or number in a float32 kernel makes its results float64.
    original: the float64 gradients of the problem as given, against which the rounded problem's
    tell how much rounding the inputs alone moves them (report.sensitivity)."""
    report = Report("float32", TOLERANCE["float32"])
    low = p.with_dtype(np.float32)  # upstream gradients in float32 too
    try:
        with np.errstate(all="ignore"):  # an inf or nan float32 makes where float64 does not fails below, named
            ys, final, got = run_problem(kernel, low)
    except Exception as error:  # noqa: BLE001 - a kernel for float64 alone
        report.unjudged = (f"(on float32 input, the kernel raised {raised(kernel, error)}); "
                           "methods=(\"central\", \"complex\"), or --methods central complex, leaves float32 out")
        return report
    ys64, final64, reference = run_problem(kernel, low.with_dtype(np.float64))
    largest = _largest_finite([ys64, *final64, *reference.values()])
    if largest > float(np.finfo(np.float32).max):  # float32 cannot hold the results: a smaller scale judges it
        report.unjudged = (f"(the float64 run's results reach {largest:.1e}, beyond float32's range, "
                           f"{np.finfo(np.float32).max:.1e}: float32 cannot hold them on this problem; a smaller "
                           "weight scale, scale= or --scale, judges it where they fit)")
        return report
    judged = compare(got, _as_numeric(reference), report.tolerance, "float32", FLOORS["float32"] * unit,
                     labels=("float32", "float64"))
    judged.wrong_shapes += _in_other_dtypes(got, np.float32)
    outputs = {"ys": (ys, ys64), **{f"final {s}": pair for s, pair in zip(kernel.STATES, zip(final, final64))}}
    judged.wrong_shapes += [f"forward()'s {name}: {np.asarray(a).dtype} from float32 input, expected float32"
                            for name, (a, _) in outputs.items() if np.asarray(a).dtype != np.float32]
    judged.forward = _differing_outputs(outputs, report.tolerance)
    judged.largest = {n: float(np.max(np.abs(r), initial=0.0)) for n, r in _as_numeric(reference).items()}
    if original is not None:
        judged.sensitivity = max(compare(original, _as_numeric(reference), np.inf, "float32").errors.values(),
                                 default=0.0)
    if not judged.ok and judged.sensitivity > ILL_CONDITIONED:
        judged.calmer = _float32_error_at_calmer_weights(kernel, p)
    return judged


def _float32_error_at_calmer_weights(kernel, p):
    """The float32 run's largest error on the problem with its weights CALMER times smaller, where
    rounding is no longer amplified past the tolerance; inf where it fails there on more than its
    gradients' values (its outputs, dtypes) or cannot run."""
    calm = replace(p, params={name: np.asarray(a) / CALMER for name, a in p.params.items()})
    try:
        with np.errstate(all="ignore"):
            magnitude = loss_magnitude(kernel, calm)
            report = _float32_report(kernel, calm, EPS * magnitude if np.isfinite(magnitude) else 0.0)
    except Exception:  # noqa: BLE001 - what fails there is no evidence of rounding
        return np.inf
    if report.forward or report.wrong_shapes or report.unjudged or not report.errors:
        return np.inf
    return report.max_error


def _largest_finite(arrays):
    """The largest finite magnitude in the arrays (None entries skipped), 0.0 where there is none."""
    magnitudes = [np.abs(np.asarray(a)) for a in arrays if a is not None]
    return max((float(np.max(m[np.isfinite(m)], initial=0.0)) for m in magnitudes), default=0.0)


def _differing_outputs(outputs, tolerance):
    """"" where each float32 output (name -> (float32, float64)) is within tolerance of the float64
    one, relative to its largest entry; else the first that is not, and by how much."""
    for name, (a, b) in outputs.items():
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return f"forward()'s {name} has shape {a.shape} in float32, {b.shape} in float64"
        scale = max(float(np.max(np.abs(b), initial=0.0)), np.finfo(np.float32).tiny)
        error = float(np.max(_relative(a.astype(np.float64), b, scale), initial=0.0))
        if not error <= tolerance:
            return (f"forward()'s {name} in float32 differs from the float64 run's by {error:.1e} of its largest "
                    f"entry (tolerance {tolerance:.0e})")
    return ""


def _in_other_dtypes(gradients, dtype):
    """The gradients returned in another dtype than the problem's, as wrong_shapes entries: a
    float32 buffer in a float64 run rounds every gradient to float32's 1e-7, which the element-wise
    comparison would report as a small error of no evident cause; a wider or complex one breaks a
    caller's params -= lr * grad in place."""
    return [f"d{name}: {np.asarray(g).dtype} from {np.dtype(dtype)} input, expected {np.dtype(dtype)}"
            for name, g in gradients.items()
            if np.asarray(g).dtype.kind in "fc" and np.asarray(g).dtype != np.dtype(dtype)]


def directional(kernel, p, analytic, seed=0, unit=0.0):
    """The whole gradient along one random unit direction through every array at once, against
    a fourth-order central difference of the loss along it (four runs of forward): "" where they
    agree to the central tolerance, relative to the gradient's norm, else what was found. It sees
    what the element-wise methods can miss: a sample's unpicked elements, and (beside the complex
    step alone) a forward that is not analytic, such as abs or a .real. Arrays of the wrong shape
    or with non-finite entries are left to the element-wise comparison."""
    arrays = _all_arrays(kernel, p)
    values = _as_numeric(analytic)
    if any(values.get(k) is None or values[k].shape != np.shape(a) or not np.isfinite(values[k]).all()
           for k, a in arrays.items()):
        return ""
    v = _direction(arrays, seed)
    if v is None:
        return ""
    q = p.with_dtype(np.float64)
    largest = max((float(np.max(np.abs(a), initial=0.0)) for a in arrays.values()), default=1.0)

    def at(delta):
        return loss(kernel, _shifted(kernel, q, v, delta))

    exact = sum(float(np.sum(values[k] * v[k])) for k in v)
    gradient_norm = np.sqrt(sum(float(np.sum(values[k] ** 2)) for k in v))
    scale = max(gradient_norm, FLOORS["central"] * unit / TOLERANCE["central"])
    numeric = _fourth_order(at, _step(largest))
    rel = float(_relative(numeric, exact, scale))

    def within_at_smaller_step(shrink):  # a kink within the stencil spoils a step, not every smaller one
        step = _step(largest, shrink)
        smaller = _fourth_order(at, step)
        if not _relative(smaller, exact, scale) <= TOLERANCE["central"]:  # held away, it would be farther
            return False
        rounding = _stencil_rounding(lambda delta: _loss_rounding(kernel, _shifted(kernel, q, v, delta)), step, unit)
        return float(_relative(_held_away(smaller, exact, rounding), exact, scale)) <= TOLERANCE["central"]

    if rel <= TOLERANCE["central"] or any(map(within_at_smaller_step, SMALLER_STEPS)):
        return ""
    return (f"the analytic gradient gives {exact:.10g}, central differences {numeric:.10g}: {rel:.1e} of the "
            f"gradient's norm (tolerance {TOLERANCE['central']:.0e})")


def _direction(arrays, seed=0):
    """The random unit direction through every array (name -> array) that directional() takes for
    seed, as arrays of the same names; None where the arrays hold no element."""
    rng = np.random.default_rng([seed, 1])
    v = {k: rng.standard_normal(np.shape(a)) for k, a in arrays.items()}
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in v.values()))
    return {k: d / norm for k, d in v.items()} if norm else None


def failing_term(kernel, p: Problem, seed=0, unit=0.0):
    """"" unless the gradients of one of the loss's two terms alone, the outputs' (dstate = 0) and
    the final state's (dys = 0), fail along a random direction where the other's pass: then which,
    and the mistakes that make it so. Where a kernel's gradients fail at every step and every array,
    this tells a dstate dropped or added twice from a dys dropped at some step."""
    if not (np.any(p.dys) and any(np.any(d) for d in p.dstate)):  # a term that is 0 passes whatever the kernel
        return ""
    terms = {"dstate = 0 (the outputs' term alone)": replace(p, dstate=zeros_like_each(p.dstate)),
             "dys = 0 (the final state's term alone)": replace(p, dys=np.zeros_like(p.dys))}
    failing = []
    for name, q in terms.items():
        try:
            with np.errstate(all="ignore"):
                failing += [name] if directional(kernel, q, analytic_gradients(kernel, q), seed, unit) else []
        except Exception:  # noqa: BLE001 - a kernel that refuses zeros: nothing to tell
            return ""
    if len(failing) != 1:
        return ""
    wrong = failing[0]
    right = next(name for name in terms if name != wrong)
    cause = _DSTATE_MISHANDLED if wrong.startswith("dys = 0") else _DYS_MISHANDLED
    return f"with {wrong} the gradients fail along a random direction, with {right} they pass: {cause}"


_DSTATE_MISHANDLED = ("backward() mishandles dstate (dropped, or added to the last step's adjoint twice, or "
                      "to the wrong state?)")
_DYS_MISHANDLED = "backward() mishandles dys (a step's dropped, or read at the wrong step?)"


def sequences_alone(kernel, p: Problem):
    """"" unless the problem has lengths and some sequence's outputs over its own steps, or its
    final state, differ from those of the sequence run alone: then which, and by how much. The
    gradients check forward() against backward(); a forward() that ends a sequence at the wrong
    step, with a backward() to match, passes them and fails this."""
    if p.lengths is None:
        return ""
    q = p.with_dtype()
    ys, final, _ = run_forward(kernel, q, tuple(map(copy_or_none, q.state)))
    for b, n in enumerate(np.asarray(p.lengths)):
        row = tuple(None if s is None else np.array(s[b:b + 1]) for s in q.state)
        try:
            ys_b, final_b, _ = kernel.forward(q.params, q.x[:n, b:b + 1], row)
        except Exception as error:  # noqa: BLE001 - a kernel that cannot run the sequence alone is reported
            return f"sequence {b} (length {n}) run alone raised {raised(kernel, error)}"
        pairs = [("outputs", np.asarray(ys)[:n, b], np.asarray(ys_b)[:, 0])]
        pairs += [(f"final {s}", np.asarray(f)[b], np.asarray(f_b)[0]) for s, f, f_b in zip(kernel.STATES, final, final_b)]
        for what, batch, alone in pairs:
            scale = max(np.max(np.abs(alone), initial=0.0), np.max(np.abs(batch), initial=0.0))
            error = np.max(np.abs(batch - alone), initial=0.0)
            if not error <= ALONE_TOLERANCE * scale:
                return (f"sequence {b} (length {n}): its {what}, in the batch and run alone, differ by "
                        f"{error / scale if scale else error:.1e} of the largest entry (tolerance "
                        f"{ALONE_TOLERANCE:.0e}); forward() must end each sequence after its own steps")
    return ""


def _shifted(kernel, p, v, delta):
    """The problem with every array moved by delta along v."""
    return _with_arrays(kernel, p, {k: np.asarray(a) + delta * v[k] for k, a in _all_arrays(kernel, p).items()})


def _sample(arrays, values, sample, seed):
    """None (every element), or a boolean mask per array: `sample` elements drawn at random, the
    analytic gradient's largest entry among them (values: _as_numeric's), so that the array's
    scale is judged too."""
    if sample is None:
        return None
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 1:
        raise ValueError(f"sample: expected a whole number of elements of at least 1, or None, got {sample!r}")
    rng = np.random.default_rng(seed)
    chosen = {}
    for name, a in arrays.items():
        mask = np.zeros(np.shape(a), bool)
        if mask.size:
            flat = mask.reshape(-1)
            flat[rng.choice(mask.size, size=min(sample, mask.size), replace=False)] = True
            g = np.abs(values[name])
            if g.shape == mask.shape and np.isfinite(g).any():
                flat[np.argmax(np.where(np.isfinite(g), g, -1.0).reshape(-1))] = True
        chosen[name] = mask
    return chosen


def _numeric(kernel, p, method, values, finite, chosen=None):
    """The method's gradients (None where it judges no element at all), why it cannot judge some
    elements ("" where it judges all), and how many of them it lost to an overflow in complex
    arithmetic. The complex step needs a kernel that carries complex numbers through, and a loss
    that stays finite in complex arithmetic; an element it cannot judge takes the analytic value
    (values: _as_numeric's) here, so that its report lists only the elements it did judge (the
    report fails all the same)."""
    if method != "complex":
        return METHODS[method](kernel, p, chosen), "", 0
    try:
        with _quietly():  # what it lost is said once, in the report
            numeric = complex_step(kernel, p, chosen)
    except Exception as error:  # noqa: BLE001 - a kernel that cannot run in complex numbers
        return None, (f"(in complex arithmetic, the kernel raised {raised(kernel, error)}); "
                        f"central differences can: {WITHOUT_COMPLEX}"), 0
    judged = {k: np.ones(n.shape, bool) if chosen is None else chosen[k] for k, n in numeric.items()}
    if all(not n[judged[k]].any() for k, n in numeric.items()) and any(np.any(values[k]) for k in numeric):
        return None, (f"(no imaginary part reaches the loss: the kernel drops it, in a float "
                        f"buffer, .real or abs); central differences can: {WITHOUT_COMPLEX}"), 0
    lost = {k: judged[k] & ~np.isfinite(n) & np.isfinite(values[k]) if values[k].shape == n.shape
            else np.zeros(n.shape, bool) for k, n in numeric.items()}
    if finite and any(v.any() for v in lost.values()):
        numeric, lost = _again_in_clongdouble(kernel, p, numeric, lost)
    count = sum(int(v.sum()) for v in lost.values())
    if not count or not finite:
        return numeric, "", 0
    kept = {k: np.where(lost[k], values[k], n) for k, n in numeric.items()}
    return kept, (f"{_elements(count)} (the loss is finite, but not at their complex step: in complex "
                  "arithmetic a value overflowed or became nan where the real one stays finite, as exp does "
                  "beyond |Re a| of about 709, or 354 for a tanh through exp(-2a), as the generated kernels' "
                  f"forward() docstrings say); central differences can: {WITHOUT_COMPLEX}"), count


def _again_in_clongdouble(kernel, p, numeric, lost):
    """The complex step of the elements lost to overflow (lost: a mask per array), taken again in
    np.clongdouble where the platform's is wider than complex128 (x86's: exp overflows past about
    11356, not 709): (numeric with those it judged, the mask of those still lost)."""
    if not WIDE:
        return numeric, lost
    try:
        with _quietly():
            wide = complex_step(kernel, p, lost, np.clongdouble)
    except Exception:  # noqa: BLE001 - a kernel that refuses clongdouble: the elements stay lost
        return numeric, lost
    found = {k: lost[k] & np.isfinite(w) for k, w in wide.items()}
    return ({k: np.where(found[k], wide[k], n) for k, n in numeric.items()},
            {k: lost[k] & ~found[k] for k in lost})


@contextlib.contextmanager
def _quietly():
    """No floating-point warnings, nor NumPy's for a complex value cast to a real one."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", getattr(np, "exceptions", np).ComplexWarning)
        yield


def _as_numeric(analytic):
    """The analytic gradients as float arrays; NaN for what is not an array of numbers."""
    def floats(v):
        a = np.asarray(v)
        return a.real.astype(np.float64) if a.dtype.kind in "fc" else np.full(np.shape(a), np.nan)
    return {k: floats(v) for k, v in analytic.items()}
