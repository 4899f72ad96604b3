"""The text of forward(): the gate constants and the input GEMMs before the loop, the values
that read no state for all steps at once, and the loop's step, with every affine's gates
activated in place and every stored value written straight into its storage; the cache it
returns. backward()'s text reads some of it too: the buffers the cache holds (``_buffers``), the
gates' views of them, the lines of the values of parameters alone, the state tuple's words."""

from __future__ import annotations

import math
import re

import sympy

from ..spec import Affine, Let, column_view, sigmoid
from .printing import (
    _CodePrinter, _assign_tuple, _aux_printer, _col_range, _into, _lines, _mentions, _number_arrays,
    _read_only, _tuple, _unpack, _unpack_tuple, _variable, _wrapped,
)


def _state_doc(k, prefix=""):
    """A state tuple as the docstrings give it: a tuple (h, c) of (B, H) arrays, or (h,) of one;
    prefix names adjoints (d: (dh, dc))."""
    arrays = "of (B, H) arrays" if len(k.states) > 1 else "of one (B, H) array"
    return f"a tuple {_tuple(prefix + s for s in k.states)} {arrays}"


def _unread_state_doc(k):
    """The docstring's word on states whose previous value no equation reads (an SRU's h, only its
    output): their initial value is no input of any step."""
    read = k.cell.read_in_step()
    unread = [s for s in k.states if k.cell.prev(s) not in read]
    if not unread:
        return []
    names = " and ".join(unread)
    return [f"        No equation reads the initial {names}: {'they are' if len(unread) > 1 else 'it is'} the final "
            f"{names} of a sequence of length 0 alone."]


# Why the kernel meets a zero of what a denominator reads, by kind (Cell.poles_of), and what to give instead.
_POLE_DOC = {
    "state": ("None's zeros make the first step divide by zero", "a nonzero initial value"),
    "parameter": ("init_params draws {them} uniform around zero, and near the pole the outputs and gradients "
                  "grow without bound", "values away from zero"),
}


def _pole_doc(k, kind):
    """The docstring's word on states (h = tanh(a)/n_prev) or parameters ((tanh(a) - h_prev)/tau) whose
    zero makes a denominator zero: where the kernel itself starts them there or near."""
    zeros = k.cell.zeros_divided_by(kind)
    if not zeros:
        return []
    names = " and ".join(zeros)
    why, instead = _POLE_DOC[kind]
    return [f"        An equation divides by {names} at zero: {why.format(them='them' if len(zeros) > 1 else 'it')}; "
            f"give {names} {instead}."]


def _buffers(k):
    """The arrays the forward pass fills and the backward pass reads."""
    names = [f"{s}_seq" for s in k.states]
    names += [f"pre_{a.name}_seq" for a in k.cell.affines if a.name in k.gates or a.name in k.in_place]
    return names + [f"{v}_seq" for v in k.stored]


def _forward(k):
    invariants = ["    " + line for line in _invariant_lines(k)]  # those forward() reads stay (_read_only)
    body = _forward_head(k)
    constants = _gate_constants(k)
    body += ["", *("    " + line for line in constants)] if constants else []
    body += invariants
    body += _input_parts(k)
    body += _kept_for_backward(k)
    body += _forward_loop(k)
    body += _forward_tail(k)
    return _lines(*_read_only(body, invariants))


def _forward_head(k):
    """forward()'s signature, docstring and argument checks."""
    params = k.cell.parameter_names()
    return [
        "def forward(params, x, state=None, lengths=None):",
        '    """Runs the cell over a batch of sequences, keeping what backward() reads.',
        "",
        "    params: a dict of arrays by the names in PARAMS, of the shapes param_shapes(D, H) gives, all of",
        "        one dtype: a float one (float16 to longdouble), or complex for the complex step. Other keys",
        "        are ignored.",
        *_pole_doc(k, "parameter"),
        "    x: (T, B, D), time-major (x[t, b] is sequence b's step t), of the parameters' dtype.",
        f"    state: the initial state, {_state_doc(k)} of the parameters' dtype; None, or None",
        "        for one array, means zeros.",
        *_unread_state_doc(k),
        *_pole_doc(k, "state"),
        "    lengths: None (every sequence runs T steps), or B whole numbers from 0 to T (integers, or floats",
        "        that are whole), each sequence's own number of steps: past its end a sequence keeps its state",
        "        (its rows of ys repeat it, and the final state is the one at its end), whatever its rows of x",
        "        hold there (nan too), and the steps after the longest sequence's end are not run.",
        "",
        "    Returns (ys, final_state, cache):",
        f"    ys: (T, B, H), {k.cell.output_state} after every step; read-only (a view into the cache unless the longest",
        "        sequence ends before T, or a sequence of length 0 starts from inf or nan): copy it to change it.",
        f"    final_state: {_state_doc(k)}, copies; with T = 0, the initial state.",
        "    cache: what one call of backward() reads. It holds x itself, not a copy (with lengths, its steps",
        "        up to the longest sequence's end, and a copy where it zeroes the padding): change x only after",
        "        backward(), which refuses an x changed before as far as a sum of all its entries, each",
        "        weighted by its place, tells.",
        "",
        "    A bad argument raises ValueError, naming it and what is wrong with it."
        + _complex_range_doc(k) + _tanh_doc(k) + '"""',
        f"    {_unpack_tuple(params, '_checked_params(params)')}",
        "    D, H = _sizes(params)",
        f"    x = _checked_input(x, D, {params[0]}.dtype)",
        "    T_all, B = x.shape[:2]",
        "    " + _unpack_tuple([f"{s}_prev" for s in k.states], "_checked_state(state, B, H, x.dtype)"),
        "    x, ended, masked = _steps_to_run(x, lengths)",
        "    T = len(x)  # T_all, or the longest sequence's length",
        "    unrun = " + _stand_in_call(k),
    ]


def _stand_in_call(k):
    """The call that gives the rows of sequences of no steps whose initial state is not finite the
    values of a running sequence's, with its comment."""
    states = _tuple(f"{s}_prev" for s in k.states)
    return f"_stand_in_rows({states}, ended)  # the loop computes rows no step reads: none may warn"


