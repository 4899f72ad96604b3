"""Guesses at why a gradient check failed, in words: what a failing gradient is of the numeric one
(0, a multiple, its transpose, its steps reversed, right in some gates' rows alone), and which
method to believe where two disagree (a chaotic or ill-conditioned problem, a forward that is not
complex-analytic, a loss too sharp for central differences' step)."""

from __future__ import annotations

import numpy as np

from .problem import EPS, EPS32, TOLERANCE


def runs(indices):
    """[0, 1, 2, 4] -> [(0, 2), (4, 4)]: the runs of consecutive indices, each as (first, last)."""
    found = []
    for i in indices:
        if found and i == found[-1][1] + 1:
            found[-1][1] = i
        else:
            found.append([i, i])
    return [tuple(r) for r in found]


def steps_text(steps):
    """[0, 1, 2, 4] -> "0-2, 4"."""
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs(steps))


def likely(a, n, tolerance):
    """What a failing analytic gradient a is of the numeric one n, where that is simple: 0, a
    constant multiple of it (a sign flipped, a sum taken as a mean or a term counted twice), or n's
    transpose (an outer product the wrong way round); else "", also for an array of one or two
    elements, which any error makes a multiple. tolerance: absolute, as compare's."""
    if (a.size < 3 or np.iscomplexobj(a) or not (np.all(np.isfinite(a)) and np.all(np.isfinite(n)))
            or not np.any(n)):
        return ""
    agrees = lambda u, v: float(np.max(np.abs(u - v))) <= tolerance  # noqa: E731
    if not np.any(a):
        return "0 everywhere: never computed, or never accumulated?"
    large = np.abs(n) > 1e-2 * np.max(np.abs(n))
    ratio = float(np.median(a[large] / n[large]))
    if agrees(a, ratio * n):
        return _multiple(ratio)
    if a.ndim == 2 and a.shape[0] == a.shape[1] and agrees(a, n.T):
        return "the numeric gradient transposed: an outer product the wrong way round?"
    if a.ndim == 3 and len(a) > 1 and agrees(a, n[::-1]):
        return "the numeric gradient with its steps in reverse order: kept in the backward loop's order?"
    return ""


def by_blocks(a, n, tolerance, rows):
    """What a failing gradient stacked by blocks of rows (one gate's each) is, block by block, where
    that says more than "wrong" everywhere: which rows are right and which are not, and what the
    wrong ones are of the numeric gradient where likely() sees it (a gate's outer product transposed,
    which the whole array, not square, cannot show); else "". tolerance: absolute, as compare's."""
    if not rows or a.ndim not in (1, 2) or len(a) % rows or len(a) // rows < 2 or np.iscomplexobj(a):
        return ""
    kinds = []
    for start in range(0, len(a), rows):
        u, v = a[start:start + rows], n[start:start + rows]
        right = bool(np.all(np.isfinite(u))) and float(np.max(np.abs(u - v))) <= tolerance
        kinds.append("right" if right else likely(u, v, tolerance) or "wrong")
    if set(kinds) == {"wrong"}:
        return ""
    said = {kind: ", ".join(f"{first * rows}-{(last + 1) * rows - 1}"  # blocks 0-2, 4 as rows 0-11, 16-19
                            for first, last in runs([i for i, k in enumerate(kinds) if k == kind]))
            for kind in dict.fromkeys(kinds)}
    parts = [f"right in rows {r}" if kind == "right" else f"wrong in rows {r}" if kind == "wrong"
             else f"in rows {r}, {kind}" for kind, r in said.items()]
    return f"by blocks of {rows} rows, a gate's each where gates are stacked: {'; '.join(parts)}"


def _multiple(ratio):
    """A gradient ratio times the numeric one, in words."""
    if abs(ratio + 1) < 1e-6:
        return "the numeric gradient with its sign flipped"
    for k, words in ((1 / ratio if ratio else 0, "1/{k} of the numeric gradient: a sum of {k} terms, rows or steps, "
                                                  "taken as their mean, or one alone?"),
                     (ratio, "{k} times the numeric gradient: a term counted {k} times?")):
        if 2 <= round(k) <= 10000 and abs(k - round(k)) < 1e-6 * k:
            return words.format(k=round(k))
    return f"{ratio:.6g} times the numeric gradient"


WITHOUT_COMPLEX = 'methods=("central", "float32") (on the command line, --methods central float32)'


