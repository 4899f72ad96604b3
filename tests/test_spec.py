"""Wrong derivation scripts are refused with a message that points at them; no name injects code.

A SpecError names the script and, where there is one, the line; it names the symbol; and it
says what to do. Every script here is written to a temporary directory and run the way a user
runs it, through ``lstm-derive generate SCRIPT --out DIR``, which must write nothing; the same
script loaded and derived in-process raises the SpecError itself.
"""

import ast
import dataclasses
import importlib
import os
import re
import textwrap
from pathlib import Path

import pytest
import sympy

from lstm_derive import Cell, SpecError, cli, derive, sigmoid, tanh
from lstm_derive.emit import emit_kernel
from lstm_derive.generate import load_cell
from lstm_derive.spec import BUILTIN_NAMES, KERNEL_NAMES

ROOT = Path(__file__).resolve().parents[1]

PREAMBLE = """\
import sympy
from lstm_derive import Cell, sigmoid, tanh

cell = Cell("bad")
x = cell.input("x")
h_prev = cell.state("h")
"""

MARK = "# <- here"


def write_script(directory, body, preamble=PREAMBLE, name="bad.py"):
    """The script, and the number of the line marked ``# <- here`` (None if no line is marked)."""
    text = preamble + textwrap.dedent(body)
    script = Path(directory) / name
    script.write_text(text)
    lines = [n for n, line in enumerate(text.splitlines(), 1) if MARK in line]
    return script, (lines[0] if lines else None)


def refused(tmp_path, capsys, body, *fragments, preamble=PREAMBLE):
    """Runs the script through the CLI and in-process; returns the message after checking it."""
    script, line = write_script(tmp_path, body, preamble)
    out = tmp_path / "out"
    assert cli.main(["generate", str(script), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert not out.exists(), "a refused script must not write anything"
    with pytest.raises(SpecError) as caught:
        derive(load_cell(script))
    message = str(caught.value)
    assert message in err
    where = rf"{re.escape(str(script))}:{line}\b" if line else re.escape(str(script))
    assert re.search(where, message), f"expected {where!r} in {message!r}"
    for fragment in fragments:
        assert fragment in message, f"expected {fragment!r} in {message!r}"
    return message


# -- one test per kind of mistake -----------------------------------------------------------


def test_unknown_symbol(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=sigmoid(a) * sympy.Symbol("q", real=True))  # <- here
        """, "unknown symbol 'q'", "declare it")


def test_unknown_symbol_as_an_affine_input(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, sympy.Symbol("z", real=True)])  # <- here
        cell.update(h=tanh(a))
        """, "unknown symbol 'z'", "affine 'W'", "declare it")


def test_a_look_alike_symbol_is_told_apart_from_the_declared_one(tmp_path, capsys):
    """sympy.Symbol("h_prev") without real=True is another symbol than the one the cell returned."""
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=tanh(a) * sympy.Symbol("h_prev"))  # <- here
        """, "'h_prev'", "not the one the cell returned", "use the returned symbol")


def test_a_state_declared_but_never_updated(tmp_path, capsys):
    refused(tmp_path, capsys, """
        c_prev = cell.state("c")  # <- here
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=tanh(a))
        """, "state 'c' is declared but never updated", "cell.update(c=...)")


def test_an_update_of_an_undeclared_state(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=tanh(a), c=a)  # <- here
        """, "update of 'c'", "not a declared state", "cell.state('c')")


def test_a_state_updated_twice(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=tanh(a))
        cell.update(h=sigmoid(a))  # <- here
        """, "state 'h' is updated twice", "give it one new value")


def test_a_node_used_before_it_is_defined(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        g = cell.let("g", sigmoid(a) * sympy.Symbol("later", real=True))  # <- here
        later = cell.let("later", tanh(a))
        cell.update(h=g)
        """, "unknown symbol 'later'", "before using it")


def test_a_node_defined_in_terms_of_itself(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        g = cell.let("g", sigmoid(a) + sympy.Symbol("g", real=True))  # <- here
        cell.update(h=g)
        """, "'g' is defined in terms of itself (a cycle)", "use a state")


def test_a_cycle_through_two_nodes(tmp_path, capsys):
    """u needs v and v needs u: whichever comes first uses a node not yet declared."""
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        v = sympy.Symbol("v", real=True)
        u = cell.let("u", tanh(a) * v)  # <- here
        v = cell.let("v", sigmoid(u))
        cell.update(h=v)
        """, "'u' uses the unknown symbol 'v'", "before using it")


def test_a_cycle_in_a_cell_built_by_hand_is_found_by_validation():
    """Nodes appended out of order, bypassing the declarations, still fail before emission."""
    cell = Cell("loop")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev])
    u = cell.let("u", tanh(a))
    v = cell.let("v", sigmoid(u))
    cell.nodes[-2].expr = tanh(a) * v  # u now reads v, which reads u
    cell.update(h=v)
    with pytest.raises(SpecError, match=r"'u' uses the unknown symbol 'v'; it is declared only at .*, after "
                                         r"this node; a node can use only nodes declared before it"):
        derive(cell)


def test_two_affines_of_one_name_in_a_cell_built_by_hand_are_found_by_validation():
    """Renamed after both were declared, two affines of one name are still refused before emission."""
    cell = Cell("two")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev])
    (u,) = cell.affine("U", [h_prev], blocks=["u"], bias=None)
    cell.nodes[-1] = dataclasses.replace(cell.nodes[-1], name="W", weights=["W_r"])
    cell.update(h=tanh(a + u))
    with pytest.raises(SpecError, match=r"affine 'W' is already declared at .*tied weights"):
        derive(cell)


@pytest.mark.parametrize("body, fragments", [
    ("g = cell.let('g', tanh(h_prev))\ng = cell.let('g', sigmoid(h_prev))  # <- here\n",
     ["the name 'g' is already used at", "give each node its own name"]),
    ("h2 = cell.state('h')  # <- here\n", ["state 'h' is declared twice", "its own name"]),
    ("g = cell.let('h_prev', tanh(h_prev))  # <- here\n", ["the name 'h_prev' is already used at"]),
    ("p = cell.param('p')\ng = cell.let('p', tanh(h_prev))  # <- here\n", ["the name 'p' is already used at"]),
    ("(b,) = cell.affine('U', [x], blocks=['a'])  # <- here\n", ["'b'", "already used", "bias="]),
    ("(b,) = cell.affine('V', [x, x])  # <- here\n", ["affine 'V' lists 'x' twice"]),
    ("(b,) = cell.affine('V', [x], blocks=['a'], bias='c')  # <- here\n", ["the name 'a' is already used at"]),
    ("w = cell.param('W_x')  # <- here\n", ["the name 'W_x' is already used at", "a weight of affine 'W'"]),
    ("b = cell.let('b', tanh(a))  # <- here\n", ["the name 'b' is already used at", "by the bias of affine 'W'",
                                                 "an affine's bias is 'b' unless bias=... names it"]),
    ("(c, b) = cell.affine('V', [x], blocks=['c', 'b'])  # <- here\n",
     ["affine 'V' names a block 'b', the name of its own bias", "unless bias=... names it"]),
    # one matrix meant for two products: W_v beside W_h made a kernel with two matrices, or none that ran
    ("v = cell.let('v', tanh(a)*h_prev)\n(u,) = cell.affine('W', [v], blocks=['u'], bias=None)  # <- here\n",
     ["affine 'W' is already declared at", "tied weights are not in the cell language", "another name"]),
    ("v = cell.let('v', tanh(a)*h_prev)\n(u,) = cell.affine('W', [x, v], blocks=['u'], bias='c')  # <- here\n",
     ["affine 'W' is already declared at", "tied weights"]),
])
def test_duplicate_names(tmp_path, capsys, body, fragments):
    preamble = PREAMBLE + "(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\n"
    refused(tmp_path, capsys, body + "cell.update(h=tanh(a))\n", *fragments, preamble=preamble)


@pytest.mark.parametrize("name", ["lambda", "class", "None", "True", "match_", "_hidden", "__import__"])
def test_names_that_are_keywords_or_private(tmp_path, capsys, name):
    body = f"""
        (a,) = cell.affine("W", [x, h_prev])
        g = cell.let({name!r}, tanh(a))  # <- here
        cell.update(h=g)
        """
    if name == "match_":  # a soft keyword with a suffix is a fine name: the control case
        script, _ = write_script(tmp_path, body)
        assert cli.main(["generate", str(script), "--out", str(tmp_path / "out")]) == 0
        return
    message = refused(tmp_path, capsys, body, f"'{name}'", "rename it")
    assert "keyword" in message or "underscore" in message


