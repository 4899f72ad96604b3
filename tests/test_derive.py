"""The derived adjoints are the hand-derived ones, compared as SymPy expressions."""

import importlib
import pathlib

import pytest
import sympy

from lstm_derive import derive
from lstm_derive.spec import SpecError
from lstm_derive.derive import MatTerm
from lstm_derive.functions import relu
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


def test_peepholes_read_the_pre_activations_adjoints():
    """Greff et al.'s form: a peephole's path goes through the gate's pre-activation adjoint,
    da_i = dL/d(a_i + p_i*c_prev), so dc_prev gets p_i*da_i, not i*(1 - i)*p_i*di."""
    d, r = results("lstm_peephole")
    p_i, p_f, p_o, f, o, c, c_prev, dh, dc, dc_next = symbols("p_i p_f p_o f o c c_prev dh dc dc_next")
    da_i, da_f, da_o = symbols("da_i da_f da_o")
    assert sympy.expand(r["dc"] - (p_o * da_o + o * (1 - sympy.tanh(c) ** 2) * dh + dc_next)) == 0
    assert sympy.expand(r["dc_prev"] - (p_i * da_i + p_f * da_f + f * dc)) == 0
    assert (r["dp_i"], r["dp_f"], r["dp_o"]) == (c_prev * da_i, c_prev * da_f, c * da_o)
    order = [str(s.adjoint) for s in d.steps]
    assert order.index("do") < order.index("da_o") < order.index("dc"), "dc reads da_o: it comes first"
    (through_o,) = [t for t in d.step_for(c).terms if t.adjoint == da_o]
    assert through_o.consumer == "o" and through_o.pre == sympy.Symbol("a_o", real=True) + c * p_o


def test_the_pre_activation_form_is_the_chain_rule(tmp_path):
    """Substituting each block adjoint's own step back gives the plain chain rule's sums."""
    d = derive(load_cell(DERIVATIONS / "lstm_peephole.py"))
    blocks = {s.adjoint: s.result for s in d.steps if s.kind == "block"}
    i, f, o, p_i, p_f, c_prev, di, df, dc = symbols("i f o p_i p_f c_prev di df dc")
    dc_prev = d.step_for(c_prev).result.subs(blocks)
    assert sympy.expand(dc_prev - (i * (1 - i) * p_i * di + f * (1 - f) * p_f * df + f * dc)) == 0


@pytest.mark.parametrize("source, rewritten", [
    # a block read elsewhere too: its adjoint is not the pre-activation's
    ("g = cell.let('g', sigmoid(a + p*h_prev)); cell.update(h=g + a)", False),
    # the block scaled inside the pre-activation: da = 2*dL/d(pre), not dL/d(pre)
    ("g = cell.let('g', sigmoid(2*a + p*h_prev)); cell.update(h=g)", False),
    # no block at all: nothing to read
    ("g = cell.let('g', sigmoid(h_prev*p)); cell.update(h=g*a)", False),
    ("g = cell.let('g', tanh(a + p*h_prev)); cell.update(h=g)", True),
    # a let inside the pre-activation reads it too: du = 2*da, as dr = a_hn*da_xn in a GRU
    ("u = cell.let('u', sigmoid(h_prev)); g = cell.let('g', tanh(a + 2*u)); cell.update(h=g*u)", True),
])
def test_which_paths_read_a_block_adjoint(tmp_path, source, rewritten):
    script = tmp_path / "cell.py"
    script.write_text("from lstm_derive import Cell, sigmoid, tanh\n"
                      "cell = Cell('c', title='t')\nx = cell.input('x')\nh_prev = cell.state('h')\n"
                      "p = cell.param('p')\n(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\n"
                      + source.replace("; ", "\n") + "\n")
    d = derive(load_cell(script))
    assert any(t.pre is not None for s in d.steps for t in s.terms) == rewritten


def _inline_cell(extra=""):
    from lstm_derive import Cell, sigmoid, tanh

    cell = Cell("inline")
    x, h_prev = cell.input("x"), cell.state("h")
    a_f, a_g = cell.affine("W", [x, h_prev], blocks=["a_f", "a_g"])
    if extra:
        cell.let(extra, sigmoid(h_prev))
    cell.update(h=sigmoid(a_f) * h_prev + tanh(a_g) * tanh(h_prev))
    return cell


