"""Cells nobody wrote: hypothesis builds random valid cells and every one's kernel is proven.

A drawn cell has 1 to 3 states and a few nodes: affine nodes over random subsets of the input,
the previous states and the lets; lets that are random expression trees over sigmoid, tanh,
relu, softplus, exp (of a tanh or of minus a softplus: bounded), +, -, * and division by
expressions bounded away from zero (2 + tanh(u), 1 + sigmoid(u)). It is written out as a
derivation script, loaded, derived and emitted like any user's script, and its kernel must pass
lstm_derive.gradcheck.check_kernel (central differences and the complex step). A failure prints
the script.
"""

import ast
import dataclasses
import functools
import os
import re
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from lstm_derive import derive, exp, gradcheck, relu, sigmoid, softplus, tanh
from lstm_derive.document import kernel_lines
from lstm_derive.emit import emit_kernel
from lstm_derive.generate import KERNELS, import_kernel, load_cell
from lstm_derive.gradcheck import Mismatch, check_kernel, random_problem
from lstm_derive.kernels import CELLS

STATE_NAMES = ["h", "c", "m"]
CONSTANTS = ["0.5", "2", "-1"]


def expressions(names):
    """Source text of elementwise expression trees over the given vector names."""
    return _expressions(tuple(names))


@functools.lru_cache(maxsize=None)  # a recursive strategy costs more to build and validate than to draw from
def _expressions(names):
    leaves = st.sampled_from(list(names) * 3 + CONSTANTS)

    def extend(inner):
        return st.one_of(
            inner.map(lambda a: f"sigmoid({a})"),
            inner.map(lambda a: f"tanh({a})"),
            inner.map(lambda a: f"relu({a})"),
            inner.map(lambda a: f"softplus({a})"),
            inner.map(lambda a: f"exp(tanh({a}))"),  # bounded: exp of exp of a state would overflow
            inner.map(lambda a: f"exp(-softplus({a}))"),  # in (0, 1]: a decay, as in selective state spaces
            st.tuples(inner, inner).map(lambda ab: f"({ab[0]} + {ab[1]})"),
            st.tuples(inner, inner).map(lambda ab: f"({ab[0]} - {ab[1]})"),
            st.tuples(inner, inner).map(lambda ab: f"{ab[0]}*{ab[1]}"),
            st.tuples(inner, inner).map(lambda ab: f"{ab[0]}/(2 + tanh({ab[1]}))"),
            st.tuples(inner, inner).map(lambda ab: f"{ab[0]}/(1 + sigmoid({ab[1]}))"),
        )

    return st.recursive(leaves, extend, max_leaves=5)


class Recipe:
    """The cell being drawn: its script lines and what each name is."""

    def __init__(self):
        self.lines = []
        self.symbols = {}  # script name -> the SymPy symbol the cell returns for it
        self.varying = []  # names whose value changes with the step: x, states, blocks, varying lets
        self.feeds = []  # names an affine may read: x, previous states, varying lets
        self.params = 0

    def add(self, line):
        self.lines.append(line)

    def vector(self, name, symbol_name, varying=True, feeds=True):
        self.symbols[name] = sympy.Symbol(symbol_name, real=True)
        if varying:
            self.varying.append(name)
        if feeds:
            self.feeds.append(name)

    def value(self, text):
        """The expression the text builds, as the script will build it."""
        functions = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu, "softplus": softplus, "exp": exp}
        return eval(text, functions, dict(self.symbols))  # noqa: S307

    def is_varying(self, text):
        varying = {self.symbols[n] for n in self.varying}
        return bool(sympy.sympify(self.value(text)).free_symbols & varying)

    def script(self):
        head = ["from lstm_derive import Cell, exp, relu, sigmoid, softplus, tanh", "", 'cell = Cell("drawn", title="A drawn cell")']
        return "\n".join(head + self.lines) + "\n"


@st.composite
def cell_scripts(draw):
    r = Recipe()
    r.add('x = cell.input("x")')
    r.vector("x", "x", feeds=True)
    states = STATE_NAMES[:draw(st.integers(1, 3))]
    for s in states:
        r.add(f'{s}_prev = cell.state("{s}")')
        r.vector(f"{s}_prev", f"{s}_prev")
    if draw(st.booleans()):
        r.add('p = cell.param("p")')
        r.vector("p", "p", varying=False, feeds=False)
        r.params += 1

    lets = []
    for k in range(draw(st.integers(1, 5))):
        if k == 0 or draw(st.integers(0, 2)) == 0 or (lets and draw(st.integers(0, 3)) == 0):
            others = [n for n in r.feeds if n != "x"]
            inputs = (["x"] if k == 0 or draw(st.booleans()) else [])
            inputs += draw(st.lists(st.sampled_from(others), unique=True, max_size=2)) if others else []
            if not inputs:
                inputs = ["x"]
            blocks = [f"a{k}{j}" for j in range(draw(st.integers(1, 3)))]
            bias = draw(st.sampled_from(["one", "none", "per input"]))
            bias_arg = {"one": f"'b{k}'", "none": "None",
                        "per input": repr([f"b{k}{i}" for i in range(len(inputs))])}[bias]
            r.params += len(inputs) + {"one": 1, "none": 0, "per input": len(inputs)}[bias]
            r.add(f"{', '.join(blocks)}, = cell.affine('A{k}', [{', '.join(inputs)}], blocks={blocks!r}, "
                  f"bias={bias_arg})")
            for b in blocks:
                r.vector(b, b, feeds=False)
        else:
            names = [n for n in r.symbols if n != "x"]
            text = draw(expressions(names))
            name = f"v{k}"
            varying = r.is_varying(text)
            r.add(f"{name} = cell.let('{name}', {text})")
            r.vector(name, name, varying=varying, feeds=varying)
            lets.append(name)

    updates, used = [], set()
    for s in states:
        reuse = [n for n in lets if n in r.varying and n not in used]
        if reuse and draw(st.integers(0, 3)) == 0:
            chosen = draw(st.sampled_from(reuse))
            used.add(chosen)
            updates.append(f"{s}={chosen}")
            continue
        text = draw(expressions([n for n in r.symbols if n != "x"]))
        value = r.value(text)
        if not r.is_varying(text) or value in {r.symbols[n] for n in used}:
            # a state must change with the step, and one node cannot be the new value of two states
            text = f"tanh({text}) + 2*{draw(st.sampled_from([n for n in r.varying if n != 'x']))}"
        elif str(value) in lets:
            used.add(str(value))
        updates.append(f"{s}={text}")
    r.add(f"cell.update({', '.join(updates)})")
    if len(states) > 1 and draw(st.booleans()):
        r.add(f"cell.output = {draw(st.sampled_from(states))!r}")
    if r.params == 1:
        # A kernel with a single parameter trips the emitter (see the fixed cell
        # "a cell with a single parameter" below); give it a bias.
        r.lines = [line.replace("bias=None)", "bias='b_extra')", 1) if "cell.affine('A0'" in line else line
                   for line in r.lines]
    return r.script()


def kernel_source(script_text):
    with tempfile.TemporaryDirectory() as directory:
        return kernel_of(script_text, directory)[1]


def kernel_of(script_text, directory):
    script = Path(directory) / "drawn.py"
    script.write_text(script_text)
    d = derive(load_cell(script))
    source = emit_kernel(d)
    assert not uncited(d, source), f"no kernel line cites {uncited(d, source)}:\n\n{script_text}"
    path = Path(directory) / "drawn_kernel.py"
    path.write_text(source)
    return import_kernel(path), source


def uncited(d, source):
    """The equations no comment of the kernel cites (the document's table would say "none"), but
    for the lets that nothing the new states depend on reads (v2 where only an unread v3 reads
    it): the kernel need not compute them."""
    needed, updates = d.cell.needed(), list(d.cell.updates.values())
    unread = {str(let.symbol) for let in d.cell.lets if let.symbol not in needed and let not in updates}
    cited = kernel_lines(source)
    return [(n, what) for n, what in d.numbered() if n not in cited and what not in unread]


sizes = st.fixed_dictionaries({
    "T": st.integers(1, 5), "B": st.integers(1, 2), "D": st.integers(1, 3), "H": st.integers(1, 3),
    "seed": st.integers(0, 2**31 - 1), "scale": st.floats(0.2, 3.0),  # up to saturation, as the packaged cells'
}).flatmap(lambda c: st.one_of(  # half of the problems with sequences of their own lengths
    st.just(c), st.lists(st.integers(0, c["T"]), min_size=c["B"], max_size=c["B"]).map(lambda n: {**c, "lengths": n})))