@pytest.mark.parametrize("name, why", [
    ("T", "kernel's own names"), ("np", "kernel's own names"), ("cache", "kernel's own names"),
    ("grads", "kernel's own names"), ("forward", "kernel's own names"), ("x", "kernel's input array"),
    ("dy", "the loss's gradient"), ("sum", "builtin"), ("range", "builtin"), ("reversed", "builtin"),
    ("L", "the loss, as in dL/dh"), ("l", "a step's loss"),
])
def test_names_the_kernel_uses_itself(tmp_path, capsys, name, why):
    refused(tmp_path, capsys, f"""
        (a,) = cell.affine("W", [x, h_prev])
        g = cell.let({name!r}, tanh(a))  # <- here
        cell.update(h=g)
        """, f"'{name}'", why, "rename it")


@pytest.mark.parametrize("name, made, why", [
    ("y", "dy", "which is one of the kernel's own names (the loss's gradient for the output at one step); rename it"),
    ("y_t", "dy_t", "which is one of the kernel's own names; rename it"),
])
def test_a_name_whose_gradient_is_one_the_kernel_uses_itself_is_refused(tmp_path, capsys, name, made, why):
    refused(tmp_path, capsys, f"""
        (a,) = cell.affine("W", [x, h_prev])
        g = cell.let({name!r}, tanh(a))  # <- here
        cell.update(h=g)
        """, f"makes the kernel name '{made}', {why}")


# Names the emitter derives from a node's name, and a node that takes one of them.
DERIVED = {
    "the adjoint of a state's new value, dh": ("g = cell.let('dh', tanh(a))  # <- here", "dh"),
    "a state's carry, dh_next": ("g = cell.let('h_next', tanh(a))  # <- here", "dh_next"),
    "a state's carry to step t-1, dh_prev": ("g = cell.let('dh_prev', tanh(a))  # <- here", "dh_prev"),
    "a zero carry's one array, dh_prev_zero": ("g = cell.let('dh_prev_zero', tanh(a))  # <- here", "dh_prev_zero"),
    "a view of a block's columns over every step, pre_W_a_seq": ("g = cell.let('pre_W_a_seq', tanh(a))  # <- here",
                                                                 "pre_W_a_seq"),
    "a state's buffer, h_seq": ("g = cell.let('h_seq', tanh(a))  # <- here", "h_seq"),
    "a stored value's buffer, g_seq": ("g = cell.let('g', tanh(a))\nk = cell.let('g_seq', g * g)  # <- here", "g_seq"),
    "an affine's pre-activations, pre_W": ("g = cell.let('pre_W', tanh(a))  # <- here", "pre_W"),
    "an affine's buffer, pre_W_seq": ("g = cell.let('pre_W_seq', tanh(a))  # <- here", "pre_W_seq"),
    "an affine's adjoint buffer, dpre_W_seq": ("g = cell.let('dpre_W_seq', tanh(a))  # <- here", "dpre_W_seq"),
    "an affine's flat adjoint, dpre_W_flat": ("g = cell.let('dpre_W_flat', tanh(a))  # <- here", "dpre_W_flat"),
    "an affine's gate scale, scale_W": ("g = cell.let('scale_W', tanh(a))  # <- here", "scale_W"),
    "an affine's folded bias, bias_W": ("g = cell.let('bias_W', tanh(a))  # <- here", "bias_W"),
    "a weight times the gates' factors, W_h_scaled": ("g = cell.let('W_h_scaled', tanh(a))  # <- here", "W_h_scaled"),
    "a block's columns, pre_a": ("g = cell.let('pre_a', tanh(a))  # <- here", "pre_a"),
    "a block's bias, bias_a": ("g = cell.let('bias_a', tanh(a))  # <- here", "bias_a"),
    "a view of a block's columns, pre_W_a": ("g = cell.let('pre_W_a', tanh(a))  # <- here", "pre_W_a"),
    "a view of a block's adjoints' columns, dpre_W_a": ("g = cell.let('dpre_W_a', tanh(a))  # <- here", "dpre_W_a"),
    "the loop's factors of a row, dpre_W_by": ("g = cell.let('dpre_W_by', tanh(a))  # <- here", "dpre_W_by"),
    "a block's view of them, dpre_W_by_a": ("g = cell.let('dpre_W_by_a', tanh(a))  # <- here", "dpre_W_by_a"),
    "a block's adjoint, da_seq": ("g = cell.let('da_seq', tanh(a))  # <- here", "da_seq"),
    "a block's values saved for a span, a_span": ("g = cell.let('a_span', tanh(a))  # <- here", "a_span"),
    "a weight's gradient, dW_x": ("p = cell.param('dW_x')  # <- here\ng = cell.let('g', tanh(a) * p)", "dW_x"),
    "a bias's gradient, db": ("g = cell.let('db', tanh(a))  # <- here", "db"),
    "a param's gradient, dp": ("p = cell.param('p')\ng = cell.let('dp', tanh(a) * p)  # <- here", "dp"),
    "a let's adjoint, dg": ("g = cell.let('g', tanh(a))\nk = cell.let('dg', g * g)  # <- here", "dg"),
    "a local derivative, dg_da": ("g = cell.let('g', tanh(a))\nk = cell.let('dg_da', g * g)  # <- here", "dg_da"),
    "tanh of a node, tanh_g": ("g = cell.let('g', tanh(a))\nk = cell.let('tanh_g', g * tanh(g))  # <- here", "tanh_g"),
    "sigmoid of a state, sigmoid_h_prev": ("g = cell.let('sigmoid_h_prev', tanh(a) * sigmoid(h_prev))  # <- here",
                                           "sigmoid_h_prev"),
    "tanh of an expression, tanh0": ("g = cell.let('tanh0', tanh(a) * tanh(a + h_prev))  # <- here", "tanh0"),
    "a keyword, del (the adjoint of el)": ("g = cell.let('el', tanh(a))  # <- here", "del"),
    "a builtin, dir (the adjoint of ir)": ("g = cell.let('ir', tanh(a))  # <- here", "dir"),
    "the input's gradient, dx": ("g = cell.let('dx', tanh(a))  # <- here", "dx"),
}


@pytest.mark.parametrize("case", sorted(DERIVED))
def test_names_that_collide_with_names_the_emitter_derives(tmp_path, capsys, case):
    line, made = DERIVED[case]
    body = "(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\n" + line + "\ncell.update(h=g * h_prev)\n"
    message = refused(tmp_path, capsys, body, f"'{made}'", "rename it")
    assert f"kernel name '{made}'" in message or f"'{made}' is reserved" in message


def test_a_let_may_take_a_states_name_only_as_its_new_value(tmp_path, capsys):
    preamble = PREAMBLE + "c_prev = cell.state('c')\n(a,) = cell.affine('W', [x, h_prev])\n"
    refused(tmp_path, capsys, """
        c = cell.let("c", tanh(a))
        cell.update(h=c, c=c_prev * c)  # <- here
        """, "'c' has the name of state 'c'", "rename it", preamble=preamble)


def test_one_node_cannot_be_the_new_value_of_two_states(tmp_path, capsys):
    preamble = PREAMBLE + "c_prev = cell.state('c')\n(a,) = cell.affine('W', [x, h_prev])\n"
    refused(tmp_path, capsys, """
        g = cell.let("g", tanh(a))
        cell.update(h=g, c=g)  # <- here
        """, "'g' is already the new value of state 'h'", "cell.let('c', g)", preamble=preamble)


@pytest.mark.parametrize("call, what", [
    ("sympy.Abs(a)", "Abs"), ("sympy.Max(a, 0)", "Max"), ("sympy.Min(a, 1)", "Min"),
    ("sympy.Heaviside(a)", "Heaviside"), ("sympy.floor(a)", "floor"),
    ("sympy.log(2 + tanh(a))", "log"), ("sympy.sin(a)", "sin"), ("sympy.sign(a)", "sign"),
    ("sympy.erf(a)", "erf"), ("sympy.Piecewise((a, a > 0), (0, True))", "Piecewise"),
    ("sympy.Derivative(tanh(a), a)", "Derivative"),
])
def test_a_function_with_no_derivative_rule(tmp_path, capsys, call, what):
    message = refused(tmp_path, capsys, f"""
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h={call})  # <- here
        """, f"uses {what}", "no derivative rule")
    assert "the supported functions are sigmoid, tanh, relu, softplus, exp" in message
    assert ("relu(a) is max(a, 0)" in message) == (what in ("Max", "Min", "Heaviside", "Piecewise"))