def test_a_gate_written_inline_is_named_for_the_derivation():
    """sigmoid(a_f), tanh(a_g) inside h's expression become f, g as the textbook writes them; a
    call of a state (tanh(h_prev)) is not a gate and stays; the script's cell is not changed."""
    cell = _inline_cell()
    d = derive(cell)
    f, g = symbols("f g")
    lets = {let.symbol: let.expr for let in d.cell.lets}
    assert str(lets[f]) == "sigmoid(a_f)"
    assert str(lets[g]) == "tanh(a_g)" and str(lets[symbols("h")]) == "f*h_prev + g*tanh(h_prev)"
    assert [str(let.symbol) for let in cell.lets] == ["h"]  # the script's own cell as it was
    assert sum("is named here for the derivation" in note for note in d.cell.notes) == 2
    assert {str(step.adjoint) for step in d.steps} >= {"df", "dg", "da_f", "da_g"}


def test_a_name_taken_by_the_script_is_not_used_for_a_gate():
    d = derive(_inline_cell(extra="f"))  # the script's own f = sigmoid(h_prev)
    lets = {str(let.symbol): str(let.expr) for let in d.cell.lets}
    assert lets["f"] == "sigmoid(h_prev)" and lets["sigmoid_f"] == "sigmoid(a_f)" and lets["g"] == "tanh(a_g)"


def test_a_shifted_gate_beside_the_plain_one_is_not_given_the_plain_ones_textbook_name():
    """With sigmoid_f = sigmoid(a_f) named by the script, an inline sigmoid(a_f - 1) is not f, which
    reads as sigmoid(a_f); alone, it is f, as a peephole's sigmoid(a_f + p*c_prev) would be."""
    from lstm_derive import Cell, sigmoid, tanh

    cell = Cell("shifted", title="a shifted gate")
    x, h_prev = cell.input("x"), cell.state("h")
    a_f, a_g = cell.affine("W", [x, h_prev], blocks=["a_f", "a_g"])
    plain = cell.let("sigmoid_f", sigmoid(a_f))
    cell.update(h=plain * h_prev + sigmoid(a_f - 1) * tanh(a_g))
    lets = {str(let.symbol): str(let.expr) for let in derive(cell).cell.lets}
    assert lets["sigmoid_f2"] == "sigmoid(a_f - 1)" and "f" not in lets and lets["g"] == "tanh(a_g)"
    notes = derive(cell).cell.notes
    assert any(n.startswith("`sigmoid_f2 = sigmoid(a_f - 1)` is named here for the derivation (not `sigmoid_f = "
                            "sigmoid(a_f)`, which the script names):") for n in notes)
    assert any(n.startswith("`g = tanh(a_g)` is named here for the derivation: ") for n in notes)
    alone = Cell("alone", title="a shifted gate alone")
    x, h_prev = alone.input("x"), alone.state("h")
    a_f, a_g = alone.affine("W", [x, h_prev], blocks=["a_f", "a_g"])
    alone.update(h=sigmoid(a_f - 1) * h_prev + tanh(a_g))
    assert {str(let.symbol): str(let.expr) for let in derive(alone).cell.lets}["f"] == "sigmoid(a_f - 1)"


def test_relu_softplus_and_exp_differentiate_in_output_form():
    """relu' = [h > 0], softplus' = 1 - exp(-n), exp' = e: each read off the node's stored output,
    none off its pre-activation."""
    from lstm_derive import Cell, exp, relu, softplus
    from lstm_derive.spec import positive, softplus_slope

    cell = Cell("functions", title="relu, softplus, exp")
    x = cell.input("x")
    h_prev, m_prev = cell.state("h"), cell.state("m")
    a_n, a_e, a_r = cell.affine("W", [x, h_prev], blocks=["a_n", "a_e", "a_r"])
    n = cell.let("n", softplus(a_n))
    e = cell.let("e", exp(a_e))
    cell.update(h=relu(a_r) * n, m=e * m_prev)
    r = {str(step.adjoint): step.result for step in derive(cell).steps}
    h, m, dh, dm, dn, de = symbols("h m dh dm dn de")
    a_r_symbol = [b for b in cell.affines[0].blocks if str(b) == "a_r"][0]
    assert r["da_n"] == softplus_slope(n) * dn
    assert r["da_e"] == e * de
    assert r["da_r"] == positive(relu(a_r_symbol)) * n * dh
    assert r["dn"] == relu(a_r_symbol) * dh


