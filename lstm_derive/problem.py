"""The problem a kernel's gradients are checked on, and one run of the kernel on it.

A problem is a kernel's inputs with the upstream gradients that define the checked scalar,
L = sum(ys * dys) + sum_k sum(state_T[k] * dstate[k]). Here too are how closely results must agree
(``TOLERANCE``, ``FLOORS``), shared by lstm_derive.gradcheck and lstm_derive.callings, and what a
kernel raised, in words.
"""

from __future__ import annotations

import inspect
import os
import traceback
from dataclasses import dataclass, replace

import numpy as np

EPS = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps

# Relative to each array's largest entry, in float64. The complex step has no subtractive
# cancellation, so it is held to nearly machine precision. Central differences (of fourth order,
# see central_differences) carry a rounding error of 1.5 eps / step = 5.5e-11 times the loss's scale,
# and a truncation of order step^4 that is negligible at step cbrt(eps) where the loss bends on a
# scale of 1, but not on a saturated recurrence, whose gradients are large beside |L| and whose loss
# bends within 1e-4: lstmp (an LSTM whose projection feeds W_r, tests/test_gradcheck.py) over 12
# steps at weights of scale 8 had dx off by 9.8e-7 at the full step, by 1/16 of that at half of it,
# and in 3 of 30 seeds by more than the tolerance (6.2e-6 at worst), while the complex step agreed
# to 3e-12. gradcheck.NEAR judges such elements again at smaller steps, so the error a report gives
# is the kernel's and rounding's. Over the problems `lstm-derive check` runs for every packaged cell
# (300 of T <= 5, 100 of T = 12 and 40 of T = 30, each set the four fixed ones, one at weight scale
# 8, then drawn ones of scales 0.1 to 3, half with lengths), the worst central error is 9.3e-8
# (lstm_peephole, T = 12): a margin of 11 for harder problems (drawn cells), and a gradient off by
# 1e-5 of its array's largest entry is still rejected (tests/test_gradcheck.py shows both limits).
# The complex step's worst there is 2.5e-12 (gru_cho), a margin of 40. Over 30 seeds of 12 steps
# at weights of scale 8 (B = 2, D = 3, H = 3), the worst central error is 3.7e-8 for the packaged
# cells, 5.8e-8 for eight more (an IndRNN's), 2.0e-7 for an sLSTM, 1.0e-7 for an mLSTM (2.9e-7,
# truncation, at the full step alone) and 2.9e-7 for lstmp (dc0, whose largest entry is 4e-3 beside
# |L| = 113: rounding at the floor, which smaller steps cannot lower; 9.8e-7, dx's truncation, at
# the full step alone).
TOLERANCE = {"central": 1e-6, "complex": 1e-10, "float32": 1e-3}

# float32: the kernel's outputs, final state and gradients from the problem in float32, against its
# float64 run on the same (rounded) numbers, relative to each array's largest entry. Over the same
# problems as above, float32 rounding gave at most 8.0e-5 for any packaged cell (lstm_seed, T = 30,
# weight scale 8), and the cells tests/test_random_cells.py draws pass too, so 1e-3 leaves a margin
# of about 12 and still rejects a float32 path off by a tenth of a percent; the floor (10 units of
# float32's eps times |L|) matters only for an array whose whole gradient is below float32's
# resolution of the loss. An ill-conditioned problem (large weights over many steps) amplifies
# float32's rounding past it on a right kernel: the report then says so (causes.ILL_CONDITIONED).


# Rounding floors, in units of eps * |L|, where |L| = sum of the magnitudes of the loss's terms.
# A central difference divides the loss's rounding by its step, cbrt(eps); the analytic
# gradient itself carries about eps * |L| absolute error where an output-form derivative
# cancels (1 - y**2 for a tanh rounded to 1). Measured worst case on saturated problems:
# 0.5 units for both (with the second-order difference; the fourth-order one has 1.5x its
# rounding); a floor of 10 units keeps the complex step near 1e-15 * |L| absolute. On a problem
# whose gradients are large beside |L| the loss's own rounding is larger: against the loss in
# np.longdouble, over 10 seeds of 12 steps at weights of scale 8 and 8 points each, it reached
# 6 units (lstmp), 3 to 5.6 for four other cells, 0.8 to 2.9 for the packaged ones (medians 0.2 to
# 1.3); the floor still holds it, and only arrays below floor / tolerance are judged against it.
# Over more points and steps (LOSS_ROUNDING's survey) it reached 82 units for lstmp.
FLOORS = {"central": 10 / np.cbrt(EPS), "complex": 10.0, "float32": 10 * EPS32 / EPS}