@pytest.mark.parametrize("call", ["sympy.exp(a)", "sympy.Function('relu')(a)"])
def test_a_function_named_like_the_cell_languages_is_sent_to_it(tmp_path, capsys, call):
    """sympy.exp would merge exp(a)*exp(b) and has no place in the kernels' helpers: lstm_derive's exp."""
    what = "exp" if "exp" in call else "relu"
    refused(tmp_path, capsys, f"""
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=tanh(a) + {call})  # <- here
        """, f"uses {what}, but not lstm_derive's {what}", f"from lstm_derive import {what}")


@pytest.mark.parametrize("name", ["mean", "layer_norm"])
def test_a_function_sympy_does_not_know_is_said_to_be_elementwise_or_nothing(tmp_path, capsys, name):
    """A layer norm's mean is not a missing rule: no expression across the H components can be written."""
    refused(tmp_path, capsys, f"""
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=tanh(a - sympy.Function('{name}')(a)))  # <- here
        """, f"uses {name}, a function the cell language does not know", "an operation across the H components")


@pytest.mark.parametrize("expr, fragment", [
    ("sympy.sqrt(2 + tanh(a))", "only integer powers"), ("a ** h_prev", "only integer powers"),
    ("tanh(a) ** 0.5", "only integer powers"), ("sympy.pi * tanh(a)", "constant pi"),
    ("(1 + tanh(a)**2) ** 0.5", "a power with exponent 0.5; only integer powers are supported (so a square root "
                                "cannot be written, nor a norm or a standard deviation; sqrt(v**2) is |v|, relu(v) + "
                                "relu(-v), and where a root only bounds a value, as in v/sqrt(1 + v**2), a bounded "
                                "form serves: v/(1 + relu(v) + relu(-v)) or tanh(v))"),
    ("sympy.sqrt(2 + tanh(a))", "a power with exponent 1/2; only integer powers are supported (so a square root"),
    ("(2 + tanh(a)) ** 0.25", "a power with exponent 0.25; only integer powers are supported; write"),
    ("sympy.E * tanh(a)", "constant E"), ("sympy.I * tanh(a)", "constant I"),
    ("sympy.pi * tanh(a)", "write it as a number, float(sympy.pi) = 3.141592653589793"),
    ("sympy.I * tanh(a)", "constant I, which the kernel cannot compute; write a finite real number instead"),
    ("sympy.oo * tanh(a)", "constant infinity"), ("sympy.nan + tanh(a)", "constant nan"),
    ("tanh(a) / 0", "constant complex infinity (a division by zero?)"),
    ("sympy.Integer(10) ** 400 * tanh(a)", "not a finite float64"),
    ("tanh(a) > 0", "not an elementwise expression"), ("'tanh(a)'", "the string"),
    ("tanh(a) > 0", "'h' is tanh(aW0) > 0, a comparison, not an elementwise expression: comparisons are not in the "
                    "cell language, nor a mask or step made of one: (v > 0)*v is relu(v)"),
    ("sympy.Eq(a, h_prev)", "'h' is Eq(aW0, h_prev), a comparison, not an elementwise expression: comparisons are"),
    ("sigmoid(a > 0)", "uses StrictGreaterThan, which has no derivative rule here; the supported functions are "
                       "sigmoid, tanh, relu, softplus, exp (with +, -, *, / and integer powers); rewrite 'h' with them "
                       "(comparisons are not in the cell language"),
    ("sympy.log(1 + sympy.exp(a))", "uses log, which has no derivative rule here; the supported functions are sigmoid, "
                                    "tanh, relu, softplus, exp (with +, -, *, / and integer powers); rewrite 'h' with "
                                    "them (the cell language has no logarithm: log(sigmoid(v)) is -softplus(-v), and "
                                    "log(1 + exp(v)) is softplus(v))"),
    ("sympy.Min(a, 1)", "(relu(a) is max(a, 0), and max(u, v) is v + relu(u - v)) (and min(u, v) is u - relu(u - v), "
                        "clip(v, lo, hi) is lo + relu(v - lo) - relu(v - hi))"),
    ("[tanh(a), a]", "is a list, [tanh(aW0), aW0], not an expression: a cell's vector is one symbol"),
    ("(tanh(a), a)", "is a tuple, (tanh(aW0), aW0), not an expression: a cell's vector is one symbol"),
    ("__import__('numpy').ones(3) * tanh(a)",
     "is a NumPy array of shape (3,), not an expression: a cell's vector is one symbol"),
    ("tanh(a) ** 2.0", "a power with a float exponent; write it as an integer: tanh(aW0)**2"),
    ("sympy.Max(-1, sympy.Min(tanh(a), 1))", "(and clip(v, lo, hi) is lo + relu(v - lo) - relu(v - hi))"),
    ("sympy.Sum(tanh(a), (sympy.Symbol('k'), 1, 4)) / 4",
     "uses Sum, which has no derivative rule here; the supported functions are sigmoid, tanh, relu, softplus, exp "
     "(with +, -, *, / and integer powers); rewrite 'h' with them (each expression is one component of its "
     "vectors at a time, so nothing across the H components, a sum, a mean, a norm, layer normalisation, can be"),
    ("sympy.Matrix([a, h_prev])", "'h' is a SymPy matrix, not an expression: a cell's vector is one symbol"),
    ("sympy.MatrixSymbol('M', 2, 2)", "'h' is a SymPy matrix, not an expression"),
    ("None", "'h' is None, not an expression: a function that ends without `return` gives None"),
    ("(tanh(a) * tanh(a)) ** 0.5", "uses Abs, which has no derivative rule here; the supported functions are"),
    ("(tanh(a) * tanh(a)) ** 0.5", "(SymPy writes sqrt(v**2), (v*v)**0.5 and abs(v) as Abs(v); |v| is relu(v) + relu(-v), "),
])
def test_what_the_kernel_cannot_compute(tmp_path, capsys, expr, fragment):
    refused(tmp_path, capsys, f"""
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h={expr})  # <- here
        """, fragment, "'h'")


def test_a_numpy_array_given_to_update_after_a_let_is_no_expression(tmp_path, capsys):
    """Compared with a let's symbol, the array gave NumPy's "truth value ... is ambiguous" instead."""
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        g = cell.let("g", tanh(a))
        cell.update(h=__import__('numpy').ones(3) * g)  # <- here
        """, "'h' is a NumPy array of shape (3,), not an expression: a cell's vector is one symbol")


def test_the_absolute_values_rewrite_gives_softsign_with_proven_gradients(tmp_path):
    """The refusal of Abs says |v| is relu(v) + relu(-v): a softsign so written is derived, equals
    a/(1 + |a|) and passes every check."""
    import numpy as np
    from test_random_cells import kernel_of

    from lstm_derive.gradcheck import check_kernel, random_problem

    script, _ = write_script(tmp_path, """
        from lstm_derive import relu
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=a / (1 + relu(a) + relu(-a)))
        """)
    kernel, _ = kernel_of(script.read_text(), tmp_path)
    p = random_problem(kernel, T=1, B=3, D=2, H=4, seed=5, scale=2.0)
    a = p.x[0] @ p.params["W_x"].T + p.state[0] @ p.params["W_h"].T + p.params["b"]
    np.testing.assert_allclose(kernel.forward(p.params, p.x, p.state)[0][0], a / (1 + np.abs(a)), rtol=1e-14)
    assert all(r.ok for r in check_kernel(kernel, T=4, B=2, D=2, H=3, seed=7, scale=2.0))


def test_an_affine_with_no_inputs(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [])  # <- here
        cell.update(h=tanh(a))
        """, "affine 'W' has no inputs", "give it a list of vectors")


@pytest.mark.parametrize("bias, biases", [("'b1'", ["b1"]), ("['b1']", ["b1"]), ("('b_x', 'b_h')", ["b_x", "b_h"])])
def test_a_list_of_one_bias_is_one_bias_whatever_the_number_of_inputs(tmp_path, bias, biases):
    """One name per input gives each input's bias its own parameter; a list of one is the name alone."""
    script, _ = write_script(tmp_path, f"""\
        (a,) = cell.affine("W", [x, h_prev], bias={bias})
        cell.update(h=tanh(a))
        """)
    kernel = {}
    exec(emit_kernel(derive(load_cell(script))), kernel)
    shapes = kernel["param_shapes"](3, 4)
    assert [name for name in shapes if name.startswith("b")] == biases
    assert all(shapes[name] == (4,) for name in biases)