def _input_parts(k):
    """Every affine's input part for all steps (one GEMM), or the buffer its loop part fills; the
    views of the gates' blocks and of the columns the loop reads."""
    numbers = k.node_number
    body = ["", "    # The input part of every affine node, for all steps in one GEMM (that of inputs formed before",
            "    # the loop follows them there); the loop adds the rest."] if k.pre_lets else [
            "", "    # The input part of every affine node, for all steps in one GEMM; the loop adds the rest."]
    for a in k.cell.affines:
        pre, _ = k.affine_parts(a)
        terms = [f"x.reshape(T * B, D) @ {_weight(k, a, w)}.T" for w, v in pre if v == k.x]
        if terms:
            body.append(f"    pre_{a.name}_seq = ({' + '.join(terms)}).reshape(T, B, {k.size_expr(a)})"
                        f"  # ({numbers[id(a)]})")
            body += ["    " + line for line in _input_bias(k, a, numbers[id(a)])]
        elif pre or a.name in k.gates:  # pre: its GEMMs read lets formed before the loop (_let_gemm_lines)
            body.append(f"    pre_{a.name}_seq = np.empty((T, B, {k.size_expr(a)}), x.dtype)")
        elif a.blocks[0] not in k.state_blocks:  # a state's value as it is has the state's storage
            body.append(f"    pre_{a.name} = np.empty((B, {k.size_expr(a)}), x.dtype)  # reused at every step")
    body += ["    " + _gate_views(k, a) for a in k.cell.affines if a.name in k.gates]
    views = _views_once(k)
    if views:
        body += ["", "    # Views of the buffers' columns, made once: the loop indexes them by step."]
        body += ["    " + line for line in views]
    return body


def _kept_for_backward(k):
    """The storage over all steps of what the backward pass reads, a gate over its block where it can."""
    body = ["", "    # What the backward pass reads, kept for every step."]
    body += [f"    {s}_seq = np.empty((T + 1, B, H), x.dtype)" for s in k.states]
    for v in k.stored:
        if v in k.placed:
            a, b = k.placed[v]
            where = "kept where it is, not copied" if v == b else f"over {b}, which each step reads first"
            columns = f"[..., {_cols(a, b)}]" if len(a.blocks) > 1 else ""  # one block: the whole buffer
            body.append(f"    {v}_seq = pre_{a.name}_seq{columns}  # {where}")
        else:
            body.append(f"    {v}_seq = np.empty((T, B, H), x.dtype)")
    return body + [f"    {s}_seq[0] = {s}_prev" for s in k.states]


def _forward_loop(k):
    """The values formed for all steps before the loop, the numbers made once, and the loop."""
    early, step = _forward_step(k)
    if early:
        early = ["# The values that read no state, for all steps at once: one NumPy call each, not one a step."] + early
    loop = early + ["for t in range(T):"] + ["    " + line for line in step]
    body = ["    " + line for line in _number_arrays(loop, k.numbers)]
    if _has_sigmoid(k.cell):
        loop = ['# exp(-a) may overflow to inf or underflow to 0: 1 / (1 + inf) = 0 and 1 / (1 + 0) = 1 are right',
                "# (for real a; forward()'s docstring says how far complex a may go).",
                'with np.errstate(over="ignore", under="ignore"):',
                *("    " + line for line in loop)]
    return body + ["    " + line for line in loop]


def _forward_tail(k):
    """ys, the final state and the cache, returned."""
    out = k.cell.output_state
    return [
        f"    {out}_seq.flags.writeable = False  # backward() reads it, and ys is a view of it: a view's flag cannot be set back",
        f"    ys = {out}_seq[1:]",
        "    if T < T_all:  # the steps not run, after every sequence has ended, repeat the final state",
        f"        ys = np.concatenate([ys, np.broadcast_to({out}_seq[T], (T_all - T, B, H))])",
        "        ys.flags.writeable = False  # read-only whatever T_all",
        f"    final = {_tuple(f'{s}_seq[T].copy()' for s in k.states)}  # the caller's to change: the cache keeps its own",
        "    if unrun is not None:  # the stand-ins stay in the cache, for backward() to read without warnings",
        "        ys, final = _with_initial_rows(ys, final, unrun)",
        *_wrapped("    cache = {", _cache_items(k), "}"),
        "    return ys, final, cache",
    ]


def _has_gate_scale(k):
    """Whether _gate_constants scales some affine's rows by a vector of factors (_gate_scale)."""
    return any(_row_scaling(k, a) == "vector" for a in k.cell.affines)


def _has_sigmoid(cell):
    """Whether a let computes a sigmoid, through exp (whose overflow the forward pass allows)."""
    return any(let.expr.has(sigmoid) for let in cell.lets)


def _complex_range_doc(k):
    """Where exp, through which the gates are computed, stays finite for complex input: exp(x)
    overflows beyond x = 709.78, and a tanh through exp(-2a), or a block times a number, gets there
    sooner."""
    if not _has_sigmoid(k.cell):
        return ""
    factors = [abs(_gate_factor(k, a, kind) * k.coefficients.get(let.symbol, 1))
               for a in k.cell.affines for let, kind in k.gates.get(a.name, [])]
    bound = 709.78 / float(max(factors, default=1))
    digits = 2 - math.floor(math.log10(bound))  # three significant digits, rounded down: a safe bound
    bound = math.floor(bound * 10**digits) / 10**digits
    return ("\n    Complex input (the complex step) is safe while every gate's pre-activation has |Re a| <"
            f" {bound:g};\n    far beyond, exp overflows to inf - inf*j and a gate can be nan.")


def _tanh_doc(k):
    """What a tanh gate computed through exp costs in accuracy, where the kernel has one."""
    through_exp = [let for a in k.cell.affines if _through_exp(k, a) for let, kind in k.gates.get(a.name, []) if kind == "tanh"]
    if not through_exp:
        return ""
    return (f"\n    {through_exp[0].symbol} = tanh(a) is computed as 2 sigmoid(2a) - 1 with the other gates: exact to rounding\n"
            "    in absolute terms, not in relative ones where |a| << 1: tiny weights, or zero biases with tiny\n"
            "    inputs. Measured for lstm in float32, T = 10, B = 4, D = H = 8, x standard normal, seeds 0-9:\n"
            "    with weights uniform in ±0.01, outputs 2e-6 to 3e-6 of their largest entry away from float64's\n"
            "    (np.tanh: 1e-7 to 2e-7); with the default weights, zero biases and x times 1e-4, 6e-4 to 1e-3.")


def _input_bias(k, a, n):
    """The input part's biases, added in place: a sum would allocate a second buffer of T*B rows.
    A folded run's bias, and a gate's extra that no step changes, join them here once, instead of
    at every step."""
    folds = [run for run in k.bias_folds if run.a is a]
    steady = [(let, kind) for let, kind in k.gates.get(a.name, []) if let.symbol in k.steady]
    runs = [run for run in k.fused if run.a is a and any(s != 0 for s in run.steady)]
    if not folds and not steady and not runs:
        negated = ", negated as the weights are: the buffer holds -a" if _scaled_bias(k, a)[0] == "-" else ""
        return [f"pre_{a.name}_seq {_bias_update(k, a)}  # ({n}){negated}"] if a.biases else []
    lines = [f"bias_{a.name} = {_bias_vector(k, a)}"]
    for let, kind in steady:
        lines.append(_steady_line(k, a, let, kind))
    for run in runs:
        lines += _steady_run_lines(k, a, run)
    for run in folds:
        cols, blocks = _col_range(run.j0, run.j1), run.b.blocks[run.j0:run.j1]
        nb, sign, negated = k.node_number[id(run.b)], *(("-", ", negated") if run in k.negated else ("+", ""))
        lines.append(f"bias_{a.name}[{cols}] {sign}= {run.b.biases[0]}[{cols}]  # ({nb}) the bias of "
                     f"{', '.join(map(str, blocks))}{negated}: added to {a.name}'s blocks once, not at every step")
    return lines + [f"pre_{a.name}_seq += bias_{a.name}  # ({n})"]


