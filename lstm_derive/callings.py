"""Checks of how a kernel is called, not of its numbers.

A kernel's results must not change with how a user calls it: None for a zero state or upstream
gradient, another call between a forward() and its backward(), backward() twice on one cache, or
the step functions in place of forward() and backward().
"""

from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np

from .problem import (ALONE_TOLERANCE, EPS, FLOORS, TOLERANCE, Problem, copy_or_none, loss_magnitude, raised,
                      run_forward, run_problem, state_names, takes_lengths, zeros_like_each)

# Two float32 runs of the same arithmetic (None against zeros, a call between two others) agree to
# a few roundings: a state None read as 3e-5 in float32 fails (tests/test_gradcheck.py). Step by step
# from None in float32 sums in another order (one GEMM a step, not one for all steps), and the
# problem's conditioning amplifies the two runs' rounding as it does the float32 report's (1.2e-5
# of the largest entry on a right kernel at T = 30, weight scale 2): that comparison takes the float32
# report's tolerance, far below what a step function that reads None wrongly gives (O(1)), and a
# dtype wrong is told by the dtype itself.
SAME_ORDER32 = 1e-5


def calls_as_users_make_them(kernel, p: Problem, seed=0, straight=None, unit=None, float32=True):
    """"" unless the kernel's results change with how it is called, beyond rounding: None for a zero
    state, dys or dstate (in float64, and in float32 where float32 is judged: a kernel for float64
    alone is not run in float32); a second forward() and backward(), of other parameters and lengths,
    between a forward() and its backward() (a stack of layers, a batch made ready early: what one
    call keeps for the next corrupts them); a second backward() on one forward()'s cache, which must
    give the first's gradients or raise; step_forward() and step_backward() over the steps, from a
    given state and from None, where the kernel has them with the generated kernels' signatures (and
    the problem no lengths: they take none). Else how it was called, what differs, and what a kernel
    must do. The other checks call forward() then backward() on fresh arrays, which none of these
    mistakes disturbs. straight (run_problem's results) and unit (eps |L|), where the caller has them, are
    not computed again."""
    q = p.with_dtype()
    straight = _named_results(kernel, *(straight or run_problem(kernel, q)))
    if unit is None:
        magnitude = loss_magnitude(kernel, q)
        unit = EPS * magnitude if np.isfinite(magnitude) else 0.0
    ways = [(*way, SAME_ORDER32) for way in [
        *_with_none(kernel, q), *(_with_none(kernel, q.with_dtype(np.float32)) if float32 else ()),
        ("with another forward() and backward() between a forward() and its backward() (a stack of layers)",
         _KEEP_NOTHING, lambda: _interleaved(kernel, q, seed, straight)),
        ("with backward() called twice on one forward()'s cache", _ONCE_OR_REFUSE,
         lambda: _backward_twice(kernel, q, straight))]]
    if _has_step_functions(kernel) and q.lengths is None and len(q.x):
        stepwise = "step by step, with step_forward() and step_backward()"
        ways.append((stepwise, _AGREE, lambda: _stepwise(kernel, q, straight), SAME_ORDER32))
        if float32:
            ways.append((f"{stepwise} from state=None in float32", _AGREE, lambda: _stepwise_from_none(kernel, q),
                         TOLERANCE["float32"]))
    for how, what_to_do, run, tolerance32 in ways:
        try:
            with np.errstate(all="ignore"):
                pairs = run()
        except Exception as error:  # noqa: BLE001 - said, as what differs
            return f"{how}, the kernel raised {raised(kernel, error)}"
        differs = "" if pairs is None else _first_difference(pairs, unit, tolerance32)
        if differs:
            return f"{how}, {differs}: {what_to_do}"
    return ""


def _has_step_functions(kernel):
    """Whether the kernel has step_forward(params, x_t, state) and step_backward(params, cache,
    dy_t, dstate), as the generated kernels do, params first by name; functions of those names that
    take other arguments (a tutorial's step_forward(x_t, h_prev, params) helper) are the kernel's own
    business."""
    try:
        forward, backward = inspect.signature(kernel.step_forward), inspect.signature(kernel.step_backward)
        forward.bind(None, None, None), backward.bind(None, None, None, None)
    except (AttributeError, TypeError, ValueError):  # absent, another signature, or none to read
        return False
    return all(next(iter(s.parameters), None) == "params" for s in (forward, backward))


# What a kernel must do, said where calls_as_users_make_them finds it does not.
_NONE_IS_ZEROS = "None must mean zeros (of x's dtype), as in PyTorch and the generated kernels"
_KEEP_NOTHING = ("a call must keep nothing for a later one outside the cache it returns, and return arrays no "
                 "later call writes into")