@pytest.mark.parametrize("no_bias", [None, False])
def test_an_affine_without_a_bias_makes_no_bias_parameter(tmp_path, no_bias):
    script, _ = write_script(tmp_path, f"""
        (a,) = cell.affine("W", [x, h_prev], bias={no_bias})
        cell.update(h=tanh(a))
        """)
    cell = load_cell(script)
    assert cell.parameter_names() == ["W_x", "W_h"]


@pytest.mark.parametrize("args, fragment", [
    ("'W', x", "takes a list of vectors"),
    ("'W', [x, h_prev], bias=True", "bias is True; give a name, None"), ("'W', [x, h_prev], blocks=0", "at least one block"),
    ("'W', [x, h_prev], blocks='a'", "give a count or a list of names"),
    ("'W', [x, h_prev], bias=['b1', 'b2', 'b3']", "2 inputs and 3 biases"),
    ("'W', [x, tanh(h_prev)]", "name it first with cell.let"),
])
def test_an_affine_given_the_wrong_arguments(tmp_path, capsys, args, fragment):
    refused(tmp_path, capsys, f"""
        a = cell.affine({args})[0]  # <- here
        cell.update(h=tanh(a))
        """, fragment)


@pytest.mark.parametrize("body, fragments", [
    ("(a, g) = cell.affine('W', [x, h_prev], blocks=['a', 'g'])\n(c,) = cell.affine('U', [x, a], bias='u')  # <- here\n",
     ["reads the block 'a' directly", "cell.let('v', a)"]),
    ("p = cell.param('p')\n(a,) = cell.affine('W', [x, p])  # <- here\n", ["reads the parameter 'p'", "bias instead"]),
    ("k = cell.let('k', sympy.Float(0.5))\n(a,) = cell.affine('W', [x, k])  # <- here\n",
     ["reads 'k', which is the same at every step", "bias instead"]),
    ("p = cell.param('p')\nk = cell.let('k', tanh(p))\n(a,) = cell.affine('W', [x, k])  # <- here\n",
     ["reads 'k', which is the same at every step"]),
])
def test_an_affine_reads_only_what_changes_with_the_step(tmp_path, capsys, body, fragments):
    refused(tmp_path, capsys, body + "cell.update(h=tanh(a) * h_prev)\n", *fragments)


@pytest.mark.parametrize("value", ["0", "sympy.Float(0.5)", "2 * cell.param('p')"])
def test_a_state_must_change_with_the_step(tmp_path, capsys, value):
    preamble = PREAMBLE + "s_prev = cell.state('s')\n(a,) = cell.affine('W', [x, h_prev, s_prev])\n"
    refused(tmp_path, capsys, f"""
        cell.update(h=tanh(a), s={value})  # <- here
        """, "the new value of state 's'", "the same at every step", "make it depend on one", preamble=preamble)


def test_an_elementwise_expression_mixing_vector_sizes(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=tanh(a) + x)  # <- here
        """, "uses 'x', a vector of size D", "only through affine nodes, e.g. cell.affine('W', [x, ...])",
            "a residual connection, is not in the cell language")


def test_an_update_of_a_previous_value_points_to_its_state(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h_prev=tanh(a))  # <- here
        """, "'h_prev' is the previous value of state 'h'", "cell.update(h=...)")


def test_an_unnamed_call_whose_kernel_name_is_taken_says_which_call(tmp_path, capsys):
    refused(tmp_path, capsys, """
        (a, a_z) = cell.affine("W", [x, h_prev], blocks=["a", "a_z"])
        t = cell.let("tanh_a", 2 * sigmoid(a_z))
        cell.update(h=tanh(a) * t)  # <- here
        """, "the unnamed tanh(a) makes the kernel name 'tanh_a'", "cell.let('v', tanh(a))")


def test_more_names_than_an_affines_blocks(tmp_path, capsys):
    refused(tmp_path, capsys, """
        a, b, c = cell.affine("W", [x, h_prev], blocks=4)  # <- here
        cell.update(h=tanh(a))
        """, "ValueError: too many values to unpack", "cell.affine returns one block per name")


@pytest.mark.parametrize("body, fragments", [
    ("cell = Cell('bad')\nh_prev = cell.state('h')\ncell.update(h=tanh(h_prev))\n", ["has no input", "cell.input('x')"]),
    ("cell = Cell('bad')\nx = cell.input('x')\n", ["has no state", "cell.state('h')"]),
    ("cell = Cell('bad')\nx = cell.input('x')  # <- here\nh_prev = cell.state('h')\ncell.update(h=tanh(h_prev))\n",
     ["input 'x' feeds no affine node", "cell.affine('W', [x, ...])"]),
    ("cell = Cell('bad', output='c')\nx = cell.input('x')\nh_prev = cell.state('h')\n"
     "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a))\n", ["output 'c' is not a state", "one of: h"]),
    ("cell = Cell('random')  # <- here\n", ["'random' is the name of a Python module", "rename the cell"]),
    ("cell = Cell('CELLS')  # <- here\n", ["cell name 'CELLS' is the kernels package's list of its cells"]),
    ("cell = Cell('bad')\nx = cell.input('x')\ny = cell.input('y')  # <- here\n", ["a cell has one input"]),
])
def test_incomplete_or_inconsistent_cells(tmp_path, capsys, body, fragments):
    refused(tmp_path, capsys, body, *fragments, preamble="from lstm_derive import Cell, tanh\n")


@pytest.mark.parametrize("name", ["one", "forward", "t", "np"])
def test_a_cell_may_take_a_name_the_kernel_uses_inside_it(tmp_path, name):
    """A cell's name is its kernel's module name, never an identifier within the kernel."""
    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a))\n",
                             preamble=PREAMBLE.replace('Cell("bad"', f'Cell("{name}"'))
    assert cli.main(["check", str(script), "--problems", "1"]) == 0


def test_every_derivation_script_of_the_repository_is_accepted():
    scripts = sorted(p for p in (ROOT / "derivations").glob("*.py") if not p.name.startswith("_"))
    assert scripts
    for script in scripts:
        derive(load_cell(script))


# -- code injection: every name that becomes an identifier is checked ------------------------

INJECTIONS = [
    "x; import os", "h\nimport os", "h = 1\nimport os", "__import__", "__builtins__", "exec", "eval",
    "h'", 'h"', "h)", "h #", "print(1)", "1h", "", " h", "h ", "h-1", "h.real",
    "\u04bb",  # Cyrillic shha, looks like h
    "\uff48",  # fullwidth h, which Python's NFKC folds into h
    "\u210e",  # Planck constant, also folded into h
    "h\u200b",  # h and a zero-width space
    "h\u2028import os",  # a line separator
]


def _build(role, name):
    """A small valid cell with one name replaced by ``name``."""
    names = dict(cell="ok", input="x", state="h", param="p", affine="W", block="a", bias="b", let="g")
    names[role] = name
    cell = Cell(names["cell"])
    x = cell.input(names["input"])
    h_prev = cell.state(names["state"])
    p = cell.param(names["param"])
    (a,) = cell.affine(names["affine"], [x, h_prev], blocks=[names["block"]], bias=names["bias"])
    g = cell.let(names["let"], tanh(a) * p)
    cell.update(**{names["state"]: g * h_prev})
    return cell