# A gate that another affine reads: its value must outlive the backward loop (that affine's
# weight gradient reads it), so its adjoint may not be written over it.
GATE_READ_BY_AN_AFFINE = """from lstm_derive import Cell, sigmoid, tanh

cell = Cell("drawn", title="A drawn cell")
x = cell.input("x")
h_prev = cell.state("h")
a10, = cell.affine('A1', [x], blocks=['a10'], bias='b1')
v2 = cell.let('v2', sigmoid(a10))
a30, a31, = cell.affine('A3', [v2], blocks=['a30', 'a31'], bias='b3')
cell.update(h=a30 * h_prev)
"""

# v2 read by v3 alone, which nothing reads: the kernel computes neither, and cites neither.
A_CHAIN_NOTHING_READS = """from lstm_derive import Cell

cell = Cell("drawn", title="A drawn cell")
x = cell.input("x")
h_prev = cell.state("h")
p = cell.param("p")
a00, a01, = cell.affine('A0', [x], blocks=['a00', 'a01'], bias='b0')
v2 = cell.let('v2', p)
v3 = cell.let('v3', v2)
cell.update(h=h_prev + a00*a01)
"""

# h grows geometrically through a_x1*a_h1 at scale 3, to |U h| near 6000: the complex step's exp
# overflows past 709 in complex128 where the real loss stays finite (and well conditioned).
GROWING = """from lstm_derive import Cell, sigmoid

cell = Cell("drawn", title="A drawn cell")
x = cell.input("x")
h_prev = cell.state("h")
a_x0, a_x1, = cell.affine('W', [x], blocks=['a_x0', 'a_x1'], bias="b_x")
a_h0, a_h1, = cell.affine('U', [h_prev], blocks=['a_h0', 'a_h1'], bias="b_h")
g0 = cell.let('g0', sigmoid(a_x0 + a_h0))
cell.update(h=g0 + a_x1*a_h1)
"""
GROWING_PROBLEM = {"T": 4, "B": 1, "D": 1, "H": 3, "seed": 0, "scale": 3.0}


# 25 drawn cells in the suite; RANDOM_CELLS=2500 with HYPOTHESIS_PROFILE=dev draws that many new ones
@settings(max_examples=int(os.environ.get("RANDOM_CELLS", "25")), suppress_health_check=[HealthCheck.too_slow])
@given(script=cell_scripts(), config=sizes)
@example(script=GATE_READ_BY_AN_AFFINE, config={"T": 2, "B": 2, "D": 2, "H": 2, "seed": 0, "scale": 1.0})
@example(script=A_CHAIN_NOTHING_READS, config={"T": 2, "B": 2, "D": 2, "H": 2, "seed": 0, "scale": 1.0})
@example(script=GROWING, config=GROWING_PROBLEM)
def test_random_cells_have_proven_gradients(script, config):
    assert_proven(script, config)


@pytest.mark.skipif(not gradcheck.WIDE, reason="np.clongdouble is complex128 on this platform")
def test_a_complex_step_lost_to_overflow_is_taken_again_in_clongdouble(tmp_path):
    """GROWING's complex step overflows in complex128 at some elements; in clongdouble, whose exp
    reaches past 11356, it does not, and the report judges every element."""
    kernel, _ = kernel_of(GROWING, tmp_path)
    p = random_problem(kernel, **GROWING_PROBLEM)
    with np.errstate(all="ignore"):  # the overflow this shows
        assert not all(np.isfinite(g).all() for g in gradcheck.complex_step(kernel, p).values())
    for report in check_kernel(kernel, **GROWING_PROBLEM):
        assert report.ok and not report.lost, report


def test_a_complex_step_lost_to_overflow_leaves_the_cell_to_the_other_methods(tmp_path, monkeypatch):
    """Where clongdouble is no wider (or overflows too), GROWING's complex report fails, as it should
    in lstm-derive check, while central differences and the float32 run judge every element and
    pass; the drawn cells' test takes that, and nothing more (a mismatch beside it fails)."""
    monkeypatch.setattr(gradcheck, "_again_in_clongdouble", lambda kernel, p, numeric, lost: (numeric, lost))
    kernel, _ = kernel_of(GROWING, tmp_path)
    central, complex_, low = check_kernel(kernel, **GROWING_PROBLEM)
    assert central.ok and low.ok and not complex_.ok and complex_.lost > 0, (central, complex_, low)
    assert lost_to_complex_overflow(complex_) and not lost_to_complex_overflow(central)
    wrong = dataclasses.replace(complex_, mismatches=[Mismatch("U_h", (0, 0), 1.0, 1.1, 0.1)])
    assert not lost_to_complex_overflow(wrong)