def _bias_vector(k, a):
    """A new array of a's biases, scaled as the weights are."""
    if not a.biases:
        return f"np.zeros({k.size_expr(a)}, x.dtype)"
    sign, code = _scaled_bias(k, a)
    if sign == "-":
        return f"-{code}"
    return f"{code}.copy()" if code in a.biases else code  # a parameter itself: its own array


def _steady_line(k, a, let, kind):
    """A gate's extra that no step changes (sigmoid(a_f + 1)), added to its block's bias."""
    number = k.let_number[let.symbol]
    target = f"bias_{a.name}[{_cols(a, _block_of(k, a, let))}]"
    return _part_line(k, a, let, kind, target, k.steady[let.symbol], number, " that no step changes")


def _part_line(k, a, let, kind, target, part, number, which=""):
    """target += a part of a gate's pre-activation beyond its block, scaled as the weights are (-1
    for a sigmoid, -2 for a tanh among sigmoids)."""
    factor = _gate_factor(k, a, kind)
    scaled = "" if factor == 1 else f", times {factor} like the weights"
    if factor != 1 and let.symbol in k.coefficients:  # the weights carry the block's number too
        scaled = f", times {factor}, the gate's factor (the weights carry it times {k.coefficients[let.symbol]})"
    return (f"{_added(target, _whole_numbers(factor * part), _aux_printer(k))}  # ({number}) {let.symbol}'s "
            f"pre-activation {_written_argument(k, let)}: the part beyond {_block_of(k, a, let)}{which}{scaled}")


def _written_argument(k, let):
    """A gate's argument as the script writes it (a_i + p_i*c_prev), SymPy's form where the
    written one is not a call."""
    shown = k.shown.get(id(let))
    argument = shown.args[0] if shown is not None and shown.func == let.expr.func else let.expr.args[0]
    return _CodePrinter().doprint(argument)


def _gate_factor(k, a, kind):
    """What a gate's pre-activation is multiplied by where the weights carry the gates' factors."""
    return 1 if not _through_exp(k, a) else (-1 if kind == "sigmoid" else -2)


def _whole_numbers(expr):
    """expr with its whole floats as integers: q, not 1.0*q, for -2 times -0.5*q."""
    return expr.xreplace({f: sympy.Integer(int(f)) for f in expr.atoms(sympy.Float) if float(f).is_integer()})


def _steady_run_lines(k, a, run):
    """The parts of a fused run's sums that no step changes (r = sigmoid(a_xr + a_hr + 1)), added
    to the bias of their block of a."""
    lines, printer = [], _aux_printer(k)
    factor, scaled = _run_factor(k, run)
    for i, ((u, v), part) in enumerate(zip(run.pairs, run.steady)):
        if part != 0:
            number = k.let_number[(u or v).symbol]
            cols = _col_range(run.j0 + i, run.j0 + i + 1)
            lines.append(f"{_added(f'bias_{a.name}[{cols}]', _whole_numbers(factor * part), printer)}  # ({number}) the part "
                         f"of {v.symbol}'s sum beyond {run.beyond} that no step changes{scaled}")
    return lines


def _run_factor(k, run):
    """What a fused run's sums are multiplied by where the weights carry it (-1, _negated_runs), and
    the comment that says so."""
    return (-1, ", times -1 like the weights") if run in k.negated else (1, "")


def _loop_bias(k, a, n):
    """The loop's bias lines of a loop-only affine: a block that a folded run leaves gets its bias
    on its own columns, a stored one straight into its storage (through pre_<block>, bias_<block>),
    by the step's view of it, which the step's other lines read too."""
    runs = _own_bias_runs(k, a)
    if runs is None:
        return [f"pre_{a.name} {_bias_update(k, a)}  # ({n})"] if a.biases else []
    bias, lines = a.biases[0], []  # every block folded: no bias at all in the loop
    for j0, j1, written in runs:
        cols = _col_range(j0, j1)
        if written is not None:
            lines += [f"{written} = {written}_seq[t]", f"np.add(pre_{written}, bias_{written}, out={written})  # ({n}) {written}"]
        else:
            lines.append(f"pre_{a.name}[:, {cols}] += {bias}[{cols}]  # ({n})")
    return lines


def _own_bias_runs(k, a):
    """(first, end, stored block or None): the runs of a loop-only affine's blocks that a folded
    run leaves, which get their bias in the loop; None when no run is folded (all get it). A stored
    block gets it on the way into its storage, unless a fused run also sums it from the buffer,
    which must then hold it too (a_h0 read by g0 = tanh(a_x0 + a_h0) and by h)."""
    folded = {j for run in k.bias_folds if run.b is a for j in range(run.j0, run.j1)}
    if not folded:
        return None
    summed = {j for run in k.fused if run.b is a for j in range(run.j0, run.j1)}
    runs = _runs([j for j in range(len(a.blocks)) if j not in folded])
    return [(j0, j1, a.blocks[j0] if j1 - j0 == 1 and a.blocks[j0] in k.stored and j0 not in summed else None)
            for j0, j1 in runs]


def _written_blocks(k, a):
    """The stored blocks whose bias-add writes them straight into their storage."""
    return {written for _, _, written in _own_bias_runs(k, a) or [] if written is not None}


def _runs(indices):
    """(first, end) of each run of consecutive integers in a sorted list."""
    runs = []
    for j in indices:
        if runs and runs[-1][1] == j:
            runs[-1] = (runs[-1][0], j + 1)
        else:
            runs.append((j, j + 1))
    return runs


def _through_exp(k, a):
    """Whether a's gates are activated through exp, their factors carried by the weights."""
    return a.name in k.gates and any(kind == "sigmoid" for _, kind in k.gates[a.name])


def _mixed(k, a):
    """Whether a's gates' factors differ (a tanh among sigmoids, a block times a number)."""
    return len({kind for _, kind in k.gates[a.name]}) > 1 or any(let.symbol in k.coefficients for let, _ in k.gates[a.name])