ROLES = ["cell", "input", "state", "param", "affine", "block", "bias", "let"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", INJECTIONS, ids=[ascii(n) for n in INJECTIONS])
def test_names_built_to_inject_code_are_refused(role, name):
    with pytest.raises(SpecError, match="not a valid Python identifier|reserved|keyword|underscore|builtin"):
        _build(role, name)


def test_an_update_of_a_misspelt_state_gets_the_state_it_is_close_to(tmp_path, capsys):
    refused(tmp_path, capsys, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(hh=tanh(a))  # <- here\n",
            "update of 'hh', which is not a declared state (states: h); did you mean h? or declare it with "
            "cell.state('hh')")


@pytest.mark.parametrize("body, said, call", [
    ("(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a), x=a)  # <- here\n",
     "'x' is the input, declared at {script}:{declared}; a state needs a name of its own", "cell.input"),
    ("(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\ncell.update(h=tanh(a), W_h=a)  # <- here\n",
     "'W_h' is a parameter of affine 'W', declared at {script}:{declared}; a state needs a name of its own",
     "cell.affine"),
    ("(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\ncell.update(a=a)  # <- here\n",
     "'a' is a block of affine 'W', declared at {script}:{declared}; a state needs a name of its own", "cell.affine"),
    ("(a,) = cell.affine('W', [x, h_prev])\nc = cell.let('c', tanh(a))\ncell.update(h=c, c=c)  # <- here\n",
     "'c' is a let, declared at {script}:{declared}; to make it a state, declare cell.state('c') before that line",
     "cell.let"),
], ids=["the input", "a weight", "a block", "a let"])
def test_an_update_of_a_name_another_node_has_says_what_it_names(tmp_path, capsys, body, said, call):
    """cell.state of that name would be refused as taken: the message must not offer it, but say
    what the name is and where (the line of the call that declares it)."""
    script, _ = write_script(tmp_path, body)
    declared = next(n for n, line in enumerate(script.read_text().splitlines(), 1) if call in line)
    message = refused(tmp_path, capsys, body, "which is not a declared state",
                      said.format(script=script, declared=declared))
    assert "declare it with" not in message


def test_an_update_whose_keyword_is_the_let_given_as_the_value_says_the_keyword_is_the_state(tmp_path, capsys):
    """c = cell.let("c_new", ...), then cell.update(c_new=c): declaring a state 'c_new', as the
    message of a let named like a state offers, is not what was meant."""
    body = ("c_prev = cell.state('c')\n(a,) = cell.affine('W', [x, h_prev])\n"
            "c = cell.let('c_new', c_prev + tanh(a))\ncell.update(c_new=c, h=tanh(c))  # <- here\n")
    script, _ = write_script(tmp_path, body)
    message = refused(tmp_path, capsys, body, f"'c_new' is the let given as the value, declared at {script}:9: a "
                      "keyword of cell.update names the state that takes the value, so write c=..., the let 'c_new' its value")
    assert "declare cell.state('c_new')" not in message


def test_the_control_cell_of_the_injection_tests_is_accepted():
    derive(_build("let", "g"))


@pytest.mark.parametrize("name", ["x; import os", "h\nimport os", "h'", "__class__"])
def test_non_names_given_through_keywords_or_as_output_are_refused(name):
    """Such a name is no declared state (a state's name was checked when it was declared)."""
    cell = _build("let", "g")
    with pytest.raises(SpecError, match="which is not a declared state"):
        cell.update(**{name: cell.prev("h")})
    cell = _build("let", "g")
    cell.output = name
    with pytest.raises(SpecError, match="is not a state"):
        derive(cell)


class Sneaky(str):
    """A str that formats itself as code."""

    def __format__(self, spec):
        return "h; import os"

    def __str__(self):
        return "h; import os"


def test_a_str_subclass_cannot_smuggle_another_spelling():
    cell = _build("state", Sneaky("h"))
    assert type(cell.states[0]) is str and cell.states[0] == "h"
    assert "import os" not in emit_kernel(derive(cell))
    cell.output = Sneaky("h")  # an attribute set by hand is made a plain str by validation
    assert "import os" not in emit_kernel(derive(cell))
    cell.affines[0].weights[0] = Sneaky("W_x")  # and a name put into a node by hand is refused
    with pytest.raises(SpecError, match="not a str"):
        derive(cell)


@pytest.mark.parametrize("how", ["state", "let symbol", "affine", "weight", "block", "param", "input"])
def test_names_put_into_a_cell_without_its_methods_are_checked_before_emission(how):
    """validate() checks every name again, whichever way it got into the cell."""
    cell = _build("let", "g")
    bad = "h; import os"
    affine = cell.affines[0]
    if how == "state":
        cell.states.append(bad)
        cell.updates[bad] = cell.lets[-1]
    elif how == "let symbol":
        cell.lets[0].symbol = sympy.Symbol(bad, real=True)
    elif how == "affine":
        affine.name = bad
    elif how == "weight":
        affine.weights[0] = bad
    elif how == "block":
        affine.blocks[0] = sympy.Symbol(bad, real=True)
    elif how == "param":
        cell.params[0] = sympy.Symbol(bad, real=True)
    elif how == "input":
        cell.inputs[0] = sympy.Symbol(bad, real=True)
    # the name itself refused: the surgery above breaks the graph too, which any SpecError would pass
    with pytest.raises(SpecError, match=re.escape(f"{bad!r} is not a valid Python identifier")):
        derive(cell)


@pytest.mark.parametrize("title", [
    'LSTM"""\nimport os\n"""', "LSTM\nimport os", "LSTM\r", "trailing backslash \\", "\\N{BULLET} escape",
    "nul \x00", "tab\there", "LSTM\u2028import os", "LSTM\u2029", "bidi \u202e override", 'end"""',
])
def test_titles_that_could_break_out_of_the_docstring_are_refused(title):
    with pytest.raises(SpecError, match="title"):
        Cell("ok", title=title)
    cell = _build("let", "g")
    cell.title = title  # set after construction: validation checks it again
    with pytest.raises(SpecError, match="title"):
        derive(cell)


@pytest.mark.parametrize("title", [
    'LSTM with "peephole" connections', "Gers & Schmidhuber (2000): it's <fine>", "LSTM ''' quotes",
    "Ünïcödé — “typographic” quotes, 長短期記憶", 'ends with a quote"', '"starts with a quote',
])
def test_safe_titles_are_kept_verbatim_in_the_docstring(title):
    cell = _build("let", "g")
    cell.title = title
    source = emit_kernel(derive(cell))
    docstring = ast.get_docstring(ast.parse(source), clean=False)
    assert docstring.startswith(title + ": ")


@pytest.mark.parametrize("directory, name", [
    ("evil\nimport os\nos.system('echo pwned')\n#", "cell.py"),
    ("ok", 'cell""";import os;""".py'),
    ("ok", "cell\\.py"),
    ("evil\rimport os", "cell.py"),
])
def test_script_paths_that_would_inject_into_the_header_are_refused(tmp_path, capsys, directory, name):
    folder = tmp_path / directory
    folder.mkdir()
    script, _ = write_script(folder, """
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=tanh(a))
        """, name=name)
    out = tmp_path / "out"
    assert cli.main(["generate", str(script), "--out", str(out)]) == 2
    assert "the script's path contains" in capsys.readouterr().err
    assert not out.exists()


def kernel_identifiers_outside_the_spec(cell):
    """Names in the kernel's forward() and backward(), where the cell's names live, that the spec
    neither derives from a node (Cell._kernel_names) nor reserves (KERNEL_NAMES, builtins, _x).
    The nodes are the derivation's: the gates it names (g for an inline tanh(a_g)) are checked there."""
    d = derive(cell)
    tree = ast.parse(emit_kernel(d))
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [alias.name for n in imports for alias in n.names] == ["numpy"]
    known = {name for name, _, _ in d.cell._kernel_names()} | KERNEL_NAMES | BUILTIN_NAMES
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("forward", "backward")]
    names = {n.id for f in functions for n in ast.walk(f) if isinstance(n, ast.Name)}
    names |= {a.arg for f in functions for a in f.args.args}
    return sorted(n for n in names if n not in known and not n.startswith("_"))


def _awkward_cell():
    """Two affines, a let into an affine, a parameter, a state updated by a let of another name,
    unnamed calls of a state and of an expression, per-input biases."""
    cell = Cell("awkward")
    x = cell.input("x")
    h_prev, c_prev = cell.state("h"), cell.state("c")
    p = cell.param("p")
    a_i, a_g = cell.affine("W", [x, h_prev], blocks=["a_i", "a_g"], bias=["b_x", "b_h"])
    i = cell.let("i", sigmoid(a_i + p * c_prev))
    rc = cell.let("rc", i * tanh(c_prev))
    (a_n,) = cell.affine("U", [x, rc], blocks=["a_n"], bias="b_n")
    c_new = cell.let("c_new", i * c_prev + (1 - i) * tanh(a_n + a_g) / (2 + tanh(h_prev)))
    cell.update(c=c_new, h=tanh(c_new) * sigmoid(a_g))
    return cell


SCRIPTS = sorted(p for p in (ROOT / "derivations").glob("*.py") if not p.name.startswith("_"))