# The loss's own rounding in float64, in units of eps * |L|, where the kernel's run in extended
# precision cannot measure it (np.longdouble no wider than float64, or a kernel that refuses it):
# what gradcheck's smaller steps then count against each of a central difference's four losses.
# Measured against np.longdouble for the packaged cells and eleven more (lstmp, mlstm, mgu, sru,
# indrnn, gru_peep, an sLSTM, ugrnn, janet, a coupled-gate LSTM, a cell of mixed activations), at
# 10 seeds of 12 steps at weights of scale 8 (B = 2, D = 3, H = 3) and 3 each of T = 3 at scale 1
# and T = 30 at scale 0.1, 4 elements per array, 3 steps and the stencil's 4 points each: the
# median is 0.1 to 0.8 units, but the largest grows with the problem's conditioning: 1.2 to 10.6
# for the packaged cells (gru the most), 82 for lstmp, 17 for mlstm, 15 for mgu, at most 7.1 for
# the others, all at T = 12 and scale 8; the fourth-order difference's own rounding, which these
# bound by 1.5 r / step, was at most 47 units / step (lstmp). So no fixed allowance is right for
# every problem: the 1.5 units / step that smaller steps allowed before was exceeded by 15 of these
# 19 cells; this covers the worst measured.
LOSS_ROUNDING = 100.0

# A sequence in a batch with lengths against it run alone: the same arithmetic on fewer rows, so
# rounding alone differs (BLAS may sum a product in another order), far below this.
ALONE_TOLERANCE = 1e-10


@dataclass
class Problem:
    """A kernel's inputs and the upstream gradients that define the checked scalar."""

    params: dict
    x: np.ndarray
    state: tuple
    dys: np.ndarray
    dstate: tuple
    lengths: tuple = None  # each sequence's number of steps (forward()'s lengths); None: all T

    def arrays(self):
        """Every array the gradient is taken with respect to, by name."""
        named = dict(self.params)
        named["x"] = self.x
        return named

    def with_dtype(self, dtype=None):
        """The problem in another dtype (None: each array's own), upstream gradients too (a kernel
        takes them in its dtype); new arrays, so a kernel that writes into its arguments cannot
        change this problem. None, for zeros, stays None."""
        cast = lambda a: None if a is None else np.array(a, dtype=dtype)  # noqa: E731
        return replace(self, params={k: cast(v) for k, v in self.params.items()}, x=cast(self.x),
                       state=tuple(map(cast, self.state)), dys=cast(self.dys), dstate=tuple(map(cast, self.dstate)))


def random_problem(kernel, T=3, B=2, D=3, H=4, seed=0, scale=1.0, state_scale=1.0, lengths=None):
    """Parameters uniform in [-scale, scale]; x, states and upstream gradients standard normal,
    but a state the cell declares positive (kernel.POSITIVE_STATES) is state_scale * (0.5 + |N|).
    lengths: None, or each sequence's number of steps, for a kernel that takes them (takes_lengths)."""
    rng = np.random.default_rng(seed)
    params = kernel.init_params(D, H, seed=int(rng.integers(2**31)), scale=scale)
    if not hasattr(params, "keys"):
        raise ValueError(f"init_params() returned a {type(params).__name__}; a kernel's parameters are a dict "
                         f"of arrays, name -> array, with the names of PARAMS {list(kernel.PARAMS)}")
    x = rng.standard_normal((T, B, D))
    positive = getattr(kernel, "POSITIVE_STATES", ())
    state = tuple(state_scale * ((0.5 + np.abs(z)) if s in positive else z)
                  for s, z in ((s, rng.standard_normal((B, H))) for s in kernel.STATES))
    dys = rng.standard_normal((T, B, H))
    dstate = tuple(rng.standard_normal((B, H)) for _ in kernel.STATES)
    lengths = None if lengths is None else tuple(lengths)  # as given: forward() judges them
    return Problem(params, x, state, dys, dstate, lengths).with_dtype(np.float64)  # whatever init_params' own default


def state_names(kernel):
    return [f"{s}0" for s in kernel.STATES]