def test_every_call_a_let_names_is_read_as_the_let_in_the_local_derivatives():
    """Output form throughout, calls inside calls too: tanh(sigmoid(a) + h_prev)' reads u and s,
    where u and s name those calls, and no local derivative keeps a call a let names."""
    from lstm_derive import Cell, exp, sigmoid, softplus, tanh
    from lstm_derive.kernels import CELLS

    cell = Cell("nested", title="calls inside calls")
    x, h_prev = cell.input("x"), cell.state("h")
    a, a_z = cell.affine("W", [x, h_prev], blocks=["a", "a_z"])
    s = cell.let("s", sigmoid(a))
    u = cell.let("u", tanh(sigmoid(a) + h_prev))
    z = cell.let("z", exp(-softplus(a_z)) * sigmoid(a))
    cell.update(h=u * z + s)
    cells = [derive(cell)] + [results(name)[0] for name in CELLS]
    for d in cells:
        named = {let.expr: let.symbol for let in d.cell.lets if isinstance(let.expr, sympy.Function)}
        for step in d.steps:
            for term in step.terms:
                assert not term.local.atoms(sympy.Function) & set(named), (d.cell.name, step.adjoint, term.local)
    da = {t.consumer: t.local for t in cells[0].step_for(a).terms}
    s_, u_ = symbols("s u")
    assert da["u"] == (1 - u_**2) * s_ * (1 - s_)


def test_a_vector_is_differentiated_only_by_the_nodes_that_read_it(monkeypatch):
    """Each derivative taken is of an expression that reads the vector: one that does not gives no
    term, and SymPy's diff would spend as long on it as on a real one only to say 0."""
    taken = []
    diff = sympy.diff

    def recorded(expr, vector):
        taken.append((expr, vector))
        return diff(expr, vector)

    monkeypatch.setattr(sympy, "diff", recorded)
    d, _ = results("lstm_peephole")
    assert taken and all(vector in expr.free_symbols for expr, vector in taken)
    assert sum(len(step.terms) for step in d.steps) > 0


MIN_LSTM = '''
from lstm_derive import Cell, sigmoid

cell = Cell("minlstm")
x = cell.input("x")
h_prev = cell.state("h")
a_f, a_i, a_h = cell.affine("W", [x], blocks=["a_f", "a_i", "a_h"])
f = cell.let("f", sigmoid(a_f))
i = cell.let("i", sigmoid(a_i))
f_n = cell.let("f_n", f / (f + i))
i_n = cell.let("i_n", i / (f + i))
cell.update(h=f_n * h_prev + i_n * a_h)
'''


def test_a_quotients_derivative_is_one_fraction_whose_digits_survive_a_gate_near_zero(tmp_path):
    """d/df f/(f + i) is i/(f + i)**2: the quotient rule's two terms, 1/(f + i) - f/(f + i)**2,
    cancel where i << f, and at i = 1e-20 keep none of their digits."""
    (tmp_path / "minlstm.py").write_text(MIN_LSTM)
    d = derive(load_cell(tmp_path / "minlstm.py"))
    f, i = sympy.Symbol("f", real=True), sympy.Symbol("i", real=True)
    df = next(step for step in d.steps if str(step.adjoint) == "df")
    local = next(term.local for term in df.terms if term.consumer == "f_n")
    assert sympy.simplify(local - i / (f + i) ** 2) == 0 and len(sympy.Add.make_args(local)) == 1
    value = sympy.lambdify((f, i), local)(0.5, 1e-20)
    assert abs(value - 4e-20) <= 1e-15 * 4e-20


SOFTSIGN_RNN = '''
from lstm_derive import Cell, relu

cell = Cell("softsign")
x = cell.input("x")
h_prev = cell.state("h")
(a,) = cell.affine("W", [x, h_prev], blocks=["a"])
cell.update(h=a / (1 + relu(a) + relu(-a)))
'''


def test_softsigns_derivative_is_read_with_relu_as_one_over_the_square_of_its_denominator(tmp_path):
    """The quotient rule gives (1 + a*(-[relu(a) > 0] + [relu(-a) > 0]) + relu(a) + relu(-a)) over the
    square; a*[relu(a) > 0] is relu(a) and a*[relu(-a) > 0] is -relu(-a), so the numerator is 1."""
    (tmp_path / "softsign.py").write_text(SOFTSIGN_RNN)
    d = derive(load_cell(tmp_path / "softsign.py"))
    a = sympy.Symbol("a", real=True)
    da = next(step for step in d.steps if str(step.adjoint) == "da")
    (local,) = [term.local for term in da.terms]
    denominator = 1 + relu(a) + relu(-a)
    assert local == 1 / denominator**2
    for v in (-2.5, -0.3, 0.7, 4.0):  # the quotient rule's form, with [relu(u) > 0] = [u > 0], agrees
        quotient_rule = (1 + v * (-(v > 0) + (-v > 0)) + abs(v)) / (1 + abs(v)) ** 2
        assert float(local.subs(a, v)) == quotient_rule