def _nested_cell():
    """Calls inside calls, one of them named: the kernel's values of tanh(s) and tanh(tanh(s))."""
    cell = Cell("nested")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
    s = cell.let("s", sigmoid(a))
    cell.update(h=tanh(tanh(sigmoid(a))) * s + sigmoid(tanh(h_prev)))
    return cell


@pytest.mark.parametrize("make", [lambda: _build("let", "g"), _awkward_cell, _nested_cell] + [
    (lambda p=p: load_cell(p)) for p in SCRIPTS], ids=["small", "awkward", "nested"] + [p.stem for p in SCRIPTS])
def test_the_spec_knows_every_name_the_kernel_makes(make):
    """The collision checks are only as good as the spec's list of the emitter's names: a name
    the emitter makes that the spec does not know must be added to Cell._kernel_names (if it is
    made from a node's name) or to KERNEL_NAMES (if it is the kernel's own)."""
    unknown = kernel_identifiers_outside_the_spec(make())
    assert not unknown, f"identifiers the spec does not know the kernel makes: {unknown}"


# -- files: a hand-written file is never overwritten, and --check never writes ----------------

SEED = (ROOT / "derivations" / "lstm_seed.py").read_text()


def _snapshot(directory):
    """name -> (bytes, mtime_ns) of every file under the directory."""
    return {p.relative_to(directory): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def _generate(*args):
    return cli.main(["generate", *map(str, args)])


def test_check_never_writes_whether_files_are_fresh_stale_missing_or_hand_written(tmp_path, capsys):
    script, out = tmp_path / "lstm_seed.py", tmp_path / "out"
    script.write_text(SEED)
    assert _generate(script, "--out", out) == 0
    past = 1_000_000_000_000_000_000  # 2001: any write would move a file's mtime away from it
    for p in out.iterdir():
        os.utime(p, ns=(past, past))
    fresh = _snapshot(tmp_path)
    assert _generate(script, "--out", out, "--check") == 0
    assert _snapshot(tmp_path) == fresh

    script.write_text(SEED.replace("cell.update(s=s, h=s * o)", "cell.update(s=s, h=tanh(s) * o)"))
    stale = _snapshot(tmp_path)
    assert _generate(script, "--out", out, "--check") == 1
    assert _snapshot(tmp_path) == stale

    (out / "lstm_seed.md").unlink()
    (out / "lstm_seed.py").write_text("# my own kernel\n")
    os.utime(out / "lstm_seed.py", ns=(past, past))
    mixed = _snapshot(tmp_path)
    capsys.readouterr()
    assert _generate(script, "--out", out, "--check") == 1
    report = capsys.readouterr()
    assert "lstm_seed.md" in report.out and "stale" in report.err
    assert _snapshot(tmp_path) == mixed, "--check wrote, deleted or created a file"


def test_check_on_the_repository_writes_nothing(capsys):
    watched = [ROOT / "lstm_derive" / "kernels", ROOT / "derivations"]
    before = {d: _snapshot(d) for d in watched}
    cli.main(["--derivations", str(ROOT / "derivations"), "generate", "--check"])
    assert {d: _snapshot(d) for d in watched} == before


def test_a_hand_written_document_in_the_way_is_kept(tmp_path, capsys):
    script, out = tmp_path / "lstm_seed.py", tmp_path / "out"
    script.write_text(SEED)
    out.mkdir()
    mine = "# My notes on the seed LSTM\n\nNot generated.\n"
    (out / "lstm_seed.md").write_text(mine)
    assert _generate(script, "--out", out) == 2
    assert "was not generated by lstm-derive" in capsys.readouterr().err
    assert (out / "lstm_seed.md").read_text() == mine
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_the_generated_mark_counts_only_in_the_header(tmp_path, capsys):
    """A hand-written file that merely mentions the mark further down is still hand-written."""
    script, out = tmp_path / "lstm_seed.py", tmp_path / "out"
    script.write_text(SEED)
    out.mkdir()
    mine = "# my kernel\n# (it replaced the one that was\n# Generated by lstm-derive)\n"
    (out / "lstm_seed.py").write_text(mine)
    assert _generate(script, "--out", out) == 2
    assert (out / "lstm_seed.py").read_text() == mine


def test_a_file_in_the_way_stops_the_whole_generation(tmp_path, capsys):
    script, out = tmp_path / "lstm_seed.py", tmp_path / "out"
    script.write_text(SEED)
    out.mkdir()
    (out / "lstm_seed.md").write_text("# mine\n")
    assert _generate(script, "--out", out) == 2
    assert sorted(p.name for p in out.iterdir()) == ["lstm_seed.md"]


# -- parts that nothing reads: warnings, not errors ----------------------------------------------

UNREAD = {
    "a let nobody reads": ("(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\n"
                           "u = cell.let('u', tanh(a) * 2)  # <- here\ncell.update(h=tanh(a))\n",
                           "'u' is computed but nothing the new states depend on reads it"),
    "a block nobody reads": ("a, bb = cell.affine('W', [x, h_prev], blocks=['a', 'bb'])  # <- here\n"
                             "cell.update(h=tanh(a))\n",
                             "nothing the new states depend on reads block bb of affine 'W': its rows of W_x, W_h, b "
                             "get a zero gradient"),
    "a parameter nobody reads": ("(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\n"
                                 "p = cell.param('p')  # <- here\ncell.update(h=tanh(a))\n",
                                 "parameter 'p' is never read: its gradient is zero"),
    "a state that never changes": ("m_prev = cell.state('m')\n(a,) = cell.affine('W', [x, h_prev, m_prev], blocks=['a'])\n"
                                   "cell.update(h=tanh(a), m=m_prev)  # <- here\n",
                                   "state 'm' never changes: its new value is m_prev"),
}


@pytest.mark.parametrize("case", UNREAD)
def test_a_part_nothing_reads_is_warned_about_with_its_line(tmp_path, capsys, case):
    body, message = UNREAD[case]
    script, line = write_script(tmp_path, body)
    assert [w.split(": ", 1)[1] for w in load_cell(script).unread()] == [message]
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "out")]) == 0  # a warning only
    assert f"lstm-derive: warning: {script}:{line}: {message}" in capsys.readouterr().err


def test_a_state_whose_previous_value_nothing_reads_is_warned_about_where_it_is_declared(tmp_path):
    """h computed from x alone: no recurrence through h, which the document shows only as dh_prev = 0."""
    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x], blocks=['a'])\ncell.update(h=tanh(a))\n")
    line = next(n for n, text in enumerate(script.read_text().splitlines(), 1) if "cell.state('h')" in text
                or 'cell.state("h")' in text)
    assert load_cell(script).unread() == [
        f"{script}:{line}: no equation reads h_prev, so 'h' carries nothing from step to step; right "
        "for a state that is only the output, as an SRU's h"]
    script, _ = write_script(tmp_path, "c_prev = cell.state('c')\n(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\n"
                                       "cell.update(h=tanh(a), c=tanh(a) * 2)\n")
    assert [w.split(": ", 1)[1] for w in load_cell(script).unread()] == [
        "no equation reads c_prev, so 'c' carries nothing from step to step; it reaches only the final state's loss; "
        "if 'c' is what each step returns, say so with Cell(..., output='c') (the output now is 'h', the first "
        "state declared, as output= is not given)"]


def test_an_unread_state_that_is_not_the_output_is_offered_as_the_output(tmp_path):
    """An SRU written with c declared before h returns c, the default output, and its h, meant as
    the output, reaches nothing but the final state: the warning says how to make h the output."""
    body = ("c_prev, h_prev = cell.state('c'), cell.state('h')\n"
            "a_x, a_f, a_r, a_s = cell.affine('W', [x], blocks=['a_x', 'a_f', 'a_r', 'a_s'])\n"
            "f = cell.let('f', sigmoid(a_f))\nr = cell.let('r', sigmoid(a_r))\n"
            "c = cell.let('c_new', f * c_prev + (1 - f) * a_x)\n"
            "cell.update(c=c, h=r * tanh(c) + (1 - r) * a_s)\n")
    preamble = "from lstm_derive import Cell, sigmoid, tanh\n\ncell = Cell('sru'{output})\nx = cell.input('x')\n"
    offered = ("no equation reads h_prev, so 'h' carries nothing from step to step; it reaches only the final "
               "state's loss; if 'h' is what each step returns, say so with Cell(..., output='h') (the output now "
               "is 'c', {which})")
    for output, which in [("", "the first state declared, as output= is not given"),
                          (", output='c'", "which output= names")]:
        script, _ = write_script(tmp_path, body, preamble.format(output=output))
        assert [w.split(": ", 1)[1] for w in load_cell(script).unread()] == [offered.format(which=which)]
    script, _ = write_script(tmp_path, body, preamble.format(output=", output='h'"))
    assert [w.split(": ", 1)[1] for w in load_cell(script).unread()] == [
        "no equation reads h_prev, so 'h' carries nothing from step to step; right for a state that is only the "
        "output, as an SRU's h"]