def _row_scaling(k, a):
    """How a's weights carry the factors of the gates its blocks feed: None (they do not), "negated"
    (-1 for every row) or "vector" (a factor per row, scale_<A>)."""
    if _through_exp(k, a):
        return "vector" if _mixed(k, a) else "negated"
    negated = k.negated_blocks(a)
    if not negated:
        return None
    return "negated" if len(negated) == len(a.blocks) else "vector"


def _weight(k, a, w):
    return f"{w}_scaled" if _row_scaling(k, a) else w


def _scaled_bias(k, a):
    """a's biases scaled as the weights are, as (sign, code): ("+", "b*scale_W") or ("-", "b")."""
    total = " + ".join(a.biases)
    scaling = _row_scaling(k, a)
    if scaling is None:
        return "+", total
    if scaling == "vector":
        return "+", f"({total})*scale_{a.name}" if len(a.biases) > 1 else f"{total}*scale_{a.name}"
    return "-", f"({total})" if len(a.biases) > 1 else total


def _bias_update(k, a):
    """The in-place update that adds a's biases, scaled as the weights are."""
    sign, code = _scaled_bias(k, a)
    return f"{sign}= {code}"


def _power_of_two(number):
    """Whether multiplying by the number is exact in binary floating point: ±2**n (a number of
    functions, 1/(2 + tanh(2)), is none)."""
    number = sympy.sympify(number)
    if not (number.is_Rational or number.is_Float):
        return False
    r = sympy.Rational(number)
    return all(v & (v - 1) == 0 for v in (abs(r.p), r.q))


def _gate_constants(k):
    """The weights of gate affines times the gates' factors, once per call."""
    partly = [a for a in k.cell.affines if not _through_exp(k, a) and _row_scaling(k, a) == "vector"]  # some rows negated
    lines = ["# The rows of the blocks that sigmoids read, alone or in a sum, carry their -1 (exp then gives",
             "# exp(-a)), folded into the weights once: exact, and no step negates them."] if partly else []
    for a in partly:
        kinds = tuple('"sigmoid"' if j in k.negated_blocks(a) else "None" for j in range(len(a.blocks)))
        lines += [f"scale_{a.name} = _gate_scale({_tuple(kinds)}, H, x.dtype)", *_weights_scaled(a)]
    for a in k.cell.affines:
        if _through_exp(k, a) and _row_scaling(k, a) == "vector":
            lines += [*_gate_factors_comment(k, a), f"scale_{a.name} = {_gate_scale_call(k, a)}", *_weights_scaled(a)]
    negated = [a for a in k.cell.affines if _row_scaling(k, a) == "negated"]
    if negated:
        lines += ["# The weights negated once, so that exp gives the sigmoids' exp(-a): no step negates the gates."]
    return lines + [f"{w}_scaled = -{w}" for a in negated for w in a.weights]


def _weights_scaled(a):
    return [f"{w}_scaled = {w} * scale_{a.name}[:, np.newaxis]" for w in a.weights]


def _gate_numbers(k, a):
    """The number each of a's blocks is multiplied by in its gate (2 in sigmoid(2*a_i)), 1 for most."""
    return [k.coefficients.get(let.symbol, 1) for let, _ in k.gates[a.name]]


def _gate_scale_call(k, a):
    """The call that makes a's factor per row: the gates' kinds, and their blocks' numbers where
    one is not 1."""
    kinds = _tuple(f'"{kind}"' for _, kind in k.gates[a.name])
    numbers = _gate_numbers(k, a)
    if all(n == 1 for n in numbers):
        return f"_gate_scale({kinds}, H, x.dtype)"
    return f"_gate_scale({kinds}, H, x.dtype, {_tuple(_CodePrinter().doprint(n) for n in numbers)})"


def _gate_factors_comment(k, a):
    """Why a's weights are scaled, and whether exactly (a number that is no power of two rounds)."""
    head = "# Each gate's factor is folded into the weights once: -1 for a sigmoid (exp then gives exp(-a)),"
    tanh = "# -2 for a tanh (tanh(a) = 2 sigmoid(2a) - 1)"
    numbers = _gate_numbers(k, a)
    if all(n == 1 for n in numbers):
        return [head, f"{tanh}. Exact (powers of two), and no step negates the gates."]
    terms = ", ".join(str(k.coefficients[let.symbol] * block) for block, (let, _) in zip(a.blocks, k.gates[a.name])
                      if let.symbol in k.coefficients)
    inexact = ", ".join(dict.fromkeys(str(n) for n in numbers if not _power_of_two(n)))
    how = f"rounded once per weight ({inexact} no power of two)" if inexact else "exact, as these are powers of two"
    return [head, f"{tanh}, times the blocks' numbers in their gates ({terms}):",
            f"# {how}, and no step scales the gates."]


def _gate_views(k, a):
    """The gates' values at every step, as views of the buffer they are activated in."""
    names = [f"{let.symbol}_seq" for let, _ in k.gates[a.name]]
    if len(names) == 1:
        return f"{names[0]} = pre_{a.name}_seq"
    return _unpack(names, f"_blocks(pre_{a.name}_seq, {len(names)})")


def _cache_items(k):
    spent = ['"spent": np.array(False)']  # set by backward(): a cache serves one call
    fingerprints = f'"fingerprints": _fingerprints({_tuple(list(k.cell.parameter_names()))}, x)'
    lengths = ['"ended": ended', '"masked": masked', '"T_all": T_all']  # what _steps_to_run() made of them
    return ['"cell": CELL', '"H": H'] + [f'"{n}": {n}' for n in ["x"] + _buffers(k)] + lengths + spent + [fingerprints]


def _forward_step(k):
    """(the lines of the values that read no state, for all steps at once before the loop; the
    loop's lines for one step)."""
    early, lines = [], []
    printer = _aux_printer(k, arrays=True)
    heads, in_runs = _fused_heads(k)
    named = {}  # a call an earlier let computed -> that let: written again, it is read, not evaluated again
    # the values formed before the loop so far, and the calls formed there that wait for one of them
    # (relu(s/2) in a let written before s = sigmoid(a)): a call's lines go after what it reads
    formed, waiting = k.ready | k.constant, []
    done = set()  # the calls kept for the backward pass that a line computes already
    previous = None
    for node in k.cell.nodes:
        n = k.node_number[id(node)]
        # the lets before this node that are formed before the loop have their lines there by now
        # (a gate's with its affine's, a fused run's at its first reader): the calls that waited for them follow
        if isinstance(previous, Let) and previous.symbol in k.early:
            formed.add(previous.symbol)
        early.extend(_ready_calls(waiting, formed))
        previous = node
        if isinstance(node, Affine):
            before, within = _affine_step_lines(k, node, n)
            early.extend(before)
            lines.extend(within)
            continue
        out = early if node.symbol in k.early else lines  # the list this node's lines extend
        if node.symbol in heads:
            out.extend(_fused_lines(k, heads[node.symbol]))
        if _formed_elsewhere(k, node, in_runs):
            continue
        expr = _calls_by_name(k, node, out is lines, named)
        for call, call_lines in _kept_calls(k, expr, printer, n, done):
            if call in k.early_calls:  # after the values formed before the loop that it reads
                waiting.append((call, call_lines))
            else:
                out.extend(call_lines)
            done.add(call)
        early.extend(_ready_calls(waiting, formed))
        out.extend(_let_lines(k, node, expr, printer, n))
        if isinstance(node.expr, sympy.Function) and node.symbol not in k.gate_lets:
            named[node.expr] = node.symbol
    early.extend(_ready_calls(waiting, formed | k.early))
    if waiting:
        raise AssertionError(f"calls formed before the loop that read values never formed: {waiting}")
    lines += _step_end(k, done, printer)
    return _with_views_of_early_values(k, early, lines)