def test_a_product_with_relus_slope_is_read_as_the_relu_and_its_common_factor_taken_out():
    """d/da tanh(a*relu(a)) = (1 - h**2)*(relu(a) + a*[relu(a) > 0]) = 2*(1 - h**2)*relu(a): one relu,
    not a relu and a slope, and not multiplied out."""
    from lstm_derive import Cell, tanh

    cell = Cell("relprod")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
    cell.update(h=tanh(a * relu(a)))
    da = next(step for step in derive(cell).steps if str(step.adjoint) == "da")
    (local,) = [term.local for term in da.terms]
    named = {str(s): s for s in local.free_symbols}
    assert sympy.expand(local - 2 * (1 - named["h"]**2) * relu(named["a"])) == 0
    assert local.is_Mul and sympy.count_ops(local) <= 5, local  # 2*(1 - h**2)*relu(a), not multiplied out


def _cell_with_note(text):
    from lstm_derive import Cell, tanh

    cell = Cell("noted")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
    cell.update(h=tanh(a))
    cell.note(text)
    return cell


def test_a_note_may_cite_what_an_equation_computes_and_escape_a_brace():
    """{{q}} is a brace around q, which no equation computes: read as a citation, it would be refused."""
    derive(_cell_with_note("{da} carries {dh_prev} back; {{q}} is a brace, not a citation"))


def test_a_notes_citation_of_a_name_no_equation_computes_is_refused_with_the_closest_one():
    with pytest.raises(SpecError, match=r"the note cites \{dh_prv\}, but no equation computes dh_prv; "
                                        r"did you mean \{dh_prev\}\?"):
        derive(_cell_with_note("{da} and {dh_prv}"))


@pytest.mark.parametrize("denominator, reads", [
    ("f - sigmoid(a)", "sigmoid(a) as f"),
    ("(f + g) - (sigmoid(a) + tanh(a))", "sigmoid(a) as f (declared at"),
])
def test_a_denominator_that_output_form_makes_zero_is_refused_at_its_line(tmp_path, capsys, denominator, reads):
    """f - sigmoid(a) is no zero to SymPy until the derivation reads sigmoid(a) as f: unrefused, the
    kernel's forward and backward held SymPy's complex infinity, zoo, and raised NameError."""
    from test_spec import refused

    message = refused(tmp_path, capsys, f"""
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        f = cell.let("f", sigmoid(a))
        g = cell.let("g", tanh(a))
        cell.update(h=tanh(a) * f / ({denominator}))  # <- here
        """, "'h' divides by", "which is 0 at every value", reads, "write 'h' without that denominator")
    assert "zoo" not in message


def test_the_denominators_check_and_the_backward_steps_read_one_output_form(monkeypatch):
    module = importlib.import_module("lstm_derive.derive")
    read = []

    def reading(function):
        def read_by(cell, named):
            read.append(named)
            return function(cell, named)
        return read_by

    for name in ("_check_denominators", "_backward_steps"):
        monkeypatch.setattr(module, name, reading(getattr(module, name)))
    derive(load_cell(DERIVATIONS / "gru.py"))
    assert len(read) == 2 and read[0] is read[1]


@pytest.mark.parametrize("caller", ["explain", "generate"])
def test_a_cell_is_validated_once_for_its_warnings_and_its_derivation(monkeypatch, capsys, tmp_path, caller):
    from lstm_derive import Cell, explain, generate

    validated, validate = [], Cell.validate

    def counted(cell):
        validated.append(cell)
        return validate(cell)

    monkeypatch.setattr(Cell, "validate", counted)
    if caller == "explain":
        explain(load_cell(DERIVATIONS / "lstm.py"))
        assert "Backward pass" in capsys.readouterr().out
    else:
        generate.targets_for(DERIVATIONS / "lstm.py", tmp_path, warn=print)
    assert len(validated) == 1


def test_derive_gives_warn_the_cells_warnings():
    cell = _cell_with_note("{da}")
    cell.param("p")
    warned = []
    derive(cell, warned.append)
    assert warned == cell.warnings() and any("parameter 'p' is never read" in w for w in warned)