def test_the_packaged_cells_have_no_unread_parts():
    scripts = sorted((ROOT / "derivations").glob("*.py"))
    assert scripts and all(load_cell(s).warnings() == [] for s in scripts)


def test_a_long_unnamed_expression_is_warned_of_before_it_is_derived(tmp_path, capsys, monkeypatch):
    """Three levels of an unnamed nest: 58 operations, past LONG; the warning names the let and
    comes before the derivation (which it precedes on stderr whatever follows)."""
    nest = "a\n" + "".join("e = sigmoid(e*b1 + c)/(1 + softplus(e - h_prev)**2)\n" for _ in range(3))
    script, _ = write_script(tmp_path, "from lstm_derive import softplus\n"
                                       "(a, b1, c) = cell.affine('W', [x, h_prev], blocks=['a', 'b1', 'c'])\n"
                                       f"e = {nest}cell.update(h=tanh(e) + h_prev)  # <- here\n")
    [warning] = load_cell(script).warnings()
    derivation = importlib.import_module("lstm_derive.derive")  # the module: the package names its function derive
    first_step = derivation.named_block_calls

    def derive_after_the_warning(cell):  # the warning is on stderr before the derivation starts
        assert "is one expression of 58 operations" in capsys.readouterr().err
        return first_step(cell)
    monkeypatch.setattr(derivation, "named_block_calls", derive_after_the_warning)
    assert warning.endswith("'h' is one expression of 58 operations: name its parts with cell.let (each named "
                            "node is one step of the derivation, and the derivative of an unnamed nest repeats its "
                            "inner parts, so the derivation and its kernel grow fast with it)"), warning
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "out")]) == 0



@pytest.mark.parametrize("setting", ["cell.output = 'z'  # <- here\n", "cell.output = 3  # <- here\n"])
def test_an_output_that_is_no_state_names_the_line_that_set_it(tmp_path, capsys, setting):
    refused(tmp_path, capsys, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a))\n" + setting,
            "is not a state", "set output to one of: h")


@pytest.mark.parametrize("setting, hint", [
    ("cell.output = 'hn'  # <- here\n", "('hn' is the new value of state 'h': output='h')"),
    ("cell.output = hn  # <- here\n", "('hn' is the new value of state 'h': output='h')"),
    ("cell.output = 'h_prev'  # <- here\n", "('h_prev' is the previous value of state 'h')"),
    ("cell.output = 'g'  # <- here\n", "what a step returns is a state: to return the let 'g', give a state of its "
                                       "own its value, cell.update(out=g) for cell.state('out'), and set output='out'"),
])
def test_an_output_that_names_another_node_says_which_state_to_name(tmp_path, capsys, setting, hint):
    refused(tmp_path, capsys, "(a,) = cell.affine('W', [x, h_prev])\ng = cell.let('g', tanh(a))\n"
            "hn = cell.let('hn', g * h_prev)\ncell.update(h=hn)\n" + setting, "set output to one of: h", hint)


def test_the_output_a_let_hint_offers_is_a_cell_that_derives(tmp_path):
    """The state the hint names for a let carries nothing from step to step, and is accepted so."""
    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ng = cell.let('g', tanh(a))\n"
                                       "out_prev = cell.state('out')\ncell.update(h=g * h_prev + g, out=g)\n"
                                       "cell.output = 'out'\n")
    assert derive(load_cell(script)).cell.output_state == "out"


def test_a_syntax_error_names_its_line(tmp_path, capsys):
    message = refused(tmp_path, capsys, "(a,) = cell.affine('W', [x, h_prev]  # <- here\ncell.update(h=tanh(a))\n",
                      "SyntaxError", "'(' was never closed")
    assert message.rstrip().endswith("'(' was never closed")  # the place once, before the message


def test_a_gate_written_inline_reads_as_its_name_in_the_shown_equation(tmp_path):
    from lstm_derive.document import derivation_text

    script, _ = write_script(tmp_path, """
        a_i, a_g = cell.affine("W", [x, h_prev], blocks=["a_i", "a_g"])
        i = cell.let("i", sigmoid(a_i))
        cell.update(h=(1 - i) * h_prev + i * tanh(a_g))
        """)
    text = derivation_text(derive(load_cell(script)))
    assert "g = tanh(a_g)" in text and "h = (1 - i)*h_prev + i*g" in text


def test_explain_puts_its_warnings_on_stderr_and_the_derivation_on_stdout(capsys):
    """As the command line does, so that `python my_cell.py > cell.txt` keeps the warning in sight."""
    from lstm_derive import explain

    cell = Cell("warned")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
    cell.param("p")
    cell.update(h=tanh(a))
    explain(cell)
    out, err = capsys.readouterr()
    assert "parameter 'p' is never read" in err and "never read" not in out
    assert "Backward pass" in out


def test_a_script_run_by_exec_is_where_its_nodes_are_declared():
    """exec() gives a script's code the file name "<string>", as dataclass-made methods have: the
    script's own lines are still its nodes' places, not the line that called exec."""
    namespace = {}
    exec(textwrap.dedent("""
        from lstm_derive import Cell, tanh
        cell = Cell("e", title="Built by exec")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        cell.update(h=tanh(a))
    """), namespace)
    assert [(n.where.file, n.where.line) for n in namespace["cell"].nodes] == [("<string>", 6), ("<string>", 7)]


def test_a_state_declared_positive_is_recorded_and_a_wrong_flag_refused(tmp_path, capsys):
    cell = Cell("normalised", title="t")
    cell.input("x")
    cell.state("h")
    cell.state("n", positive=True)
    assert cell.positive_states == ["n"]
    refused(tmp_path, capsys, """
        m_prev = cell.state("m", positive="yes")  # <- here
        """, "state 'm': positive= takes True or False, got 'yes'")


@pytest.mark.parametrize("call, got", [("sigmoid([a, a])", "list"), ("relu(None)", "NoneType")])
def test_a_function_given_something_not_an_expression_says_so(tmp_path, capsys, call, got):
    name = call.split("(")[0]
    refused(tmp_path, capsys, f"""
        from lstm_derive import relu
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h={call})  # <- here
        """, "TypeError", f"{name}() takes one expression of the cell's vectors (or a number), got {got}")


@pytest.mark.parametrize("expr", ["tanh(a)", "sigmoid(a)", "0.5 * a", "2 * a", "a + x", "x + a", "h_prev * a", "1 - a", "-a", "a"])
def test_an_affines_list_of_blocks_used_as_a_vector_says_to_unpack_it(tmp_path, capsys, expr):
    """A one-block affine's list, not unpacked, would fail deep in SymPy, or repeat itself (2*a)."""
    body = f"a = cell.affine('W', [x, h_prev], blocks=['a'])\ncell.update(h={expr})  # <- here\n"
    refused(tmp_path, capsys, body, "cell.affine('W', ...) returns the list of its blocks [a], not a vector: "
                                    "unpack it, (a,) = cell.affine('W', ...)")


def test_an_affines_list_of_blocks_held_by_another_name_says_to_unpack_it_into_that_variable(tmp_path, capsys):
    """a = cell.affine("W", ...) names its one block aW0: unpacked into a, the script's lines that read a stand."""
    body = "a = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a))  # <- here\n"
    refused(tmp_path, capsys, body, "cell.affine('W', ...) returns the list of its blocks [aW0], not a vector: "
                                    "unpack it, (a,) = cell.affine('W', ...)")


def test_an_affines_list_of_blocks_is_still_a_list():
    cell = Cell("lists")
    x, h_prev = cell.input("x"), cell.state("h")
    blocks = cell.affine("W", [x, h_prev], blocks=["a", "e"])
    a, e = blocks
    assert blocks == [a, e] and blocks + cell.affine("U", [h_prev], blocks=["c"], bias=None) == [a, e, sympy.Symbol("c", real=True)]