def _fused_heads(k):
    """(first reader -> run, the lets of every run): a run's lines go at its first reader in the
    script's order, before any node reads a gate of it, and its lets have no lines of their own."""
    order = {id(node): i for i, node in enumerate(k.cell.nodes)}
    heads = {min((run.reader(i) for i in range(len(run.pairs))), key=lambda u: order[id(u)]).symbol: run
             for run in k.fused}
    in_runs = {let.symbol for run in k.fused for pair in run.pairs for let in pair if let is not None}
    return heads, in_runs


def _affine_step_lines(k, a, n):
    """(an affine's lines before the loop, its lines in the step)."""
    before = _let_gemm_lines(k, a, n)
    early = _early_affine(k, a)
    if early:
        before += _forward_affine(k, a, n, early=True)
    # a pre-only affine's lines are views of its blocks: the loop has its own for those it reads
    views_only = not k.affine_parts(a)[1] and a.name not in k.gates
    return before, _forward_affine(k, a, n) if not early or views_only else []


def _formed_elsewhere(k, let, in_runs):
    """Whether a let has no lines of its own here: a gate activated with its affine's GEMM, a fused
    run's (in_runs), or a value of parameters alone, formed once before the loop."""
    return ((let.symbol in k.gate_lets and k.complete_after_gemm(let.symbol)) or let.symbol in in_runs
            or let.symbol in k.invariant)


def _calls_by_name(k, let, in_loop, named):
    """The let's expression with the calls that lets compute read by those lets' names (named: the
    earlier lets', by call). A value formed before the loop reads only those formed there too; the
    loop reads them all, whatever their place in the script (p1 = tanh(a) after p2 = tanh(a)*h_prev)."""
    formed_early = {other.expr: other.symbol for other in k.cell.lets
                    if other.symbol in k.early and isinstance(other.expr, sympy.Function)}
    return let.expr.xreplace({**(formed_early if in_loop else {}),
                              **{call: v for call, v in named.items() if in_loop or v in k.early}})


def _kept_calls(k, expr, printer, n, done):
    """(call, its lines) for each call kept for the backward pass that expr reads and no line
    computes yet (done), inner calls first: each is computed from those it holds."""
    return [(call, _stored_value(name, f"{name}_seq[t]", call, _without(printer, call), n))
            for call, name in k.aux.items() if call not in done and name not in k.invariant and expr.has(call)]


def _let_lines(k, let, expr, printer, n):
    """A let's own lines: a gate whose extra reads a later value, activated here; a stored value or
    a new state, written straight into its storage; any other let, computed."""
    if let.symbol in k.gate_lets:
        return _deferred_gate(k, let, n)
    if let.symbol in k.stored:
        return _stored_value(let.symbol, f"{let.symbol}_seq[t]", expr, printer, n, k.shown[id(let)])
    if k.state_blocks.get(let.expr) == let.symbol:  # its block's GEMM has written it (_state_block_lines)
        return []
    if let.symbol in k.state_of_new:
        slot = f"{k.state_of_new[let.symbol]}_seq[t + 1]"
        return _stored_value(let.symbol, slot, expr, printer, n, k.shown[id(let)])
    return [f"{let.symbol} = {printer.doprint(expr)}  # ({n})"]


def _step_end(k, done, printer):
    """The step's last lines: the calls kept for the backward pass that only appear there in output
    form, the rows of ended sequences kept, and the new states as the previous ones."""
    lines = []
    for call, name in k.aux.items():
        # only in output form, e.g. tanh(s) of tanh(sigmoid(a)) with s = sigmoid(a)
        if call not in done and name not in k.invariant:
            lines += [f"{name} = {name}_seq[t]", f"{name}[...] = {_without(printer, call).doprint(call)}"]
    lines += ["if masked[t]:  # the rows of a sequence that has ended keep their state: the step is the identity",
              *(f"    np.copyto({k.new_state[s]}, {s}_prev, where=ended[t])" for s in k.states)]
    lines.append(_assign_tuple([f"{s}_prev" for s in k.states], [k.new_state[s] for s in k.states]))
    return lines


def _with_views_of_early_values(k, early, lines):
    """(the lines before the loop, over all steps; the step's lines, opening with its views of the
    values formed before the loop that it reads)."""
    early, seen = _over_all_steps(early)
    values = {str(v) for v in k.cell.blocks + [let.symbol for let in k.cell.lets] + list(k.aux.values())}
    seen = [name for name in seen if name in values]  # not a buffer's view (pre_W)
    code = "\n".join(_code(line) for line in lines)
    bound = {n for line in lines if (m := _STEP_VIEWS.match(line)) for n in m.group(2).split(", ")}
    read = [name for name in seen if _mentions(code, name) and name not in bound]
    if read:  # the loop's own views of the values formed before it, with its first views of blocks
        first = _STEP_VIEWS.match(lines[0]) if lines else None
        merged = first is not None and not first.group(4) and set(first.group(2).split(", ")) <= values  # blocks
        names = (first.group(2).split(", ") if merged else []) + read
        views = (first.group(3).split(", ") if merged else []) + [f"{name}_seq[t]" for name in read]
        lines[:1 if merged else 0] = [_assign_tuple(names, views) + "  # formed before the loop"]
    # a step's view that no line reads (a pre-activation whose gates are activated elsewhere) goes
    return early, _unread_views_dropped(lines)


def _let_gemm_lines(k, a, n):
    """The GEMMs of an affine's inputs formed before the loop (z_seq, for all steps at once), into
    its buffer; then its biases, where no input GEMM has added them."""
    lets = [(w, v) for w, v in k.affine_parts(a)[0] if v != k.x]
    if not lets:
        return []
    rows, size = "T * B", k.size_expr(a)
    products = [f"np.dot({k.sequence(v)}.reshape({rows}, H), {_weight(k, a, w)}.T" for w, v in lets]
    if k.x in a.inputs:
        return [f"pre_{a.name}_seq += {p}).reshape(T, B, {size})  # ({n})" for p in products]
    lines = [f"{products[0]}, out=pre_{a.name}_seq.reshape({rows}, {size}))  # ({n})"]
    lines += [f"pre_{a.name}_seq += {p}).reshape(T, B, {size})  # ({n})" for p in products[1:]]
    return lines + _input_bias(k, a, n)