def assert_proven(script, config):
    """The drawn cell derives and emits, its kernel imports NumPy alone and passes the gradient check."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            kernel, source = kernel_of(script, directory)
            if hasattr(kernel, "_span"):  # spans of 2 steps: T of 3 crosses one span boundary
                kernel._span = lambda B, H, dtype: 2
            reports = check_kernel(kernel, **config)
        except Exception as error:  # noqa: BLE001 - any error is this cell's failure; show the cell
            pytest.fail(f"deriving, emitting or checking this cell raised {type(error).__name__}: {error}\n\n"
                        f"{script}", pytrace=False)
    assume(not any(r.vacuous for r in reports))  # every gradient 0 (a relu off throughout): nothing to judge
    failed = [str(r) for r in reports if not (r.ok or lost_to_complex_overflow(r))]
    assert not failed, (f"the kernel of this cell fails the gradient check ({config}):\n\n{script}\n"
                        + "\n".join(failed))
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [alias.name for n in imports for alias in n.names] == ["numpy"], script


def lost_to_complex_overflow(report):
    """The complex step's report whose one flaw is elements lost to overflow in complex arithmetic
    (a state grown geometrically, as a_x*a_h makes it at scale 3, past exp's 709), the loss being
    finite: central differences and the float32 run judge those elements, and must pass."""
    return report.method == "complex" and report.lost and dataclasses.replace(report, unjudged="", lost=0).ok


@st.composite
def summed_block_scripts(draw):
    """Cells whose gates sum the j-th blocks of two affines (a GRU's r = sigmoid(a_xr + a_hr)),
    which the emitter fuses, folds and negates: each block a sigmoid's or a tanh's sum or read
    as it is, sums written either way round, with a part known before the step (h_prev*p) or
    none that any step changes (+1), a recurrent block read elsewhere too, biases or none. Without
    the second affine, adjacent gates of one affine with such parts (an SRU's f and r)."""
    n = draw(st.integers(2, 4))
    kinds = draw(st.lists(st.sampled_from(["sigmoid", "tanh", None]), min_size=n, max_size=n))
    second = draw(st.sampled_from(["[h_prev]", "[x, h_prev]", None]))  # recurrent alone, of x too, or none
    bias_x, bias_h = draw(st.sampled_from(['"b_x"', "None"])), draw(st.sampled_from(['"b_h"', "None"]))
    lines = ["from lstm_derive import Cell, sigmoid, tanh", "", 'cell = Cell("drawn", title="Summed blocks")',
             'x = cell.input("x")', 'h_prev = cell.state("h")', 'p = cell.param("p")',
             f"{', '.join(f'a_x{j}' for j in range(n))}, = cell.affine('W', [x], blocks={[f'a_x{j}' for j in range(n)]}, bias={bias_x})"]
    if second:
        lines.append(f"{', '.join(f'a_h{j}' for j in range(n))}, = cell.affine('U', {second}, "
                     f"blocks={[f'a_h{j}' for j in range(n)]}, bias={bias_h})")
    terms = []
    for j, kind in enumerate(kinds):
        other = f"a_h{j}" if second else "h_prev"
        if kind is None:
            terms.append(f"a_x{j}*{other}")
            continue
        blocks = [f"a_x{j}", f"a_h{j}"][::draw(st.sampled_from([1, -1]))] if second else [f"a_x{j}"]
        extra = draw(st.sampled_from(["", " + p*h_prev", " + 1.0", " - 0.5*p"]))
        lines.append(f"g{j} = cell.let('g{j}', {kind}({' + '.join(blocks)}{extra}))")
        terms.append(f"g{j}" + draw(st.sampled_from(["", f"*{other}", "*h_prev"])))  # a_h{j} read by h too
    lines.append(f"cell.update(h={' + '.join(terms)})")
    return "\n".join(lines) + "\n"


# 10 drawn cells in the suite; RANDOM_CELLS as above draws that many
@settings(max_examples=int(os.environ.get("RANDOM_CELLS", "10")), suppress_health_check=[HealthCheck.too_slow])
@given(script=summed_block_scripts(), config=sizes)
def test_random_cells_of_summed_blocks_have_proven_gradients(script, config):
    assert_proven(script, config)


@st.composite
def gate_affine_scripts(draw):
    """LSTM-like cells, whose affine's every block feeds one gate, which the emitter activates
    together through one exp with the gates' factors on the weights: sigmoids and tanhs, a block
    times a number, a part known before the step (p*c_prev), one no step changes (+1, -lam), a
    peephole on the new cell state (lstm_peephole's o); a cell state or none; the affine of x and
    h_prev, or of x alone (gates that read no state are formed before the loop)."""
    n = draw(st.integers(2, 4))
    cell_state = draw(st.booleans())
    inputs = draw(st.sampled_from(["[x, h_prev]", "[x]"]))  # of x alone: gates formed before the loop (a QRNN's)
    lines = ["from lstm_derive import Cell, sigmoid, tanh", "", 'cell = Cell("drawn", title="Gates")',
             'x = cell.input("x")', 'h_prev = cell.state("h")', 'q = cell.param("q")', 'lam = cell.let("lam", tanh(q))',
             *(['c_prev = cell.state("c")'] if cell_state else []),
             f"{', '.join(f'a{j}' for j in range(n))}, = cell.affine('W', {inputs}, blocks={[f'a{j}' for j in range(n)]})"]
    state = "c_prev" if cell_state else "h_prev"
    gates = []
    for j in range(n):
        kind = draw(st.sampled_from(["sigmoid", "tanh"]))
        number = draw(st.sampled_from(["", "2*", "0.5*"]))
        extra = draw(st.sampled_from(["", f" + q*{state}", " + 1.0", " - lam"]))
        gates.append(f"{kind}({number}a{j}{extra})")
    peephole = cell_state and n > 2 and draw(st.booleans())  # the last gate reads the new c, after it
    before = gates[:-1] if peephole else gates  # the gates c may read
    for j, gate in enumerate(before):
        lines.append(f"g{j} = cell.let('g{j}', {gate})")
    if cell_state:
        lines.append(f"c = cell.let('c', g0*c_prev + {'g1*g2' if len(before) > 2 else '(1 - g0)*g1'})")
    if peephole:
        lines.append(f"g{n - 1} = cell.let('g{n - 1}', {gates[-1][:-1]} + q*c))")
    last = f"g{n - 1}"
    lines.append(f"cell.update(h={last}*tanh(c), c=c)" if cell_state else f"cell.update(h=g0*h_prev + (1 - g0)*{last})")
    return "\n".join(lines) + "\n"


# 10 drawn cells in the suite; RANDOM_CELLS as above draws that many
@settings(max_examples=int(os.environ.get("RANDOM_CELLS", "10")), suppress_health_check=[HealthCheck.too_slow])
@given(script=gate_affine_scripts(), config=sizes)
def test_random_cells_of_gate_affines_have_proven_gradients(script, config):
    assert_proven(script, config)


DIVIDES_BY_A_NEW_STATE = """from lstm_derive import Cell, exp, sigmoid, tanh

cell = Cell("drawn", title="sLSTM-like: a gate reads p/n, n the new normaliser")
x = cell.input("x")
h_prev, c_prev = cell.state("h"), cell.state("c")
n_prev = cell.state("n", positive=True)
a_i, a_f, a_z, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_z", "a_o"])
i = cell.let("i", exp(a_i))
f = cell.let("f", sigmoid(a_f))
z = cell.let("z", tanh(a_z))
c = cell.let("c_new", f * c_prev + i * z)
n = cell.let("n_new", f * n_prev + i)
o = cell.let("o", sigmoid(a_o + cell.param("p") / n))
cell.update(h=o * c / n, c=c, n=n)
"""


def test_a_gradient_summed_after_the_loop_from_a_local_that_divides_by_a_new_state_stays_right():
    """dp sums da_o/n over every step and row after the loop: a sequence of length 0 from n = 0
    keeps n = 0, and its zero adjoints times 1/0 must not make dp nan."""
    with tempfile.TemporaryDirectory() as directory:
        kernel, source = kernel_of(DIVIDES_BY_A_NEW_STATE, directory)
        assert "_before_ends(1/n_seq[1:], ended)" in source
        assert_a_sequence_of_length_0_adds_nothing(kernel)


def assert_a_sequence_of_length_0_adds_nothing(kernel):
    """Two sequences from the zero state, the second of length 0: the batch's gradients are the
    first's alone, and the second's dx is zero, however the cell takes a state it never makes
    (a normaliser n = 0 it divides by: the steps the second passes must not bring 0 * inf = nan)."""
    params = kernel.init_params(3, 4, seed=2)
    rng = np.random.default_rng(1)
    x, dys = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 4))
    _, _, cache = kernel.forward(params, x, None, lengths=[4, 0])
    with np.errstate(divide="ignore", invalid="ignore"):  # the step's values for the ended row: dropped
        grads, dx, _ = kernel.backward(params, cache, dys * [[[1], [0]]])
    _, _, alone = kernel.forward(params, x[:, :1])
    grads_alone, dx_alone, _ = kernel.backward(params, alone, dys[:, :1])
    for name in kernel.PARAMS:
        np.testing.assert_allclose(grads[name], grads_alone[name], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx[:, :1], dx_alone, rtol=1e-12)
    np.testing.assert_array_equal(dx[:, 1], 0.0)


def test_the_strategy_draws_every_kind_of_node():
    """The strategy reaches what it promises: 1 to 3 states, params, every operation."""
    seen = set()

    @settings(max_examples=150, database=None)  # "affine of a let" comes in 7% of draws: 150 miss it once in 50000
    @given(cell_scripts())
    def collect(script):
        seen.add(f"states {script.count('cell.state(')}")
        for what in ("cell.param", "bias=None", "bias=[", "sigmoid(", "tanh(", "relu(", "softplus(", "exp(", " - ", "*", "/(2 + tanh(",
                     "/(1 + sigmoid(", "cell.output", "cell.let("):
            if what in script:
                seen.add(what)
        if any("cell.affine(" in line and "h_prev" in line for line in script.splitlines()):
            seen.add("affine of a state")
        if any("cell.affine(" in line and re.search(r"[\[ ]v\d", line) for line in script.splitlines()):
            seen.add("affine of a let")

    collect()
    expected = {"states 1", "states 2", "states 3", "cell.param", "bias=None", "bias=[", "sigmoid(", "tanh(", "relu(",
                "softplus(", "exp(",
                " - ", "*", "/(2 + tanh(", "/(1 + sigmoid(", "cell.output", "cell.let(", "affine of a state",
                "affine of a let"}
    assert expected <= seen, f"never drawn: {sorted(expected - seen)}"


FIXED_CELLS = {
    "a cell with a single parameter": """
        from lstm_derive import Cell, tanh

        cell = Cell("single", title="One weight and nothing else")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("W", [x], blocks=["a"], bias=None)
        cell.update(h=h_prev + tanh(a))
    """,
    # Found by the random cells: 16 of 3000 drawn cells had this shape.
    "a named node inside a nested call": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("nested", title="A named node inside a nested call")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        s = cell.let("s", sigmoid(a))
        cell.update(h=tanh(tanh(sigmoid(a))) * s)
    """,
    # Found by the random cells: 606 of 1500 drawn cells failed so.
    "an unnamed call in a local derivative": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("unnamed", title="A call no node names, inside a local derivative")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        cell.update(h=sigmoid(tanh(a)))
    """,
    # Found by the random cells: dv2/dh_prev = 1 + p reads parameters alone, so it is no
    # sequence over a span; indexing it by step read p's elements instead.
    "a local derivative of parameters alone": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("param_local", title="A local derivative of parameters alone")
        x = cell.input("x")
        h_prev = cell.state("h")
        c_prev = cell.state("c")
        m_prev = cell.state("m")
        p = cell.param("p")
        (a,) = cell.affine("W", [x], blocks=["a"])
        (u,) = cell.affine("U", [x], blocks=["u"], bias=None)
        v = cell.let("v", p * h_prev + (h_prev - a))
        cell.update(h=sigmoid(h_prev) * sigmoid(v * h_prev), c=v, m=tanh(u * u))
    """,
    # Found by the random cells: a loop-only affine whose every block's bias is folded into the
    # input affine's must add no bias in the loop (it added b2 a second time).
    "a recurrent affine whose bias is folded whole": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("folded_whole", title="A recurrent affine whose bias joins the input's")
        x = cell.input("x")
        h_prev = cell.state("h")
        c_prev = cell.state("c")
        a00, a01 = cell.affine("A0", [x], blocks=["a00", "a01"], bias="b0")
        (a20,) = cell.affine("A2", [h_prev], blocks=["a20"], bias="b2")
        v3 = cell.let("v3", tanh(a20 + a00))
        cell.update(h=h_prev * a01, c=sigmoid(v3))
    """,
    # A peephole's paths read the gate's pre-activation adjoint (p*da): a parameter alone in the
    # pre-activation, one read by two gates, one times a gate whose slot its adjoint takes over,
    # a new state and a previous one in one pre-activation.
    "peepholes of every kind": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("peeps", title="Peepholes of every kind")
        x = cell.input("x")
        h_prev = cell.state("h")
        c_prev = cell.state("c")
        p, q, r = cell.param("p"), cell.param("q"), cell.param("r")
        a_i, a_o, a_g = cell.affine("W", [x, h_prev], blocks=["a_i", "a_o", "a_g"])
        i = cell.let("i", sigmoid(a_i + p))
        g = cell.let("g", tanh(a_g + q * i))
        c = cell.let("c", c_prev * (1 - i) + g * i)
        o = cell.let("o", sigmoid(a_o + r * c + p * h_prev))
        cell.update(c=c, h=o * tanh(c))
    """,
    # Every gate complete after the GEMM, two with extras: one exp over the whole buffer.
    "peepholes on the previous state only": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("ifonly", title="Peepholes on i and f only")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a_i, a_f, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
        p_i, p_f = cell.param("p_i"), cell.param("p_f")
        i = cell.let("i", sigmoid(a_i + p_i * c_prev))
        f = cell.let("f", sigmoid(a_f + p_f * c_prev))
        g = cell.let("g", tanh(a_g))
        o = cell.let("o", sigmoid(a_o))
        c = cell.let("c", f * c_prev + i * g)
        cell.update(c=c, h=o * tanh(c))
    """,
    # Found in review: with the recurrent affine declared first, the peephole's path read the twin
    # block's adjoint (da_hi, a view of da_xi) before the loop had scaled it.
    "peepholes over two affines, the recurrent one first": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("split_hx", title="A peephole LSTM over two affines (PyTorch's weight layout)")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        p_i, p_f, p_o = cell.param("p_i"), cell.param("p_f"), cell.param("p_o")
        a_hi, a_hf, a_hg, a_ho = cell.affine("U", [h_prev], blocks=["a_hi", "a_hf", "a_hg", "a_ho"], bias="b_h")
        a_xi, a_xf, a_xg, a_xo = cell.affine("W", [x], blocks=["a_xi", "a_xf", "a_xg", "a_xo"], bias="b_x")
        i = cell.let("i", sigmoid(a_xi + a_hi + p_i * c_prev))
        f = cell.let("f", sigmoid(a_xf + a_hf + p_f * c_prev))
        g = cell.let("g", tanh(a_xg + a_hg))
        c = cell.let("c", f * c_prev + i * g)
        o = cell.let("o", sigmoid(a_xo + a_ho + p_o * c))
        cell.update(c=c, h=o * tanh(c))
    """,
    "a gru with the recurrent affine first and a peephole on r": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("gru_u_first", title="A GRU, recurrent affine first, r reading c_prev")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        q = cell.param("q")
        a_hr, a_hz, a_hn = cell.affine("U", [h_prev], blocks=["a_hr", "a_hz", "a_hn"], bias="b_h")
        a_xr, a_xz, a_xn = cell.affine("W", [x], blocks=["a_xr", "a_xz", "a_xn"], bias="b_x")
        r = cell.let("r", sigmoid(a_hr + a_xr + q * c_prev))
        z = cell.let("z", sigmoid(a_xz + a_hz))
        n = cell.let("n", tanh(a_xn + r * a_hn))
        cell.update(h=(1 - z) * n + z * h_prev, c=0.5 * c_prev + r * n)
    """,
    # Parameter gradients summed after the loop with a factor taken out, a call of a state inside.
    "parameter shares with factors": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("negp", title="Parameter shares with factors")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        p, q = cell.param("p"), cell.param("q")
        a_i, a_f = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f"])
        i = cell.let("i", sigmoid(a_i - 2 * p * c_prev + q * tanh(c_prev)))
        f = cell.let("f", sigmoid(a_f + p * q))
        cell.update(c=f * c_prev + i, h=tanh(c_prev) * i)
    """,
    # Gates of tanh alone (no factor on the weights): the extras are added as they are.
    "tanh gates with extras": """
        from lstm_derive import Cell, tanh

        cell = Cell("tanh_extras", title="Two tanh gates, one reading the other")
        x = cell.input("x")
        h_prev = cell.state("h")
        p = cell.param("p")
        a_u, a_v = cell.affine("W", [x, h_prev], blocks=["a_u", "a_v"])
        u = cell.let("u", tanh(a_u + p * h_prev))
        v = cell.let("v", tanh(a_v + u * u))
        cell.update(h=u * v + 0.5 * h_prev)
    """,
    # Found by the random cells: a parameter's gradient summed after the loop read tanh(p) by a
    # name the kernel never defined.
    "a call of a parameter in a gate's pre-activation": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("call_of_param", title="A parameter inside a call, inside a gate's pre-activation")
        x = cell.input("x")
        h_prev = cell.state("h")
        p = cell.param("p")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        v = cell.let("v", sigmoid(a + tanh(p)))
        cell.update(h=v * h_prev + 0.5 * v)
    """,
    # Found by the random cells: sigmoid(a00 + (a00 + a10)) is sigmoid(2*a00 + a10), which the
    # forward pass summed as a00 + a10 (a gate over two affines' blocks), its gradients twice over.
    "a block twice in a gate's sum": """
        from lstm_derive import Cell, sigmoid

        cell = Cell("twice", title="A block twice in a gate's sum")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a00,) = cell.affine("A0", [x], blocks=["a00"], bias="b0")
        (a10,) = cell.affine("A1", [x], blocks=["a10"], bias="b1")
        v2 = cell.let("v2", sigmoid(a00 + (a00 + a10)))
        (a30,) = cell.affine("A3", [h_prev, v2], blocks=["a30"], bias="b3")
        cell.update(h=a30)
    """,
    # Found by the random cells: a local that is a whole product formed for the span (dm/dh_prev
    # = 1 - m**2, da00's) was a view of it, which the loop scales before reading the local.
    "a span local that is a product's whole": """
        from lstm_derive import Cell, tanh

        cell = Cell("whole", title="A span local that is a product formed for the span")
        x = cell.input("x")
        h_prev, c_prev, m_prev = cell.state("h"), cell.state("c"), cell.state("m")
        (a00,) = cell.affine("A0", [x, h_prev], blocks=["a00"], bias="b0")
        cell.update(h=h_prev, c=h_prev, m=tanh(h_prev + a00))
    """,
    # Lets of parameters alone are (H,) vectors formed once; their adjoints are summed over the
    # steps and rows in the loop, and their parameters' terms added after it.
    "a leaky unit with a learned leak": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("leaky", title="A leaky unit, its leak a sigmoid of a parameter")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        p = cell.param("p")
        lam = cell.let("lam", sigmoid(p))
        cell.update(h=lam * h_prev + (1 - lam) * tanh(a))
    """,
    "lets of parameters alone, chained, their parameter also read per step": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("chained", title="Lets of parameters alone in a chain")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a_i, a_g = cell.affine("W", [x, h_prev], blocks=["a_i", "a_g"])
        p, q = cell.param("p"), cell.param("q")
        lam = cell.let("lam", sigmoid(p) * q)
        mu = cell.let("mu", tanh(lam) + lam * p)
        i = cell.let("i", sigmoid(a_i + mu * c_prev))
        c = cell.let("c", lam * c_prev + i * tanh(a_g) + p * h_prev)
        cell.update(c=c, h=tanh(c) * (1 - mu))
    """,
    # Found by the random cells: the adjoint of a let of constants alone read that of a let in a
    # block's chain, which the loop never formed (it sat in the block's product).
    "a let of constants alone read by a let in a block's chain": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("scaled", title="A block's chain through a product with a let of constants alone")
        x = cell.input("x")
        h_prev = cell.state("h")
        a1, a2 = cell.affine("W", [x, h_prev], blocks=["a1", "a2"])
        k = cell.let("k", sigmoid(0.5))
        u = cell.let("u", tanh(a1) * k)
        cell.update(h=u + sigmoid(a2) * h_prev)
    """,
    # A gate's extra that no step changes (a forget bias, a let of parameters alone, a parameter
    # beside a peephole) joins the bias once, before the loop.
    "an lstm with steady parts in its gates' pre-activations": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("steady", title="An LSTM with a forget bias and learned offsets")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a_i, a_f, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
        p, q, p_o = cell.param("p"), cell.param("q"), cell.param("p_o")
        lam = cell.let("lam", tanh(p))
        i = cell.let("i", sigmoid(a_i + lam))
        f = cell.let("f", sigmoid(a_f + 1.0))
        g = cell.let("g", tanh(a_g - 0.5 * q))
        c = cell.let("c", f * c_prev + i * g)
        o = cell.let("o", sigmoid(a_o + p_o * c + q))
        cell.update(c=c, h=o * tanh(c))
    """,
    "a gru with steady parts in its gates' sums": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("gru_steady", title="A GRU whose gates' sums have a constant and a learned offset")
        x = cell.input("x")
        h_prev = cell.state("h")
        q = cell.param("q")
        lam = cell.let("lam", tanh(q))
        a_xr, a_xz, a_xn = cell.affine("W", [x], blocks=["a_xr", "a_xz", "a_xn"], bias="b_x")
        a_hr, a_hz, a_hn = cell.affine("U", [h_prev], blocks=["a_hr", "a_hz", "a_hn"], bias="b_h")
        r = cell.let("r", sigmoid(a_xr + a_hr + 1.0))
        z = cell.let("z", sigmoid(a_xz + a_hz - 2 * lam + q * h_prev))
        n = cell.let("n", tanh(a_xn + r * a_hn))
        cell.update(h=(1 - z) * n + z * h_prev)
    """,
    # A number times a gate's block rides on the weights with the gate's factor.
    "an lstm with numbers times its gates' blocks": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("scaled_blocks", title="An LSTM whose gates scale their blocks")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a_i, a_f, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
        a_r, a_s = cell.affine("R", [x, h_prev], blocks=["a_r", "a_s"], bias="b_r")
        a_t, = cell.affine("V", [x, h_prev], blocks=["a_t"], bias="b_v")
        p = cell.param("p")
        i = cell.let("i", sigmoid(2 * a_i))
        f = cell.let("f", sigmoid(a_f + 1.0))
        g = cell.let("g", tanh(0.5 * a_g))
        c = cell.let("c", f * c_prev + i * g)
        o = cell.let("o", sigmoid(p * c - a_o))
        r = cell.let("r", sigmoid(3 * a_r))
        s = cell.let("s", sigmoid(a_s))
        u = cell.let("u", tanh(-2 * a_t))
        cell.update(c=c, h=o * tanh(c) * r + s * u)
    """,
    # A block read by two gates (JANET's shifted forget gate): its adjoint's lets, each passing one
    # consumer's adjoint on, are folded into one local formed for the span.
    "a block read by two gates": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("janet", title="A forget gate alone, its complement shifted")
        x = cell.input("x")
        h_prev = cell.state("h")
        a_f, a_c = cell.affine("W", [x, h_prev], blocks=["a_f", "a_c"])
        f = cell.let("f", sigmoid(a_f))
        s = cell.let("s", sigmoid(a_f - 1.0))
        cell.update(h=f * h_prev + (1 - s) * tanh(a_c))
    """,
    "a gru with a peephole on its update gate": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("gru_peep", title="A GRU whose update gate reads h_prev elementwise")
        x = cell.input("x")
        h_prev = cell.state("h")
        p = cell.param("p")
        a_xr, a_xz, a_xn = cell.affine("W", [x], blocks=["a_xr", "a_xz", "a_xn"], bias="b_x")
        a_hr, a_hz, a_hn = cell.affine("U", [h_prev], blocks=["a_hr", "a_hz", "a_hn"], bias="b_h")
        r = cell.let("r", sigmoid(a_xr + a_hr))
        z = cell.let("z", sigmoid(a_xz + a_hz + p * h_prev))
        n = cell.let("n", tanh(a_xn + r * a_hn))
        cell.update(h=(1 - z) * n + z * h_prev)
    """,
    "an lstm whose candidate is written inline": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("lstm_inline", title="An LSTM whose candidate tanh(a_g) is not named")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a_i, a_f, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
        i, f, o = cell.let("i", sigmoid(a_i)), cell.let("f", sigmoid(a_f)), cell.let("o", sigmoid(a_o))
        c = cell.let("c", f * c_prev + i * tanh(a_g))
        cell.update(c=c, h=o * tanh(c))
    """,
    "an sru-like cell whose candidate is a raw block": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("sru", title="A light recurrence: the candidate is the block itself")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        v_f, v_r = cell.param("v_f"), cell.param("v_r")
        a_f, a_r, a_c = cell.affine("W", [x], blocks=["a_f", "a_r", "a_c"])
        f = cell.let("f", sigmoid(a_f + v_f * c_prev))
        r = cell.let("r", sigmoid(a_r + v_r * c_prev))
        c = cell.let("c", f * c_prev + (1 - f) * a_c)
        cell.update(h=r * tanh(c), c=c)
    """,
    "one affine's gates with a node between them, the later block's gate first, a forget bias": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("sru_rev", title="r before f, a node between them that reads r, a forget bias")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        v_f, v_r = cell.param("v_f"), cell.param("v_r")
        a_f, a_r, a_c = cell.affine("W", [x], blocks=["a_f", "a_r", "a_c"])
        r = cell.let("r", sigmoid(a_r + v_r * c_prev))
        m = cell.let("m", r * c_prev)
        f = cell.let("f", sigmoid(a_f + 1.0 + v_f * c_prev))
        c = cell.let("c", f * m + (1 - f) * a_c)
        cell.update(h=r * tanh(c), c=c)
    """,
    "a raw block the loop reads, and no product": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("raw_read", title="A raw block read in the loop's own adjoints: saved for the span")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("A", [x], blocks=["a"])
        cell.update(h=tanh((a + h_prev) / (1 + sigmoid(a + h_prev))))
    """,
    "a gru-like sum whose twin's affine comes second": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("late_twin", title="A sum of two affines' blocks, the loop-only one listed first in the loop")
        x = cell.input("x")
        h_prev = cell.state("h")
        c_prev = cell.state("c")
        (a00,) = cell.affine("A0", [x, h_prev], blocks=["a00"], bias="b0")
        a10, a11 = cell.affine("A1", [h_prev], blocks=["a10", "a11"], bias="b1")
        s = cell.let("s", sigmoid(a00 + a10))
        cell.update(h=h_prev, c=sigmoid(s))
    """,
    "an sru whose gates read x alone": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("sru_x", title="The gates read x alone: the recurrence is elementwise", output="h")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a_f, a_r, xt = cell.affine("W", [x], blocks=["a_f", "a_r", "xt"], bias="b")
        f = cell.let("f", sigmoid(a_f))
        r = cell.let("r", sigmoid(a_r))
        c = cell.let("c", f * c_prev + (1 - f) * xt)
        cell.update(h=r * tanh(c), c=c)
    """,
    # two adjacent runs over W's and U's blocks, the second's bias folded, the first's block read by h too
    **{f"adjacent fused runs, one folded, the {which} one's recurrent block stored": f"""
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("runs_apart", title="A run whose block the update reads, a run of another kind beside it")
        x = cell.input("x")
        h_prev = cell.state("h")
        a_x0, a_x1 = cell.affine("W", [x], blocks=["a_x0", "a_x1"], bias="b_x")
        a_h0, a_h1 = cell.affine("U", [h_prev], blocks=["a_h0", "a_h1"], bias="b_h")
        g0 = cell.let("g0", {first}(a_x0 + a_h0))
        g1 = cell.let("g1", {second}(a_x1 + a_h1))
        cell.update(h=g0 * a_h0 + g1)
    """ for which, first, second in [("tanh", "tanh", "sigmoid"), ("negated", "sigmoid", "tanh")]},
    "gates of x alone, each over a sum of two affines' blocks": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("sum_x", title="Gates of x alone that sum two affines", output="h")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a_f, a_r, xt = cell.affine("W", [x], blocks=["a_f", "a_r", "xt"], bias="b")
        u_f, u_r = cell.affine("U", [x], blocks=["u_f", "u_r"], bias="b_u")
        f = cell.let("f", sigmoid(a_f + u_f + 1.0))
        r = cell.let("r", sigmoid(u_r + a_r))
        c = cell.let("c", f * c_prev + (1 - f) * xt)
        cell.update(h=r * tanh(c), c=c)
    """,
    "a qrnn-like cell whose affine's every block is a gate of x alone": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("qrnn", title="f-o pooling with a window of one step")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a_z, a_f, a_o = cell.affine("W", [x], blocks=["a_z", "a_f", "a_o"])
        z, f, o = cell.let("z", tanh(a_z)), cell.let("f", sigmoid(a_f)), cell.let("o", sigmoid(a_o))
        c = cell.let("c", f * c_prev + (1 - f) * z)
        cell.update(h=o * c, c=c)
    """,
    "a minimalrnn: a value of x alone that a recurrent affine reads, and one read by no step": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("minimal", title="z of x alone, read by the recurrent affine")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a_z,) = cell.affine("W", [x], blocks=["a_z"])
        s = cell.let("s", a_z * sigmoid(a_z))
        z = cell.let("z", tanh(s))
        (a_u,) = cell.affine("U", [h_prev, z], blocks=["a_u"], bias="b_u")
        u = cell.let("u", sigmoid(a_u))
        cell.update(h=u * h_prev + (1 - u) * z)
    """,
    "an affine of x, of two values formed before the loop, and of the state, each input with its bias": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("mixed", title="The input GEMMs read x, z and g; the loop adds U_h h_prev")
        x = cell.input("x")
        h_prev = cell.state("h")
        a_z, a_y = cell.affine("W", [x], blocks=["a_z", "a_y"])
        z, g = cell.let("z", tanh(a_z)), cell.let("g", sigmoid(a_y))
        a_u, a_n = cell.affine("U", [x, z, g, h_prev], blocks=["a_u", "a_n"], bias=["b_ux", "b_uz", "b_ug", "b_uh"])
        u, n = cell.let("u", sigmoid(a_u)), cell.let("n", tanh(a_n))
        cell.update(h=u * h_prev + (1 - u) * n * z)
    """,
    "a value formed before the loop read by an affine whose gate is formed there too": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("second", title="v = sigmoid(V z) of z = tanh(W x): both before the loop")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a_z,) = cell.affine("W", [x], blocks=["a_z"])
        z = cell.let("z", tanh(a_z))
        (a_v,) = cell.affine("V", [z], blocks=["a_v"], bias="b_v")
        v = cell.let("v", sigmoid(a_v))
        cell.update(h=v * h_prev + z)
    """,
    # Found by the random cells: a call of x alone inside a new state's value, formed before the loop
    # with the let of x alone that reads it too; and a let of x alone that repeats a new state's value.
    "calls of x alone inside a new state's value, and a let that repeats it": """
        from lstm_derive import Cell, exp, relu, softplus, sigmoid, tanh

        cell = Cell("calls", title="Calls formed before the loop that the loop reads")
        x = cell.input("x")
        h_prev, m_prev = cell.state("h"), cell.state("m")
        a01, a02 = cell.affine("A0", [x], blocks=["a01", "a02"], bias=None)
        v1 = cell.let("v1", tanh(exp(-softplus(softplus(a01)))))
        v3 = cell.let("v3", exp(-softplus(a01)))
        v4 = cell.let("v4", relu(tanh(h_prev) - relu(a02)))
        v5 = cell.let("v5", relu(tanh(h_prev) - relu(a02)) * v3)
        cell.update(h=softplus(a01 / (1 + sigmoid(m_prev))) + v4 + v5, m=v1)
    """,
    # Values formed before the loop, at their edges: one that the loop reads but keeps no storage
    # of, so the value of it stays in the loop too; one grouped with a gate that reads the state;
    # lets named like NumPy's functions and keywords (out, dot) and like a buffer (pre_q).
    "a value of x alone the loop reads unstored, and one that reads it": """
        from lstm_derive import Cell, tanh

        cell = Cell("unstored", title="s of x alone read by the loop and by k of x alone")
        x = cell.input("x")
        h_prev = cell.state("h")
        a1, a2 = cell.affine("W", [x], blocks=["a1", "a2"])
        s = cell.let("s", a1 * a2)
        k = cell.let("k", tanh(s))
        cell.update(h=k * h_prev + s)
    """,
    "a gate of x alone activated with one that reads the state, and a value of it": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("grouped", title="f state-free but activated with i, which reads c_prev; k of f")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        p = cell.param("p")
        a_i, a_f = cell.affine("W", [x], blocks=["a_i", "a_f"])
        i = cell.let("i", sigmoid(a_i + p * c_prev))
        f = cell.let("f", sigmoid(a_f))
        k = cell.let("k", tanh(2 * f))
        c = cell.let("c_new", f * c_prev + i * k)
        cell.update(h=tanh(c), c=c)
    """,
    "gates of x alone, one with an extra of x alone, activated over some of the affine's columns": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("ready", title="f and o activated over their columns before the loop, i after its extra")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        (a_k,) = cell.affine("V", [x], blocks=["a_k"], bias="b_v")
        k = cell.let("k", tanh(a_k))
        a_i, a_f, a_o = cell.affine("W", [x], blocks=["a_i", "a_f", "a_o"], bias="b")
        i = cell.let("i", sigmoid(a_i + k))
        f, o = cell.let("f", sigmoid(a_f)), cell.let("o", sigmoid(a_o))
        c = cell.let("c_new", f * c_prev + i)
        cell.update(h=o * tanh(c), c=c)
    """,
    # Found by fuzzing: a call formed before the loop that reads a let written after the let that
    # holds the call; a forget bias folded into an affine whose input GEMM reads a value of x alone.
    "a call of x alone written before the let it reads": """
        from lstm_derive import Cell, relu, sigmoid

        cell = Cell("later", title="relu(0.5*sigmoid(a)) in u, then s = sigmoid(a)")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("A", [x], blocks=["a"])
        u = cell.let("u", relu(0.5 * sigmoid(a)) * h_prev)
        s = cell.let("s", sigmoid(a))
        cell.update(h=u + s)
    """,
    "a forget bias in an affine whose input GEMM reads a value of x alone": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("biased", title="f = sigmoid(a_f + 1) of U [z, h_prev], z = sigmoid(A x)")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("A", [x], blocks=["a"])
        z = cell.let("z", sigmoid(a))
        a_f, a_g = cell.affine("U", [z, h_prev], blocks=["a_f", "a_g"], bias="b_u")
        f, g = cell.let("f", sigmoid(a_f + 1)), cell.let("g", tanh(a_g))
        cell.update(h=f * h_prev + g)
    """,
    "values of x alone named out, dot and pre_q": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("numpy_names", title="Lets named like NumPy's keywords and functions, and like a buffer")
        x = cell.input("x")
        h_prev = cell.state("h")
        a_z, a_q = cell.affine("W", [x], blocks=["a_z", "a_q"])
        v = cell.let("out", a_z + a_q)
        d = cell.let("dot", tanh(v))
        q = cell.let("pre_q", tanh(a_z) * a_q)
        (a_u,) = cell.affine("U", [h_prev, d], blocks=["a_u"], bias="b_u")
        u = cell.let("u", sigmoid(a_u))
        cell.update(h=u * h_prev + (1 - u) * d + tanh(q * h_prev))
    """,
    "numbers in both loops": """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("doubled", title="Twice the old output and the old state squared, and a coupled gate")
        x = cell.input("x")
        h_prev = cell.state("h")
        c_prev = cell.state("c")
        a_i, a_g = cell.affine("W", [x, h_prev], blocks=["a_i", "a_g"])
        i = cell.let("i", sigmoid(a_i))
        f = cell.let("f", 1 - i)
        c = cell.let("c", f * c_prev + i * tanh(a_g) + 2 * h_prev + i * c_prev**2)
        cell.update(h=tanh(c), c=c)
    """,
}

# GRU's shape in variants: gates over sums of two affines' blocks, whose adjoints are one
# (twins), the second affine's bias folded into the first's. Each variant moves a part the
# emitter relies on: the bias on one side only, the order of the blocks, a second recurrent
# input, the candidate's block not kept, the gates' sums without names.
_GRU = """
    from lstm_derive import Cell, sigmoid, tanh

    cell = Cell("gru_variant", title="A GRU variant")
    x = cell.input("x")
    h_prev = cell.state("h")
    {states}
    {blocks_x} = cell.affine("W", [x], blocks={names_x}, bias={bias_x})
    {blocks_h} = cell.affine("U", {inputs_h}, blocks={names_h}, bias={bias_h})
    r = cell.let("r", sigmoid({sum_r}))
    z = cell.let("z", sigmoid({sum_z}))
    n = cell.let("n", tanh({candidate}))
    cell.update(h=(1 - z) * n + z * h_prev{updates})