_AGREE = "step_forward() and step_backward() must give what forward() and backward() give over the same steps"
_ONCE_OR_REFUSE = ("a second backward() on a cache must give the first one's gradients, leaving those alone, or "
                   "raise, as the generated kernels do where backward() writes over its cache")


def _with_none(kernel, q):
    """(how, what to do, run) for None in place of the initial state, dys and dstate: each run pairs the results
    of the problem with zeros there against those with None; None where the kernel refuses None,
    by any exception (its callers see it refuse: no silent harm). A kernel may return None for the
    gradient of an initial state it was given as None."""
    dtype = np.asarray(q.x).dtype
    for name, zero in (("state", zeros_like_each(q.state)), ("dys", np.zeros_like(q.dys)),
                       ("dstate", zeros_like_each(q.dstate))):
        def run(name=name, zero=zero):
            z = replace(q, **{name: zero})
            try:
                expected = _named_results(kernel, *run_problem(kernel, z))
            except Exception:  # noqa: BLE001 - a kernel for float64 alone: the float32 report says so
                return None
            given = replace(z.with_dtype(), **{name: None})
            try:
                ys, final, cache = run_forward(kernel, given, given.state)
                # as run_problem: backward() may write over them
                ys, final = copy_or_none(ys), tuple(map(copy_or_none, final))
                out = kernel.backward(given.params, cache, given.dys, given.dstate)
            except Exception:  # noqa: BLE001 - a kernel that refuses None
                return None
            got = _named_results(kernel, ys, final, _gradients(kernel, *out))
            return {key: (expected[key], got.get(key)) for key in expected
                    if not (name == "state" and key in _state_gradients(kernel) and got.get(key) is None)}
        yield f"with {name}=None (meaning zeros) in {dtype}", _NONE_IS_ZEROS, run

def _state_gradients(kernel):
    return {f"d{s}" for s in state_names(kernel)}


def _named_results(kernel, ys, final, grads):
    """A run's results by name: ys, final h, ..., and dW_x, ..., dx, dh0, ..."""
    return {"ys": ys, **{f"final {s}": f for s, f in zip(kernel.STATES, final)},
            **{f"d{name}": g for name, g in grads.items()}}


def _gradients(kernel, grads, dx, dstate0):
    """backward()'s results, named as analytic_gradients names them."""
    dstate0 = tuple(dstate0) if isinstance(dstate0, (tuple, list)) else (dstate0,)
    return {**{name: grads.get(name) for name in kernel.PARAMS}, "x": dx, **dict(zip(state_names(kernel), dstate0))}


def _interleaved(kernel, q, seed, straight):
    """The problem's results as a caller holds them when forward(1), forward(2), backward(1) and
    backward(2) run in turn, call 2 with other parameters, inputs and lengths, against forward(1)
    and backward(1) alone (straight): a buffer a later call overwrites, or a value one call leaves
    for the next (the weights, the lengths' mask), shows. The outputs are read before backward(1),
    which may write over its own cache."""
    rng = np.random.default_rng([seed, 2])
    T, B = np.shape(q.x)[:2]
    lengths = tuple(int(n) for n in rng.integers(0, T + 1, B)) if takes_lengths(kernel) else None
    other = replace(q, params={k: 0.9 * np.asarray(v) for k, v in q.params.items()}, lengths=lengths,
                    x=rng.standard_normal(np.shape(q.x)), dys=rng.standard_normal(np.shape(q.dys)),
                    state=tuple(np.abs(rng.standard_normal(np.shape(s))) + 0.5 for s in q.state)).with_dtype()
    first = q.with_dtype()
    ys, final, cache = run_forward(kernel, first, first.state)
    _, _, cache_other = run_forward(kernel, other, other.state)
    held = _named_results(kernel, copy_or_none(ys), tuple(map(copy_or_none, final)), {})  # as the caller holds them now
    grads = _gradients(kernel, *kernel.backward(first.params, cache, first.dys, first.dstate))
    kernel.backward(other.params, cache_other, other.dys, other.dstate)
    held.update({f"d{name}": g for name, g in grads.items()})
    return {key: (straight[key], held[key]) for key in straight}


def _backward_twice(kernel, q, straight):
    """The gradients of a second backward() on one forward()'s cache (keyed "the second's ..."), and the
    first one's as its caller holds them after it, against straight's; None where the second
    refuses, by any exception (its caller sees it refuse: no silent harm). A backward() that writes
    over its cache (the generated kernels write the pre-activations' gradients over the gates) and
    then reads it as the forward values gives a second caller wrong gradients without a word."""
    first = q.with_dtype()
    _, _, cache = run_forward(kernel, first, first.state)
    grads = _gradients(kernel, *kernel.backward(first.params, cache, first.dys, first.dstate))
    again = q.with_dtype()
    try:
        repeated = _gradients(kernel, *kernel.backward(again.params, cache, again.dys, again.dstate))
    except Exception:  # noqa: BLE001 - a kernel that refuses a cache used before
        return None
    pairs = {}
    for name in grads:
        expected = straight[f"d{name}"]
        pairs[f"d{name}"], pairs[f"the second's d{name}"] = (expected, grads[name]), (expected, repeated[name])
    return pairs


