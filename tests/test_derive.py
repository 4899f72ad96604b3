"""The derived adjoints are the hand-derived ones, compared as SymPy expressions."""

import pathlib

import pytest
import sympy

from lstm_derive import derive
from lstm_derive.derive import MatTerm
from lstm_derive.generate import load_cell

DERIVATIONS = pathlib.Path(__file__).resolve().parents[1] / "derivations"


def symbols(names):
    return sympy.symbols(names, real=True)


def results(cell_name):
    d = derive(load_cell(DERIVATIONS / f"{cell_name}.py"))
    return d, {str(step.adjoint): step.result for step in d.steps}


def test_lstm_seed_adjoints_are_the_seeds_lines():
    _, r = results("lstm_seed")
    o, s, s_prev, g, i, f = symbols("o s s_prev g i f")
    dh, ds, do, di, dg, df, dy, dh_next, ds_next = symbols("dh ds do di dg df dy dh_next ds_next")
    assert r["dh"] == dy + dh_next
    assert r["ds"] == o * dh + ds_next
    assert r["do"] == s * dh
    assert r["di"] == g * ds
    assert r["dg"] == i * ds
    assert r["df"] == s_prev * ds
    assert r["ds_prev"] == f * ds


def test_lstm_seed_preactivations_in_output_form():
    _, r = results("lstm_seed")
    g, i, f, o, di, dg, df, do = symbols("g i f o di dg df do")
    assert sympy.expand(r["da_i"] - i * (1 - i) * di) == 0
    assert sympy.expand(r["da_f"] - f * (1 - f) * df) == 0
    assert sympy.expand(r["da_o"] - o * (1 - o) * do) == 0
    assert sympy.expand(r["da_g"] - (1 - g**2) * dg) == 0


def test_lstm_cell_state_and_output_gate():
    _, r = results("lstm")
    o, c, dh, dc_next = symbols("o c dh dc_next")
    assert sympy.expand(r["dc"] - (o * (1 - sympy.tanh(c) ** 2) * dh + dc_next)) == 0
    assert r["do"] == sympy.tanh(c) * dh


def test_recurrent_carry_is_the_affine_transpose():
    d, r = results("lstm")
    (term,) = d.step_for(sympy.Symbol("h_prev", real=True)).terms
    assert isinstance(term.local, MatTerm) and term.local.weight == "W_h"


def test_numbering_is_consecutive():
    d, _ = results("lstm")
    numbers = [e.number for e in d.forward] + [s.number for s in d.steps] + [g.number for g in d.param_grads]
    assert numbers == list(range(1, d.equations + 1))


@pytest.mark.parametrize("cell", ["lstm", "lstm_seed"])
def test_textbook_order_of_terms(cell):
    from sympy.printing.str import StrPrinter

    d, _ = results(cell)
    state = "c" if cell == "lstm" else "s"
    step = d.step_for(sympy.Symbol(state, real=True))
    text = step.text(StrPrinter())
    assert text.endswith(f"*dh + d{state}_next")