"""


def _gru(order="rzn", bias_x='"b_x"', bias_h='"b_h"', candidate="a_xn + r * a_hn", second_state=False,
         named_sums=True):
    names_x, names_h = [f"a_x{g}" for g in order], [f"a_h{g}" for g in order]
    return _GRU.format(
        states='c_prev = cell.state("c")' if second_state else "",
        blocks_x=", ".join(names_x), names_x=names_x, bias_x=bias_x,
        blocks_h=", ".join(names_h), names_h=names_h, bias_h=bias_h,
        inputs_h="[h_prev, c_prev]" if second_state else "[h_prev]",
        candidate=candidate, updates=", c=n * c_prev" if second_state else "",
        sum_r='cell.let("a_r", a_xr + a_hr)' if named_sums else "a_xr + a_hr",
        sum_z='cell.let("a_z", a_xz + a_hz)' if named_sums else "a_xz + a_hz")


FIXED_CELLS.update({
    "gru": _gru(),
    "gru, no bias on the recurrent affine": _gru(bias_h="None"),
    "gru, no bias on the input affine": _gru(bias_x="None"),
    "gru, candidate block first": _gru(order="nrz"),
    "gru, candidate block between the gates": _gru(order="rnz"),
    "gru, the recurrent block not kept": _gru(candidate="a_xn + r * tanh(a_hn)"),
    "gru, two recurrent inputs": _gru(second_state=True),
    "gru, the gates' sums unnamed": _gru(named_sums=False),
    "gru, a bias per recurrent input": _gru(second_state=True, bias_h='["b_h", "b_c"]'),
})
# A peephole on the update gate, its sum named and the part subtracted.
# The output is the second state: the loss's dy joins dc, not dh.
FIXED_CELLS.update({
    "a relu rnn (IRNN)": """
        from lstm_derive import Cell, relu

        cell = Cell("irnn", title="A ReLU RNN")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        cell.update(h=relu(a))
    """,
    "relu, softplus and exp in gates, lets and states": """
        from lstm_derive import Cell, exp, relu, sigmoid, softplus, tanh

        cell = Cell("mixed", title="Every function, named and inline, of blocks, lets and states")
        x = cell.input("x")
        h_prev, m_prev = cell.state("h"), cell.state("m")
        p = cell.param("p")
        a_z, a_n, a_e, a_r = cell.affine("W", [x, h_prev], blocks=["a_z", "a_n", "a_e", "a_r"])
        z = cell.let("z", sigmoid(a_z))
        n = cell.let("n", softplus(a_n))
        e = cell.let("e", exp(0.5*tanh(a_e)))
        w = cell.let("w", softplus(p))
        m = cell.let("m_new", 0.5*m_prev + e*relu(a_r + p*h_prev))
        cell.update(h=(1 - z)*h_prev + z*n/(1 + w*m) - relu(m_prev), m=m)
    """,
    "an IndRNN: relu of a block plus a recurrent vector": """
        from lstm_derive import Cell, relu

        cell = Cell("indrnn", title="IndRNN, h = relu(W x + b + u*h_prev)")
        x = cell.input("x")
        h_prev = cell.state("h")
        u = cell.param("u")
        (a,) = cell.affine("W", [x], blocks=["a"])
        cell.update(h=relu(a + u*h_prev))
    """,
    "an sLSTM-like cell: an exponential input gate and a positive normaliser": """
        from lstm_derive import Cell, exp, sigmoid, tanh

        cell = Cell("slstm", title="sLSTM-like: i = exp(a_i), n = f*n_prev + i, h = o*c/n (no stabiliser)")
        x = cell.input("x")
        h_prev, c_prev, n_prev = cell.state("h"), cell.state("c"), cell.state("n", positive=True)
        a_i, a_f, a_z, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_z", "a_o"])
        i, f = cell.let("i", exp(a_i)), cell.let("f", sigmoid(a_f))
        z, o = cell.let("z", tanh(a_z)), cell.let("o", sigmoid(a_o))
        c = cell.let("c_new", f*c_prev + i*z)
        n = cell.let("n_new", f*n_prev + i)
        cell.update(h=o*c/n, c=c, n=n)
    """,
    "functions of numbers alone": """
        from lstm_derive import Cell, exp, sigmoid, softplus, tanh

        cell = Cell("constants", title="exp(-1), softplus(0), sigmoid(1): numbers, formed once")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        cell.update(h=exp(-1)*h_prev + tanh(a)*softplus(0) + sigmoid(1)*a)
    """,
    "a relu of a let read twice, and exp of a state": """
        from lstm_derive import Cell, exp, relu, tanh

        cell = Cell("relu_twice", title="relu(u) read by two nodes; exp(-c_prev) in the update")
        x = cell.input("x")
        h_prev, c_prev = cell.state("h"), cell.state("c")
        a, g = cell.affine("W", [x, h_prev], blocks=["a", "g"])
        u = cell.let("u", a - 0.25*h_prev)
        r = cell.let("r", relu(u))
        c = cell.let("c_new", c_prev*exp(-c_prev*c_prev) + r*tanh(g))
        cell.update(h=r*tanh(c), c=c)
    """,
    # Found by the drawn cells: da01 = v1'*dv1 was scaled before dv1 = A2_v1^T [da20; da21] was
    # formed, because da20 is the twin of da00 and A0's buffer was emitted whole (UnboundLocalError).
    "a twin's buffer whose other block reads what the twin's affine gives": """
        from lstm_derive import Cell, relu, sigmoid, softplus

        cell = Cell("twin_reads_back", title="da01 reads dv1, which the twin of da00 gives")
        x = cell.input("x")
        h_prev = cell.state("h")
        a00, a01 = cell.affine("A0", [x], blocks=["a00", "a01"], bias=None)
        v1 = cell.let("v1", softplus(relu(h_prev*a01)))
        a20, a21 = cell.affine("A2", [h_prev, v1], blocks=["a20", "a21"], bias=None)
        cell.update(h=relu(sigmoid(a20 + a00)))
    """,
    # Found by the float32 check on drawn cells: NumPy's tanh(2) is a float64 scalar, and a
    # vector of parameters alone formed with it made a float32 kernel's dp float64.
    "functions of numbers alone inside lets of parameters alone": """
        from lstm_derive import Cell, exp, sigmoid, tanh

        cell = Cell("numbers_in_params", title="tanh(2) inside and beside lets of a parameter")
        x = cell.input("x")
        h_prev = cell.state("h")
        p, q = cell.param("p"), cell.param("q")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        v1 = cell.let("v1", sigmoid(exp(tanh(p/(2 + tanh(2))))))
        v2 = cell.let("v2", sigmoid(q + tanh(2)))
        lam = cell.let("lam", sigmoid(q))
        nu = cell.let("nu", 3*tanh(lam))
        cell.update(h=tanh(a + tanh(1))*v1*v2 + tanh(nu)*lam*h_prev)
    """,
    # Found by the drawn cells: a gate's block times a number that is no rational (1/(2 + tanh(2)))
    # raised a TypeError where the emitter asked whether the number is a power of two.
    "a gate's block times a number of functions": """
        from lstm_derive import Cell, exp, sigmoid, tanh

        cell = Cell("irrational_factor", title="sigmoid(a/(2 + tanh(2)))")
        x = cell.input("x")
        h_prev = cell.state("h")
        a0, a1 = cell.affine("A0", [x, h_prev], blocks=["a0", "a1"], bias="b0")
        v1 = cell.let("v1", sigmoid(a0/(2 + tanh(2))))
        cell.update(h=exp(tanh(a1))*v1)
    """,
    "a let's call written again, and a call inside another": """
        from lstm_derive import Cell, exp, relu, sigmoid

        cell = Cell("calls_again", title="relu(a) named r and written again; exp(-relu(-a)), as an elu's")
        x = cell.input("x")
        h_prev = cell.state("h")
        a, u = cell.affine("W", [x, h_prev], blocks=["a", "u"])
        r = cell.let("r", relu(a))
        cell.update(h=r*sigmoid(u) + relu(a)*h_prev + exp(-relu(-a)))
    """,
})


FIXED_CELLS["an output that is not the first state"] = """
    from lstm_derive import Cell, sigmoid, tanh

    cell = Cell("outc", title="The cell state as the output", output="c")
    x = cell.input("x")
    h_prev, c_prev = cell.state("h"), cell.state("c")
    a, = cell.affine("W", [x, h_prev, c_prev], blocks=["a"], bias=["b1", "b2", "b3"])
    c = cell.let("c", tanh(a) + c_prev)
    cell.update(h=sigmoid(a) * c, c=c)