def _stepwise(kernel, q, straight):
    """The problem's results from step_forward() at every step and step_backward() back over them
    (the parameters' gradients summed over the steps), against forward() and backward()'s; None
    where the step functions are not the generated kernels' (other arguments or results)."""
    got = _stepped(kernel, q.with_dtype())
    return None if got is None else {key: (straight[key], got[key]) for key in straight}


def _stepwise_from_none(kernel, q):
    """_stepwise in float32, from state=None and with dstate=None, against forward() and
    backward() on zeros."""
    low = q.with_dtype(np.float32)
    z = replace(low, state=zeros_like_each(low.state), dstate=zeros_like_each(low.dstate))
    try:
        expected = _named_results(kernel, *run_problem(kernel, z))
    except Exception:  # noqa: BLE001 - a kernel for float64 alone
        return None
    got = _stepped(kernel, replace(z.with_dtype(), state=None, dstate=None))
    return None if got is None else {key: (expected[key], got[key]) for key in expected}


def _stepped(kernel, p):
    """The named results of step_forward() and step_backward() over p's steps, or None where they
    do not take and give what the generated kernels' do."""
    state, ys, caches = p.state, [], []
    for x_t in p.x:
        out = kernel.step_forward(p.params, x_t, state)
        if not (isinstance(out, tuple) and len(out) == 3 and isinstance(out[1], (tuple, list))):
            return None  # a step function of another kind: (params, x_t, h) -> h, say
        y_t, state, cache = out
        ys.append(y_t)  # as returned: a buffer reused for every step shows
        caches.append(cache)
    final, dstate, sums, dx = tuple(map(copy_or_none, state)), p.dstate, {}, [None] * len(ys)
    for t in reversed(range(len(ys))):
        out = kernel.step_backward(p.params, caches[t], p.dys[t], dstate)
        if not (isinstance(out, tuple) and len(out) == 3):
            return None
        grads, dx[t], dstate = out
        for name in kernel.PARAMS:
            sums[name] = grads[name] + sums[name] if name in sums else np.array(grads[name])
    return _named_results(kernel, np.stack(ys), final, _gradients(kernel, sums, np.stack(dx), dstate))


def _first_difference(pairs, unit=0.0, tolerance32=SAME_ORDER32):
    """"" where every (expected, got) pair agrees in shape, dtype and values to rounding, relative to
    its largest finite entry (ALONE_TOLERANCE in float64, tolerance32 in float32), or to an absolute
    floor of ten units of its dtype's rounding of the loss, |L| (unit: eps |L|), for an array whose
    whole value is below what rounding resolves (a gradient that is 0 in exact arithmetic); the same
    nan or inf in both agrees. Else the first pair that does not, and how."""
    for key, (expected, got) in pairs.items():
        e = np.asarray(expected)
        if e.dtype.kind not in "fc":  # no gradient to compare: the other checks name what it is
            continue
        if got is None:
            return f"{key} is None, where an array {e.shape} was expected"
        g = np.asarray(got)
        if g.shape != e.shape or g.dtype != e.dtype:
            return f"{key} is {g.dtype} of shape {g.shape}, not {e.dtype} of shape {e.shape}"
        tolerance = ALONE_TOLERANCE if e.dtype.itemsize >= 8 else tolerance32
        floor = (FLOORS["complex"] if e.dtype.itemsize >= 8 else FLOORS["float32"]) * unit
        with np.errstate(invalid="ignore"):
            same = (e == g) | (np.isnan(e) & np.isnan(g))  # nan and inf where both have them agree
            error = np.where(same, 0.0, np.abs(e.astype(np.complex128) - g))
        finite = np.isfinite(e) & np.isfinite(g)
        scale = max(float(np.max(np.abs(e[finite]), initial=0.0)), float(np.max(np.abs(g[finite]), initial=0.0)),
                    floor / tolerance)
        worst = float(np.max(error, initial=0.0))
        if not np.isfinite(worst):  # "differs by nan of its largest entry" would say nothing
            index = tuple(int(i) for i in np.argwhere(~np.isfinite(error))[0])
            return (f"{key}{list(index)} is {g[index]:.4g}, where a lone call with every argument given has "
                    f"{e[index]:.4g}")
        if not worst <= tolerance * scale:
            return (f"{key} differs by {worst / scale if scale else worst:.1e} of its largest entry (tolerance "
                    f"{tolerance:.0e})")
    return ""