@pytest.mark.parametrize("expr", ["W @ h_prev", "np.eye(4) @ h_prev", "sympy.MatrixSymbol('M', 4, 4) * h_prev"])
def test_a_matrix_product_written_by_hand_points_to_the_affine_node(tmp_path, capsys, expr):
    body = (f"import numpy as np\nimport sympy\nW = cell.param('W')\n(a,) = cell.affine('A', [x], blocks=['a'])\n"
            f"cell.update(h=tanh(a + {expr}))  # <- here\n")
    refused(tmp_path, capsys, body, "a cell multiplies by a matrix only in an affine node: cell.affine('W', [x, h_prev]")


def test_a_state_named_as_its_previous_value_is_refused(tmp_path, capsys):
    body = "s_prev = cell.state('s_prev')  # <- here\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a), s_prev=a)\n"
    refused(tmp_path, capsys, body, "state 's_prev': name the state itself, cell.state('s'), which returns its "
                                    "previous value, s_prev")


def test_a_notes_citation_of_a_name_no_equation_computes_is_refused(tmp_path, capsys):
    body = ("(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\ncell.update(h=tanh(a))\n"
            "cell.note('{da} and {dh_prv}')  # <- here\n")
    refused(tmp_path, capsys, body, "the note cites {dh_prv}, but no equation computes dh_prv; did you mean {dh_prev}?",
            "(write {{ and }} for a brace itself)")


def test_the_states_a_denominator_reads():
    cell = Cell("poles")
    x, h_prev, n_prev, m_prev = cell.input("x"), cell.state("h"), cell.state("n"), cell.state("m", positive=True)
    a, i = cell.affine("W", [x, h_prev], blocks=["a", "i"])
    n = cell.let("n", n_prev + sigmoid(i))  # never zero where n_prev is
    cell.update(h=tanh(a) / n + a / (2 * m_prev), n=n, m=m_prev + 1)
    assert cell.divided_states() == ["n", "m"] and cell.divided_states(at_zero=True) == ["m"]


def test_the_denominators_come_in_one_order_whatever_the_hash_seed():
    """A set's order follows the strings' hashes, which change from run to run: the warnings of a let
    with several poles came in another order each run."""
    import subprocess
    import sys

    code = ("import sympy; from lstm_derive.spec import _denominators; a, b, c, n, m = sympy.symbols('a b c n m'); "
            "print(_denominators(c/n + a/(1 + b**2) + 1/m**2 + 1/(a + c)))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert runs == {"[m, n, a + c, b**2 + 1]\n"}, runs


def test_a_denominator_zero_through_a_let_is_a_pole_at_zero():
    """n = f*n_prev is zero where n_prev is, so h = tanh(a)/n divides by zero from zeros; n =
    f*n_prev + 1 is not, and 1/(h_prev + n_prev) is zero only where both states are."""
    cell = Cell("through")
    x, h_prev, n_prev = cell.input("x"), cell.state("h"), cell.state("n")
    a, a_f = cell.affine("W", [x, h_prev], blocks=["a", "a_f"])
    n = cell.let("n_new", sigmoid(a_f) * n_prev)
    cell.update(h=tanh(a) / n, n=n)
    assert cell.divided_states(at_zero=True) == ["n"]
    assert [(str(let.symbol), str(base), states) for let, base, states in cell.zero_poles()] == [
        ("h", "n_new", ["n"])]
    cell.nodes[-2] = dataclasses.replace(cell.nodes[-2], expr=sigmoid(a_f) * n_prev + 1)
    assert cell.divided_states(at_zero=True) == []
    both = Cell("both")
    x, h_prev, n_prev = both.input("x"), both.state("h"), both.state("n")
    (a,) = both.affine("W", [x, h_prev], blocks=["a"])
    both.update(h=tanh(a) / (h_prev + n_prev), n=n_prev + a)
    assert both.divided_states(at_zero=True) == ["h", "n"]


def test_a_division_by_a_state_that_zeros_make_zero_is_warned_of(tmp_path):
    """The checks never start a state at zero, so only the warning tells that forward(params, x)
    divides by zero at its first step; a positive state is told that positive=True does not help."""
    script, line = write_script(tmp_path, """\
        c_prev = cell.state("c")
        a_i, a_f, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
        c = cell.let("c", sigmoid(a_f) * c_prev + sigmoid(a_i) * tanh(a_g) + 1 / h_prev)  # <- here
        cell.update(c=c, h=sigmoid(a_o) * tanh(c))
        """)
    [warning] = load_cell(script).warnings()
    assert warning == (
        f"{script}:{line}: 'c' divides by h_prev, which is zero where the state h is zero: from the default "
        "initial state (None: zeros) the kernel's forward divides by zero at the first step, and its gradients, "
        "and perhaps its outputs, are inf or nan, though the checks, which start no state at zero, pass; pass "
        "forward an initial state with h nonzero (and where h stays above zero, cell.state('h', positive=True) "
        "starts the checks there too)")
    script.write_text(script.read_text().replace('cell.state("h")', 'cell.state("h", positive=True)'))
    [warning] = load_cell(script).warnings()
    assert warning.endswith("with h nonzero (positive=True on h starts the checks above zero, not the kernel's "
                            "forward)")
    script.write_text(script.read_text().replace("1 / h_prev", "1 / (1 + h_prev**2)"))
    assert load_cell(script).warnings() == []


@pytest.mark.parametrize("expr, constant", [("sigmoid(a_f) - sigmoid(a_f)", "0"), ("tanh(a_f)/tanh(a_f) + 1", "2")])
def test_a_let_whose_terms_cancel_is_warned_to_be_a_constant(tmp_path, capsys, expr, constant):
    """The document shows the equation as written; the kernel computes what SymPy made of it."""
    script, line = write_script(tmp_path, "a, a_f = cell.affine('W', [x, h_prev], blocks=['a', 'a_f'])\n"
                                          f"f = cell.let('f', {expr})  # <- here\ncell.update(h=tanh(a) + f*h_prev)\n")
    message = (f"{script}:{line}: 'f' is the constant {constant} whatever the inputs: its expression's terms cancel "
               "as the cell is built (SymPy's arithmetic), so the kernel computes that constant")
    assert message in load_cell(script).unread()
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "out")]) == 0  # a warning only
    assert f"lstm-derive: warning: {message}" in capsys.readouterr().err


def test_the_poles_of_states_and_of_parameters_are_named_alike():
    """What the kernel's docstring and the document tell to keep from zero, by kind, in the order the
    script declares it; a denominator that zero states make zero is the states' alone."""
    cell = Cell("poles")
    x, h_prev, n_prev = cell.input("x"), cell.state("h"), cell.state("n")
    tau, mu = cell.param("tau"), cell.param("mu")
    (a,) = cell.affine("W", [x, h_prev])
    k = cell.let("k", mu * tau)
    cell.update(h=h_prev + (tanh(a) - h_prev) / k + a / n_prev, n=n_prev + a)
    assert [(str(let.symbol), str(base), names) for let, base, names in cell.poles_of("parameter")] == [
        ("h", "k", ["tau", "mu"])]
    assert [(str(let.symbol), names) for let, _, names in cell.poles_of("state")] == [("h", ["n"])]
    assert cell.zeros_divided_by("parameter") == ["tau", "mu"] and cell.zeros_divided_by("state") == ["n"]


def test_a_division_by_a_parameter_that_zero_makes_zero_is_warned_of(tmp_path):
    """init_params and the checks draw parameters around zero: (tanh(c) - h_prev)/tau puts steps near its
    pole (the checks of that cell fail). A denominator that zero states make zero is warned of once, as a
    state's pole; 1 + tau**2 is no pole."""
    script, line = write_script(tmp_path, """\
        tau = cell.param("tau")
        (a,) = cell.affine("W", [x, h_prev])
        k = cell.let("k", 2 * tau)
        cell.update(h=h_prev + (tanh(a) - h_prev) / k)  # <- here
        """)
    [warning] = load_cell(script).warnings()
    assert warning.startswith(f"{script}:{line}: 'h' divides by k, which is zero where tau is zero: init_params "
                              "draws every parameter uniform around zero, and so do the checks")
    assert warning.endswith("1 + tau**2, exp(tau) or softplus(tau) where tau is")
    script.write_text(script.read_text().replace("2 * tau", "2 * tau * h_prev"))
    [warning] = load_cell(script).warnings()
    assert "the state h is zero" in warning
    script.write_text(script.read_text().replace("2 * tau * h_prev", "1 + tau**2"))
    assert load_cell(script).warnings() == []