# Where rounding the inputs to float32 alone moves the float64 gradients by more than this (of an
# array's largest entry), the float32 run's arithmetic, amplified alike and some ten times larger,
# can pass the tolerance on a right kernel: gru at T = 50 and weights of scale 10 moves by 1.5e-4
# where its float32 run is off by 1.1e-3; the CLI's problems move by about 2e-7.
ILL_CONDITIONED = TOLERANCE["float32"] / 100
# How far the float32 run is off beside that movement tells a right kernel from a wrong one on no
# problem: over 1900 problems of 12 to 50 steps at weights of scale 3 to 10 (16 cells), right
# kernels that move by more than ILL_CONDITIONED were off by up to 92 times it (lstmp, T = 30,
# scale 10) and 918 (gru_peep, whose float32 forward fails too), while a float32 path off by a
# tenth of a percent is off by 1e-3 / 1e-5 = 100 times it or less. The same problem at weights
# CALMER times smaller does: there the 34 right kernels that failed or came near were off by at
# most 3.5e-6, a path wrong at every scale by its slip, so the hint needs the float32 run within CALM
# there (a margin of 14 each way); a path wrong in saturation alone passes there, and the hint says so.
CALMER = 8
CALM = TOLERANCE["float32"] / 20
# Where rounding the inputs to float32 moves the float64 gradients by more than this, the problem
# amplifies rounding so much (here by 5e4 and more) that float64's own, amplified alike, reaches a
# tenth of the complex step's tolerance: a chaotic problem, on which a right kernel fails every
# method (rnn at H = 64, weights of scale 1, T = 50: 0.98, and the complex step off by 2e-5).
CHAOTIC = TOLERANCE["complex"] / 10 * EPS32 / EPS
# An array whose largest entry is below this fraction of the gradient's largest array's is a sum
# whose terms cancel (dh0 of a cell whose recurrent paths offset each other): float32's rounding of
# the terms, small beside them, can be large beside it.
CANCELLED = 1e-2


def _cancelled(low, float64="the float64 run passes the other checks,"):
    """Where the float32 run fails only on arrays far smaller than the gradient's largest (CANCELLED),
    by errors within its tolerance of that largest array's scale: what that suggests; else "".
    float64: how the float64 run fared on the other checks, in words (_float64_verdict)."""
    failing = sorted({m.name for m in low.mismatches})
    top = max(low.largest.values(), default=0.0)
    if not (failing and top > 0 and all(low.largest.get(n, top) <= CANCELLED * top for n in failing)):
        return ""
    worst = max(abs(m.analytic - m.numeric) for m in low.mismatches) / top
    if not worst <= low.tolerance:
        return ""
    names = ", ".join(f"d{n}" for n in failing)
    ratio = max(low.largest[n] for n in failing) / top
    return (f"{float64} and float32 fails on {names} alone, whose entries are at "
            f"most {ratio:.0e} of the largest gradient's ({top:.1e}): likely a sum whose terms cancel, and float32's "
            f"rounding of them, {worst:.1e} of that largest gradient, is large beside its own entries; a path wrong "
            "in float32 alone fails on the larger arrays or on other problems too, which tells")


def hint_at_the_cause(reports):
    """Where one method agrees with the kernel and the other does not, the likelier cause: the
    complex step's exact derivative against central differences' truncation (a loss far from
    smooth at their step's scale), central differences against a forward that is not
    complex-analytic, or float64 passing against float32's rounding on an ill-conditioned problem."""
    by = {r.method: r for r in reports}
    if _hint_chaotic(by):
        return
    if "float32" in by:
        _hint_float32(by)
    if {"central", "complex"} <= set(by):
        _hint_central_or_complex(by["central"], by["complex"])
    for report in reports:
        _hint_float64_rounding(report)


def _hint_float64_rounding(report):
    """Where every failing element is one the kernel run in extended precision gets right, and only
    its float64 run is off, by more than the rounding the check excuses: how far, and what that
    suggests. No excuse: a path wrong in float64 alone looks the same."""
    from .gradcheck import ROUNDING_UNITS

    if not _off_by_float64_rounding_alone(report):
        return
    failing = {(m.name, m.index) for m in report.mismatches}
    units = max(report.beyond_rounding[f] for f in failing)
    names = ", ".join(f"d{n}" for n in sorted({n for n, _ in failing}))
    report.hint = (f"the kernel run in extended precision (np.longdouble) agrees with the {report.method} "
                   f"{'step' if report.method == 'complex' else 'differences'} on every failing element ({names}), "
                   f"and its float64 run is off from it there by up to {units:.0f} units of eps*max(|L|, the "
                   f"array's largest entry), beyond the {ROUNDING_UNITS} excused as rounding: the formula is right; "
                   "float64's rounding of a sum whose large terms cancel to a small gradient comes to that, and so "
                   "does a path wrong in float64 alone")