def _unread_views_dropped(lines):
    """lines without the step's views (a, b = a_seq[t], b_seq[t]) that no other line reads: a block
    whose readers are formed before the loop, or read it through a call formed there."""
    code = [_code(line) for line in lines]
    out = []
    for i, line in enumerate(lines):
        m = _STEP_VIEWS.match(line)
        if not m:
            out.append(line)
            continue
        rest = "\n".join(code[:i] + code[i + 1:])
        pairs = [(n, v) for n, v in zip(m.group(2).split(", "), m.group(3).split(", ")) if _mentions(rest, n)]
        if pairs:
            comment = f"  # {m.group(4)}" if m.group(4) else ""
            out.append(f"{m.group(1)}{_assign_tuple([n for n, _ in pairs], [v for _, v in pairs])}{comment}")
    return out


def _ready_calls(waiting, formed):
    """The lines of the waiting calls that read only values formed, taken off the list, in order."""
    lines = []
    for entry in list(waiting):
        call, call_lines = entry
        if call.free_symbols <= formed:
            lines += call_lines
            waiting.remove(entry)
    return lines


def _early_affine(k, a):
    """Whether an affine's lines belong before the loop: its GEMM is all there, and its gates, if
    activated with it, read no state; or some value formed there reads its blocks."""
    if k.affine_parts(a)[1]:
        return False
    if a.name in k.gates:
        return all(let.symbol in k.early for let, _ in k.gates[a.name])
    return any(_read_before_loop(k, b) for b in a.blocks)


def _read_before_loop(k, b):
    """Whether a value or call formed before the loop reads block b."""
    return any(let.symbol in k.early for let in k.cell.readers(b)) or any(call.has(b) for call in k.early_calls)


def _read_in_loop(k, b):
    """Whether a value the loop forms reads block b."""
    return any(let.symbol not in k.early for let in k.cell.readers(b))


def _code(line):
    """A line without its comment."""
    return line.split("  # ")[0] if not line.lstrip().startswith("#") else ""


_STEP_VIEWS = re.compile(r"^(\s*)(\w+(?:, \w+)*) = (\w+_seq\[t\](?:, \w+_seq\[t\])*)(?:  # (.*))?$")


def _over_all_steps(lines):
    """A step's lines made to act on every step at once, and the names they hold over all steps:
    a step's view (f = f_seq[t]) gives way to the whole sequence (f_seq), so np.exp(a_f, out=f)
    reads np.exp(a_f_seq, out=f_seq). Elementwise code broadcasts over the steps' axis as it does
    over the batch's."""
    out, renamed = [], {}
    for line in lines:
        m = _STEP_VIEWS.match(line)
        if m:
            renamed.update(zip(m.group(2).split(", "), (v.removesuffix("[t]") for v in m.group(3).split(", "))))
            if m.group(4):  # its comment stays, on a line of its own
                out.append(f"{m.group(1)}# {m.group(4)}")
            continue
        code, comment = (line.split("  # ", 1) + [None])[:2] if not line.lstrip().startswith("#") else ("", line)
        if (m := re.match(r"\s*(\w+) = ", code)) and not m.group(1).endswith("_seq"):
            renamed[m.group(1)] = f"{m.group(1)}_seq"  # a value of every step, named so: s_seq = a_z_seq*sigmoid_z_seq
        for name, whole in renamed.items():
            code = re.sub(_variable(name), whole, code)
        code = re.sub(r"^(\s*\w+_seq)\[t\] = ", r"\1[...] = ", code)
        code = re.sub(r"\b(\w+_seq)\[t\]", r"\1", code)
        code = code.replace("[:, ", "[..., ")  # a step's columns (B, k*H)[:, cols] are every step's [..., cols]
        if re.search(r"\[t\b|\bt\]|\bt \+|\[:,", code):  # a step, or a batch axis counted from the front
            raise AssertionError(f"a line formed before the loop reads the step: {line!r}")
        out.append(comment if not code else code + (f"  # {comment}" if comment else ""))
    return out, [name for name, whole in renamed.items() if whole == f"{name}_seq"]


def _without(printer, call):
    """printer, but printing call itself rather than the name it has: for the line that computes it."""
    return _CodePrinter({c: v for c, v in printer.names.items() if c != call}, printer.arrays)


def _invariant_lines(k):
    """The lets and calls of parameters alone, each an (H,) vector formed once for every step (or
    of numbers alone, a number), each from those formed before it (tanh1 = np.tanh(p/(2 + tanh0)))."""
    lines, formed = [], {}
    for name, expr in _formed_first(k.invariant):
        cite = f"({k.let_number[name]}) " if name in k.let_number else ""
        printer = _CodePrinter(formed, typed_calls=True)
        if expr.free_symbols:
            lines.append(f"{name} = {printer.doprint(expr)}  # {cite}of parameters alone: one (H,) vector for every step")
        else:  # NumPy's exp(-1) is a float64 scalar, which would make float32 arrays float64
            lines.append(f"{name} = np.array({_CodePrinter(formed).doprint(expr)}, x.dtype)  # {cite}a number, in x's dtype, formed once")
        formed[expr] = str(name)
    return lines


def _formed_first(named):
    """name -> expression items in an order where each comes after those it reads: the names among
    its symbols, and the expressions inside it; otherwise in their own order."""
    def reads(name, expr):
        return {other for other, e in named.items()
                if other != name and (other in expr.free_symbols or (e != expr and expr.has(e)))}

    order, left = [], dict(named)
    while left:
        name = next(n for n, e in left.items() if not reads(n, e) & set(left))
        order.append((name, left.pop(name)))
    return order