def takes_lengths(kernel):
    """Whether the kernel's forward() takes lengths (every generated kernel does)."""
    try:
        parameters = inspect.signature(kernel.forward).parameters
    except (TypeError, ValueError):
        return False
    return "lengths" in parameters or any(q.kind == q.VAR_KEYWORD for q in parameters.values())


def run_forward(kernel, p: Problem, state):
    """kernel.forward() of the problem's parameters and x from state, with its lengths if it has some."""
    if p.lengths is None:
        return kernel.forward(p.params, p.x, state)
    return kernel.forward(p.params, p.x, state, lengths=np.array(p.lengths))


def loss(kernel, p: Problem):
    """L = Σ ys·dys + Σ state_T·dstate, the scalar whose gradient the kernel's backward() gives."""
    return _summed_terms(kernel, p, lambda term: term)


def loss_magnitude(kernel, p: Problem):
    """|L|: the sum of the magnitudes of the loss's terms, the scale of its rounding error."""
    return float(_summed_terms(kernel, p, np.abs))


def _summed_terms(kernel, p, f):
    """The sum of f of every term of the loss."""
    ys, final, _ = run_forward(kernel, p, tuple(map(copy_or_none, p.state)))  # a forward may write its state back
    total = np.sum(f(ys * p.dys))
    for s, ds in zip(final, p.dstate):
        total = total + np.sum(f(s * ds))
    return total


def copy_or_none(a):
    return None if a is None else np.array(a)


def analytic_gradients(kernel, p: Problem):
    """The kernel's own gradients, named like the arrays: parameters, x, and h0, c0, ...
    The kernel is given copies: one that writes into its arguments (dys += ...) still has its
    gradients judged against the loss the problem defines."""
    return run_problem(kernel, p)[2]


def run_problem(kernel, p: Problem):
    """ys, the final state and analytic_gradients' named gradients, of one forward() and backward()
    on copies."""
    q = p.with_dtype()
    ys, final, cache = run_forward(kernel, q, q.state)
    ys, final = copy_or_none(ys), tuple(map(copy_or_none, final))  # backward() may write into what forward() returned
    grads, dx, dstate0 = _backward_results(kernel.backward(q.params, cache, q.dys, q.dstate))
    missing = [name for name in kernel.PARAMS if name not in grads]
    if missing:
        raise ValueError(f"backward() returned no gradient for {missing}; PARAMS names {list(kernel.PARAMS)}, "
                         f"its gradients dict has {list(grads)}")
    dstate0 = tuple(dstate0) if isinstance(dstate0, (tuple, list)) else (dstate0,)
    if len(dstate0) != len(kernel.STATES):
        raise ValueError(f"backward() returned {len(dstate0)} initial-state gradient(s); STATES names "
                         f"{len(kernel.STATES)}: {list(kernel.STATES)} (return a tuple, one array per state)")
    out = {name: grads[name] for name in kernel.PARAMS}
    out["x"] = dx
    out.update(zip(state_names(kernel), dstate0))
    return ys, final, out


def _backward_results(out):
    """backward()'s (gradients, dx, initial state's gradients), or a ValueError saying what it
    returned instead."""
    if not (isinstance(out, (tuple, list)) and len(out) == 3):
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else f"a {type(out).__name__}"
        raise ValueError(f"backward() returned {got}; a kernel's backward returns three: (gradients, a dict "
                         "name -> array; dx; the initial state's gradients, a tuple of one array per state)")
    if not hasattr(out[0], "keys"):
        raise ValueError(f"backward() returned its gradients as a {type(out[0]).__name__}; they are a dict, "
                         "name -> array, with the names of PARAMS")
    return out


def zeros_like_each(arrays):
    return tuple(np.zeros_like(a) for a in arrays)


def raised(kernel, error):
    """What a kernel raised, and where in the kernel's own file (the innermost line there), as
    "ValueError in backward(), my_rnn.py:14: operands could not be broadcast ..."."""
    return f"{type(error).__name__}{where_in(kernel, error)}: {error}"


def where_in(kernel, error):
    """Where in the kernel's own file an exception (an interrupt too) came from, the innermost line
    there, as " in forward(), my_rnn.py:14"; "" where it came from elsewhere."""
    source = getattr(kernel, "__file__", None)
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if source and os.path.abspath(f.filename) == os.path.abspath(source)]
    return f" in {frames[-1].name}(), {os.path.basename(source)}:{frames[-1].lineno}" if frames else ""