def _hint_chaotic(by):
    """Whether the problem is chaotic, every report then told so: a right kernel fails every method."""
    low, others = by.get("float32"), [r for m, r in by.items() if m != "float32"]
    if not (low is not None and low.sensitivity > CHAOTIC and not all(r.ok for r in others)):
        return False
    for r in [low, *others]:
        r.hint = (f"rounding this problem's inputs to float32 alone moves its float64 gradients by "
                  f"{low.sensitivity:.1e} of an array's largest entry: a chaotic problem (large weights over many "
                  "steps), which amplifies float64's own rounding alike, past every method's tolerance, so that "
                  "a right kernel fails on it; a smaller scale tells")
    return True


def _hint_float32(by):
    """Where the float32 run alone fails: an ill-conditioned problem, or terms that cancel; where it
    cannot run, nor the complex step: central differences alone."""
    low, others = by["float32"], [r for m, r in by.items() if m != "float32"]
    others_pass = bool(others) and all(r.ok or _off_by_float64_rounding_alone(r) for r in others)
    float64 = _float64_verdict(others)
    if (others_pass and (low.mismatches or low.forward) and not low.wrong_shapes and not low.unjudged
            and low.sensitivity > ILL_CONDITIONED and low.calmer is not None and low.calmer <= CALM):
        low.hint = (f"{float64} and rounding this problem's inputs to float32 alone "
                    f"moves its float64 gradients by {low.sensitivity:.1e} of an array's largest entry: an "
                    "ill-conditioned problem (large weights over many steps), on which float32's rounding fails a "
                    f"right kernel; at weights {CALMER} times smaller the float32 run is off by {low.calmer:.1e}, "
                    "where a path wrong in float32 at every scale fails; one wrong in saturation alone would not")
    elif others_pass and low.mismatches and not (low.forward or low.wrong_shapes or low.unjudged):
        low.hint = _cancelled(low, float64)
    if "complex" in by and low.unjudged and by["complex"].unjudged:
        low.hint = by["complex"].hint = ("the kernel runs neither in complex numbers nor in float32: "
                                         "methods=(\"central\",) (--methods central) judges it by central "
                                         "differences alone")


def _off_by_float64_rounding_alone(report):
    """Whether a float64 method's report fails on nothing but elements that the kernel run in extended
    precision meets that method on (beyond_rounding): the formula right, and float64's rounding of it
    off by more than is excused. It still fails; a float32 hint may read it as the float64 run's
    passing, since a float32 path is judged against that same formula."""
    failing = {(m.name, m.index) for m in report.mismatches}
    return bool(failing) and failing <= set(report.beyond_rounding) and not any(
        getattr(report, check) for check in _OTHER_FAILURES)


_OTHER_FAILURES = ("wrong_shapes", "unjudged", "directional", "alone", "forward", "calls", "written", "vacuous")


def _float64_verdict(others):
    """How the float64 run fared on the other methods' checks, in words, for a float32 hint: it
    passes them, or fails them only where its extended-precision run is right (which arrays)."""
    rounded = [r for r in others if not r.ok]
    if not rounded:
        return "the float64 run passes the other checks,"
    names = ", ".join(sorted({f"d{m.name}" for r in rounded for m in r.mismatches}))
    methods = " and ".join(_METHOD_NAMES.get(r.method, r.method) for r in rounded)
    return (f"the float64 run passes the other checks but {methods} on {names}, where the kernel run in extended "
            f"precision agrees with {'them' if len(rounded) > 1 else 'it'} (float64's own rounding, as said there),")


_METHOD_NAMES = {"central": "central differences", "complex": "the complex step"}


def _hint_central_or_complex(central, complex_):
    """Where central differences and the complex step disagree on a kernel both could judge: which
    to believe."""
    if central.wrong_shapes or central.unjudged or complex_.unjudged:
        return
    if (central.mismatches or central.directional) and not complex_.mismatches:
        central.hint = complex_.hint = (
            "the complex step, exact to rounding, agrees with the kernel element by element where central "
            "differences do not, even at a hundredth of their step: on this problem the loss changes too fast "
            "for them (a chaotic or saturated recurrence: large weights over many steps, or a kink such as relu's 0 "
            "closer than that step); a smaller scale tells (scale=, or --scale of lstm-derive check)")
    elif complex_.mismatches and not central.mismatches and not central.directional:
        complex_.hint = (
            "central differences agree with the kernel where the complex step does not: its forward is likely "
            "not complex-analytic (abs, np.maximum, a comparison, .real, or a float buffer bend or drop the "
            f"imaginary part); {WITHOUT_COMPLEX} judges it without the complex step")