def _fused_lines(k, run):
    """Gates over sums of two affines' blocks, summed and activated with one call each."""
    a, b, j0, j1, kind, pairs = run.a, run.b, run.j0, run.j1, run.kind, run.pairs
    where = _run_view(run.a, run)  # views made once, before the loop (_views_once)
    vs = [v for _, v in pairs]
    cites = [f"({k.node_number[id(u)]})" for u, _ in pairs if u is not None]  # an unnamed sum has no equation
    cite_u = ", ".join(cites) + " " if cites else ""
    cite_v = ", ".join(f"({k.node_number[id(v)]})" for v in vs)
    sums = ", ".join(run.sum_text(i, k.shown) for i in range(len(pairs)))
    gates = ", ".join(f"{v.symbol} = {kind}({v.expr.args[0]})" for v in vs)
    if run in k.negated:
        activate = [f"# {cite_v} {gates} with one exp, in place: 1 / (1 + exp(-a)), -a from the weights",
                    f"np.exp({where}, out={where})", f"{where} += one", f"np.reciprocal({where}, out={where})"]
    elif kind == "sigmoid":
        activate = [f"_sigmoid_into({where}, {where}, minus_one)  # {cite_v} {gates}"]
    else:
        activate = [f"np.tanh({where}, out={where})  # {cite_v} {gates}"]
    views = _assign_tuple([v.symbol for v in vs], [f"{v.symbol}_seq[t]" for v in vs])
    printer = _CodePrinter()
    factor, scaled = _run_factor(k, run)
    extras = [f"{_added(v.symbol, factor * e, printer)}  # ({k.node_number[id(u or v)]}) the part of {v.symbol}'s sum "
              f"beyond {run.beyond}{scaled}" for (u, v), e in zip(pairs, run.extras) if e != 0]
    summed = []
    if b is not None:
        other = _run_view(b, run) + ("_seq[t]" if k.affine_parts(b)[0] else "")
        sign, negated = ("-", ", negated") if run in k.negated else ("+", "")
        summed = [f"{where} {sign}= {other}  # {cite_u}{sums}{negated}"]
    return [
        f"{where} = {where}_seq[t]",
        *summed,
        *([views] + extras if extras else []),
        *activate,
        *([] if extras else [views]),
    ]


def _cheapest(expr):
    """The equivalent form of expr with the fewest operations, collected in one of its symbols:
    h_prev*z + n*(1 - z) is n + z*(h_prev - n), three operations instead of four."""
    forms = [expr] + [sympy.collect(sympy.expand(expr), v) for v in sorted(expr.free_symbols, key=str)]
    return min(forms, key=lambda form: (sympy.count_ops(form), forms.index(form)))


def _stored_value(name, slot, expr, printer, n, shown=None):
    """name = expr, evaluated straight into its storage: no temporary, no copy. The comment shows
    ``shown``, the equation as the script writes it, where given."""
    shown, expr = expr if shown is None else shown, _cheapest(expr)
    into = _into(str(name), expr, printer)
    def text(e):  # for the comments, in the equations' words: 1 - z, not one - z; exp(a), not np.exp(a)
        return _CodePrinter(printer.names).doprint(e).replace("np.", "")

    if len(into) == 1 and into[0].startswith(f"{name}[...] = "):
        return [f"{name} = {slot}", f"{name}[...] = {printer.doprint(expr)}  # ({n}) {name} = {text(shown)}"]
    if len(into) == 1:
        return [f"{name} = {slot}", f"{into[0]}  # ({n}) {name} = {text(shown)}"]
    written = "written in place" if expr == shown.doit() else f"written in place as {text(expr)}"
    return [f"{name} = {slot}  # ({n}) {name} = {text(shown)}, {written}:"] + into


def _forward_affine(k, a, n, early=False):
    """An affine's lines in the step; with early, those before the loop (_early_affine), which
    read only the blocks that values formed there read."""
    if a.blocks[0] in k.state_blocks:
        return _state_block_lines(k, a, n)
    pre, loop = k.affine_parts(a)
    lines = [f"pre_{a.name} = pre_{a.name}_seq[t]"] if (pre and loop) or a.name in k.gates else []
    # np.dot, not @: the same BLAS call with less dispatch around it (about 1 us a call at B = 1)
    products = [f"{v}, {_weight(k, a, w)}.T" for w, v in loop]
    if pre:
        lines += [f"pre_{a.name} += np.dot({p})  # ({n})" for p in products]
    else:
        lines.append(f"np.dot({products[0]}, out=pre_{a.name})  # ({n})")
        lines += [f"pre_{a.name} += np.dot({p})  # ({n})" for p in products[1:]]
    if not pre:  # the input GEMM has the biases otherwise
        lines += _loop_bias(k, a, n)
    if a.name in k.gates:
        return lines + _activate_gates(k, a)
    written = _written_blocks(k, a)
    # the views of the blocks' columns are made before the loop (_views_once), those of the
    # blocks written into their storage with their bias (_loop_bias)
    used = [b for b in _used_blocks(k, a) if pre and (_read_before_loop(k, b) if early else _read_in_loop(k, b))]
    if used:
        lines.append(_assign_tuple(used, [_block_at_step(k, a, b, bool(loop)) for b in used]))
    lines += [f"{b}_seq[t] = {b}" for b in a.blocks if b in k.stored and b not in written and b not in k.placed]
    return lines


def _state_block_lines(k, a, n):
    """The step's lines of an affine whose block is a new state's value as it is (r = a_r): its
    products and its input part or bias summed straight into the state's storage, which the
    state's equation then needs no line to fill."""
    block = a.blocks[0]
    value = k.state_blocks[block]
    pre, loop = k.affine_parts(a)
    products = [f"{v}, {_weight(k, a, w)}.T" for w, v in loop]
    lines = [f"{value} = {k.state_of_new[value]}_seq[t + 1]",
             f"np.dot({products[0]}, out={value})  # ({n}), ({k.let_number[value]}) {value} = {block}, "
             f"written where the state is kept"]
    lines += [f"{value} += np.dot({p})  # ({n})" for p in products[1:]]
    if pre:
        lines.append(f"{value} += pre_{a.name}_seq[t]  # ({n}) the part formed before the loop")
    elif a.biases:
        lines.append(f"{value} {_bias_update(k, a)}  # ({n})")
    return lines


def _cols(a, block):
    j = a.blocks.index(block)
    return ":" if len(a.blocks) == 1 else _col_range(j, j + 1)


def _block_at_step(k, a, b, pre_at_step):
    """The code for block b at step t, in the loop; pre_at_step: pre_<A> holds the step's buffer."""
    if not k.affine_parts(a)[0] or (len(a.blocks) > 1 and (b not in k.stored or b in k.placed)):
        return f"{b}_seq[t]"  # its storage, or a view made once (_views_once, or kept where it is)
    buffer = f"pre_{a.name}" if pre_at_step else f"pre_{a.name}_seq[t]"
    return buffer if len(a.blocks) == 1 else f"{buffer}[:, {_cols(a, b)}]"