"""
FIXED_CELLS["gru, a named update sum minus a peephole"] = _gru().replace(
    'cell.let("a_z", a_xz + a_hz)', 'cell.let("a_z", a_xz + a_hz - p * h_prev)').replace(
    'h_prev = cell.state("h")', 'h_prev = cell.state("h")\n    p = cell.param("p")')

FIXED_CELLS["a multiplicative lstm (mLSTM), its one-block affines without biases"] = """
    from lstm_derive import Cell, sigmoid, tanh

    cell = Cell("mlstm", title="Multiplicative LSTM")
    x = cell.input("x")
    h_prev, c_prev = cell.state("h"), cell.state("c")
    (mx,) = cell.affine("Wmx", [x], bias=None)
    (mh,) = cell.affine("Wmh", [h_prev], bias=None)
    m = cell.let("m", mx * mh)
    a_i, a_f, a_g, a_o = cell.affine("W", [x, m], blocks=["a_i", "a_f", "a_g", "a_o"])
    i, f, g, o = (cell.let(n, fn(a)) for n, fn, a in
                  [("i", sigmoid, a_i), ("f", sigmoid, a_f), ("g", tanh, a_g), ("o", sigmoid, a_o)])
    c = cell.let("c_new", f * c_prev + i * g)
    cell.update(c=c, h=o * tanh(c))