def _views_once(k):
    """The column views the forward loop reads, made before it: slicing columns at every step
    costs as much as a small operation. A block of the input GEMM's buffer is seen over all
    steps (a_xn_seq); one of a loop-only affine's buffer, reused at every step, as it is."""
    lines = []
    for a in k.cell.affines:
        if a.name in k.gates:
            continue
        pre, written = k.affine_parts(a)[0], _written_blocks(k, a)
        for b in _used_blocks(k, a):
            if pre and b not in k.stored and len(a.blocks) > 1:
                lines.append(f"{b}_seq = pre_{a.name}_seq[..., {_cols(a, b)}]")
            elif not pre and b not in written and b not in k.state_blocks:
                lines.append(f"{b} = pre_{a.name}" + (f"[:, {_cols(a, b)}]" if len(a.blocks) > 1 else ""))
        lines += [f"pre_{b}, bias_{b} = pre_{a.name}[:, {_cols(a, b)}], {a.biases[0]}[{_cols(a, b)}]"
                  for b in a.blocks if b in written]
    for run in k.fused:
        cols = _col_range(run.j0, run.j1)
        gates = ", ".join(str(v.symbol) for _, v in run.pairs)
        a_blocks = ", ".join(map(str, run.a.blocks[run.j0:run.j1]))
        b_blocks = ", ".join(map(str, run.b.blocks[run.j0:run.j1])) if run.b is not None else ""
        folded = any((f.a, f.b, f.j0, f.j1) == (run.a, run.b, run.j0, run.j1) for f in k.bias_folds)
        if folded:  # the input part holds the other affine's biases of these blocks too
            one = run.j1 - run.j0 == 1
            a_blocks += f" and the {'bias' if one else 'biases'} of {b_blocks}"
            b_blocks += " without its bias" if one else " without their biases"
        if run in k.negated:  # the weights carry the sigmoid's -1
            a_blocks = f"-({a_blocks})"
        lines.append(f"{_run_view(run.a, run)}_seq = pre_{run.a.name}_seq[..., {cols}]  # {a_blocks}, then {gates}")
        if run.b is None:
            continue
        if k.affine_parts(run.b)[0]:
            lines.append(f"{_run_view(run.b, run)}_seq = pre_{run.b.name}_seq[..., {cols}]  # {b_blocks}")
        else:
            lines.append(f"{_run_view(run.b, run)} = pre_{run.b.name}[:, {cols}]  # {b_blocks}")
    return lines


def _run_view(a, run):
    """The name of the view of a fused run's columns in affine a's buffer: pre_W_a_xr_a_xz."""
    return column_view(f"pre_{a.name}", a.blocks[run.j0:run.j1])


def _used_blocks(k, a):
    fused = {run.reader(i).symbol for run in k.fused for i in range(len(run.pairs))}
    return [b for b in a.blocks if any(let.symbol not in fused for let in k.cell.readers(b))]


def _activate_gates(k, a):
    """The affine's gates activated in place right after its GEMM: with one exp for every run of
    adjacent blocks whose pre-activations are complete; a gate whose extra reads a later value is
    activated where it is defined (see _deferred_gate)."""
    lets = k.gates[a.name]
    numbers = k.let_number
    names = [let.symbol for let, _ in lets]
    views = _assign_tuple(names, [f"{n}_seq[t]" for n in names])
    if not any(let.symbol in k.extras for let, _ in lets):
        activate = _activation(k, a, lets, f"pre_{a.name}", ", ".join(f"({numbers[n]})" for n in names))
        return activate + [views] + _tanh_lines(k, a, lets)
    lines, ready = [views], [j for j, (let, _) in enumerate(lets) if k.complete_after_gemm(let.symbol)]
    for j in ready:
        let, kind = lets[j]
        if let.symbol in k.extras:
            lines.append(_extra_line(k, a, let, kind, numbers[let.symbol]))
    for j0, j1 in _runs(ready):
        run, where = lets[j0:j1], str(lets[j0][0].symbol)
        if (j0, j1) == (0, len(lets)):
            where = f"pre_{a.name}"
        elif j1 - j0 > 1:  # a view of the run's columns, once per step
            where = column_view(f"pre_{a.name}", a.blocks[j0:j1])
            waiting = [str(v.symbol) for j, (v, _) in enumerate(lets) if j not in ready]
            later = f"; {', '.join(waiting)} {'wait' if len(waiting) > 1 else 'waits'} for later values" if waiting else ""
            lines.append(f"{where} = pre_{a.name}[:, {_col_range(j0, j1)}]  # {', '.join(str(v.symbol) for v, _ in run)}, "
                         f"complete{later}")
        lines += _activation(k, a, run, where, ", ".join(f"({numbers[let.symbol]})" for let, _ in run))
        lines += _tanh_lines(k, a, run)
    return lines


def _deferred_gate(k, let, n):
    """A gate whose pre-activation's extra reads a value the step computes after the affine."""
    a = next(a for a in k.cell.affines if a.name in k.gates and any(g is let for g, _ in k.gates[a.name]))
    kind = next(f for g, f in k.gates[a.name] if g is let)
    run = [(let, kind)]
    return [_extra_line(k, a, let, kind, n)] + _activation(k, a, run, str(let.symbol), f"({n})") + _tanh_lines(k, a, run)


def _extra_line(k, a, let, kind, n):
    """The extra's part of the gate's pre-activation, added where the block's part is."""
    return _part_line(k, a, let, kind, str(let.symbol), k.extras[let.symbol], n)


def _added(target, expr, printer):
    """target += expr, or target -= -expr when expr is a negative term (f -= i*q, not f += -i*q)."""
    if expr.could_extract_minus_sign():
        return f"{target} -= {printer.doprint(-expr)}"
    return f"{target} += {printer.doprint(expr)}"


def _block_of(k, a, let):
    return next(b for b, (g, _) in zip(a.blocks, k.gates[a.name]) if g is let)


def _activation(k, a, run, where, cite):
    """Gates of one kind or mixed, activated in place over where (their pre-activations)."""
    if not _through_exp(k, a):
        gates = ", ".join(f"{let.symbol} = tanh({_block_of(k, a, let)})" for let, _ in run)
        return [f"np.tanh({where}, out={where})  # {cite} {gates}, in place: the pre-activations are not needed again"]
    what = "all gates" if where == f"pre_{a.name}" else ("the gate" if len(run) == 1 else "these gates")
    return [
        f"# {cite} {what} with one exp, in place: 1 / (1 + exp(-a)), -a from the weights",
        f"np.exp({where}, out={where})",
        f"{where} += one",
        f"np.reciprocal({where}, out={where})",
    ]


def _tanh_lines(k, a, run):
    """tanh(a) = 2 sigmoid(2a) - 1 for the tanh gates activated through exp with sigmoids."""
    if not _through_exp(k, a):
        return []
    return [line for let, kind in run if kind == "tanh" for line in (
        f"{let.symbol} *= two  # ({k.let_number[let.symbol]}) tanh(a) = 2 sigmoid(2a) - 1: to eps absolutely, not "
        "relatively where |a| << 1", f"{let.symbol} -= one  # ({k.let_number[let.symbol]})")]