"""


@pytest.mark.parametrize("name", FIXED_CELLS)
def test_fixed_cells_have_proven_gradients(name, tmp_path):
    kernel, source = kernel_of(textwrap.dedent(FIXED_CELLS[name]), tmp_path)
    if hasattr(kernel, "_span"):
        kernel._span = lambda B, H, dtype: 2
    reports = check_kernel(kernel, T=3, B=2, D=2, H=3)
    assert all(r.ok for r in reports), "\n".join(map(str, reports))
    assert not unread_names(source)


@pytest.mark.parametrize("cell", CELLS)
def test_every_name_a_packaged_kernel_binds_is_read(cell):
    """No dead binding in the kernels people read (gru's twin alias is a comment where unread)."""
    assert not unread_names((Path(KERNELS) / f"{cell}.py").read_text())


def unread_names(source):
    """(function, name) of every name a kernel's function binds and never reads; a view written
    into in place (pre_W += ...) counts as read, as `_` does."""
    found = []
    for function in [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]:
        augmented = {n.target.id for n in ast.walk(function) if isinstance(n, ast.AugAssign)
                     and isinstance(n.target, ast.Name)}
        names = [n for n in ast.walk(function) if isinstance(n, ast.Name)]
        stored = {n.id for n in names if isinstance(n.ctx, ast.Store)}
        read = {n.id for n in names if not isinstance(n.ctx, ast.Store)} | augmented | {"_"}
        found += [(function.name, n) for n in sorted(stored - read)]
    return found


def test_the_gru_variants_have_twins_and_a_folded_bias():
    """The variants above test what they claim: the emitter does share and fold there."""
    for name in ("gru", "gru, candidate block first", "gru, candidate block between the gates",
                 "gru, two recurrent inputs", "gru, the gates' sums unnamed", "a gru with a peephole on its update gate",
                 "gru, a named update sum minus a peephole"):
        source = kernel_source(textwrap.dedent(FIXED_CELLS[name]))
        assert "one adjoint for both blocks of" in source and "bias_W" in source, name
        # the gates' sums negated by the weights and subtracted, then activated with one exp: no step negates them
        # the views of the run's columns are named by the blocks they hold
        assert "pre_W_a_xr_a_xz -= pre_U_a_hr_a_hz  #" in source or "pre_W_a_xr -= pre_U_a_hr  #" in source, name
        assert "np.exp(pre_W_a_xr" in source and "_sigmoid_into(pre_W_a_x" not in source and "scale_U" not in source, name
    # z = sigmoid(a_xz + a_hz + p*h_prev): activated with r, and a_hz's adjoint is a_xz's (its twin)
    source = kernel_source(textwrap.dedent(FIXED_CELLS["a gru with a peephole on its update gate"]))
    assert "da_hz_seq = np.empty" not in source and "_sigmoid_into(a_" not in source
    assert "bias_W" not in kernel_source(textwrap.dedent(FIXED_CELLS["gru, no bias on the recurrent affine"]))


ELEVEN_BLOCKS = textwrap.dedent("""
    from lstm_derive import Cell, sigmoid, tanh

    cell = Cell("eleven", title="An affine of eleven blocks")
    x = cell.input("x")
    h_prev = cell.state("h")
    blocks = cell.affine("W", [x, h_prev], blocks=[f"a{j}" for j in range(11)])
    cell.update(h=tanh(blocks[0] * blocks[10] + blocks[9] + blocks[1] * h_prev))
""")


def test_an_affine_of_ten_blocks_or_more(tmp_path):
    """Block 10's columns are 10 * H:11 * H, not a mangled 1:1H."""
    kernel, source = kernel_of(ELEVEN_BLOCKS, tmp_path)
    assert "10 * H:11 * H" in source
    reports = check_kernel(kernel, T=2, B=2, D=2, H=2)
    assert all(r.ok for r in reports), "\n".join(map(str, reports))


def test_the_function_helpers_are_exact_where_the_textbook_forms_are_not(tmp_path):
    """softplus neither overflows nor loses a tiny value; its slope 1 - exp(-y) is sigmoid(a) to
    rounding even where that is tiny; softplus passes a complex step; relu's slope keeps the dtype
    and is 0 or 1, for a complex relu output too."""
    kernel, _ = kernel_of(textwrap.dedent(FIXED_CELLS["relu, softplus and exp in gates, lets and states"]), tmp_path)
    a = np.array([-800.0, -30.0, -1.5, 0.0, 0.3, 30.0, 800.0])
    y = kernel.softplus(a)
    assert np.allclose(y, np.logaddexp(0, a), rtol=1e-15, atol=0) and np.isfinite(y).all()
    sigmoid_a = 0.5 * (1 + np.tanh(a / 2))  # another route to sigmoid(a), exact where it is near 1
    tiny = (a < 0) & (a > -700)  # below, both sides are 0
    assert np.allclose(kernel.softplus_slope(y)[tiny], np.exp(a[tiny]) / (1 + np.exp(a[tiny])), rtol=1e-13, atol=0)
    assert np.allclose(kernel.softplus_slope(y)[~tiny], sigmoid_a[~tiny], rtol=1e-15, atol=0)
    h = 1e-20
    assert np.allclose(kernel.softplus(a + h * 1j).imag / h, kernel.softplus_slope(y), rtol=1e-13, atol=0)
    for dtype in (np.float32, np.float64, np.complex128):  # a complex y's sign would be y/|y|
        slope = kernel.positive(np.maximum(a.astype(dtype) + (1e-3j if dtype == np.complex128 else 0), 0))
        assert slope.dtype == dtype and np.array_equal(slope, (a > 0).astype(dtype)), dtype
    with np.errstate(all="raise"):  # as the sigmoid: a value below the smallest float is no error
        assert kernel.softplus(np.array([-800.0]))[0] == 0


@pytest.mark.parametrize("helper, wrong", [
    ("    return np.sign(y.real).astype(y.dtype, copy=False)", "    return np.ones_like(y)"),  # relu's slope 1 everywhere
    ("    return -np.expm1(-y)", "    return -np.expm1(-y) * (1 + 1e-5)"),  # softplus's, slightly off
])
def test_the_checker_rejects_a_wrong_function_derivative(tmp_path, helper, wrong):
    kernel, source = kernel_of(textwrap.dedent(FIXED_CELLS["relu, softplus and exp in gates, lets and states"]), tmp_path)
    assert source.count(helper) == 1
    path = tmp_path / "wrong.py"
    path.write_text(source.replace(helper, wrong))
    problem = dict(T=3, B=2, D=2, H=3, seed=0, scale=1.0)
    assert all(r.ok for r in check_kernel(kernel, **problem))  # the same problem passes unchanged
    assert not all(r.ok for r in check_kernel(import_kernel(path), **problem))


def test_functions_of_numbers_keep_float32(tmp_path):
    """exp(-1) in NumPy is a float64 scalar: formed as one, it made a float32 kernel's dstate float64."""
    kernel, _ = kernel_of(textwrap.dedent(FIXED_CELLS["functions of numbers alone"]), tmp_path)
    params = kernel.init_params(3, 4, dtype=np.float32)
    ys, final, cache = kernel.forward(params, np.ones((3, 2, 3), np.float32))
    grads, dx, dstate = kernel.backward(params, cache, np.ones_like(ys))
    assert {a.dtype for a in [ys, *final, dx, *dstate, *grads.values()]} == {np.dtype(np.float32)}


def test_a_functions_pre_activation_shares_the_blocks_adjoint(tmp_path):
    """In h = relu(a + u*h_prev), da is the whole pre-activation's adjoint too: dh_prev = u*da, and
    relu's slope is formed once per span, not once for each path through it."""
    script = tmp_path / "indrnn.py"
    script.write_text(textwrap.dedent(FIXED_CELLS["an IndRNN: relu of a block plus a recurrent vector"]))
    d = derive(load_cell(script))
    u, da = sympy.symbols("u da", real=True)
    assert {str(s.adjoint): s.result for s in d.steps}["dh_prev"] == u * da
    _, source = kernel_of(script.read_text(), tmp_path)
    assert source.count("positive(h_seq[t0 + 1:t1 + 1])") == 1


def test_a_positive_state_starts_the_checks_above_zero(tmp_path):
    """The sLSTM's normaliser n divides: drawn around zero, the problem of seed 19 puts a step
    near the pole (gradients of 1e131, which central differences follow only at a hundredth of
    their step, and float32 not at all). Declared positive, n starts in [0.5, inf) and the same
    problem passes; the other states are drawn as before."""
    source = textwrap.dedent(FIXED_CELLS["an sLSTM-like cell: an exponential input gate and a positive normaliser"])
    (tmp_path / "declared").mkdir()
    (tmp_path / "plain").mkdir()
    declared, _ = kernel_of(source, tmp_path / "declared")
    plain, _ = kernel_of(source.replace('cell.state("n", positive=True)', 'cell.state("n")'), tmp_path / "plain")
    assert declared.POSITIVE_STATES == ("n",) and not hasattr(plain, "POSITIVE_STATES")
    config = dict(T=3, B=2, D=2, H=5, seed=19, scale=0.5)
    assert all(r.ok for r in check_kernel(declared, **config))
    central, _, low = check_kernel(plain, **config)
    assert central.smaller_steps and not low.ok
    ours, theirs = random_problem(declared, **config), random_problem(plain, **config)
    assert np.all(ours.state[2] >= 0.5) and np.array_equal(ours.state[2], 0.5 + np.abs(theirs.state[2]))
    for a, b in zip(ours.state[:2] + (ours.x, ours.dys), theirs.state[:2] + (theirs.x, theirs.dys)):
        np.testing.assert_array_equal(a, b)
