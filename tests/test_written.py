"""written_form: a let's expression read back from its script, in the order written, for display."""

from pathlib import Path

from sympy.printing.str import StrPrinter
from test_spec import write_script

from lstm_derive import derive
from lstm_derive.generate import load_cell
from lstm_derive.written import written_form

ROOT = Path(__file__).resolve().parents[1]

shown = StrPrinter({"order": "none"}).doprint  # SymPy's own order would hide the script's


def test_forward_equations_are_shown_as_the_script_writes_them(tmp_path):
    gru = load_cell(ROOT / "derivations" / "gru.py")
    forms = {str(let.symbol): written_form(gru, let) for let in gru.lets}
    assert shown(forms["h"]) == "(1 - z)*n + z*h_prev"  # SymPy alone prints h_prev*z + n*(1 - z)
    assert shown(forms["a_n"]) == "a_xn + r*a_hn"
    assert all(forms[str(let.symbol)].doit() == let.expr for let in gru.lets)
    script, _ = write_script(tmp_path, """
        (a, b) = cell.affine("W", [x, h_prev], blocks=["a", "b"], bias="c")
        hp = h_prev  # a variable named unlike its node: not read back
        g = cell.let("g", (1 - sigmoid(b)) * hp)
        cell.update(h=-tanh(a) / (2 + g) + 0.5 * g)
        """)
    cell = load_cell(script)
    forms = {str(let.symbol): written_form(cell, let) for let in cell.lets}
    assert forms["g"] is None
    assert shown(forms["h"]) == "-tanh(a)/(2 + g) + 0.5*g" and forms["h"].doit() == cell.updates["h"].expr


def test_a_gate_written_inline_is_shown_as_written_and_by_its_name_in_the_expression_around_it(tmp_path):
    script, _ = write_script(tmp_path, """
        (a_f, a_g) = cell.affine("W", [x, h_prev], blocks=["a_f", "a_g"])
        cell.update(h=(1 - sigmoid(a_f - 1)) * h_prev + tanh(a_g))
        """)
    cell = derive(load_cell(script)).cell  # f = sigmoid(a_f - 1) and g = tanh(a_g) named for the derivation
    assert {str(let.symbol): shown(written_form(cell, let)) for let in cell.lets} == {
        "f": "sigmoid(a_f - 1)", "g": "tanh(a_g)", "h": "(1 - f)*h_prev + g"}  # SymPy: sigmoid(-1 + a_f)


def test_a_script_edited_in_the_same_process_is_shown_as_it_now_reads(tmp_path):
    body = """
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        cell.update(h={})
        """
    script, _ = write_script(tmp_path, body.format("tanh(a) + h_prev"))
    cell = load_cell(script)
    assert shown(written_form(cell, cell.updates["h"])) == "tanh(a) + h_prev"
    script.write_text(script.read_text().replace("tanh(a) + h_prev", "h_prev  +  tanh(a)"))
    cell = load_cell(script)
    assert shown(written_form(cell, cell.updates["h"])) == "h_prev + tanh(a)"


def test_a_gate_named_for_an_earlier_line_is_shown_by_its_name_on_every_line_that_writes_it(tmp_path):
    """MGU's f = sigmoid(a_f), written inline in fh's line and again in h's, takes the line of fh:
    h read it by name only on that line, and fell back to SymPy's f*n + h_prev*(1 - f)."""
    script, _ = write_script(tmp_path, """
        (a_f,) = cell.affine("W_f", [x, h_prev], blocks=["a_f"], bias="b_f")
        fh = cell.let("fh", sigmoid(a_f) * h_prev)
        (a_n,) = cell.affine("W_n", [x, fh], blocks=["a_n"], bias="b_n")
        cell.update(h=(1 - sigmoid(a_f)) * h_prev + sigmoid(a_f) * tanh(a_n))
        """)
    cell = derive(load_cell(script)).cell
    assert {str(let.symbol): shown(written_form(cell, let)) for let in cell.lets} == {
        "f": "sigmoid(a_f)", "fh": "f*h_prev", "n": "tanh(a_n)", "h": "(1 - f)*h_prev + f*n"}


def test_a_variable_that_holds_a_node_under_another_name_reads_as_the_node(tmp_path):
    """c = cell.let("c_new", ...), as the README's sLSTM writes it: h = o*c/n read back only where
    each variable had its node's name, and showed SymPy's c_new*o/n_new."""
    script, _ = write_script(tmp_path, """
        hp = cell.state("c")
        i_pre, f_pre = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f"])
        o = cell.let("o", sigmoid(f_pre))
        c = cell.let("c_new", o * hp + (1 - o) * tanh(i_pre))
        n = cell.let("n_new", 2 + o)
        cell.update(h=o * c / n, c=c)
        """)
    cell = derive(load_cell(script)).cell
    forms = {str(let.symbol): shown(written_form(cell, let)) for let in cell.lets}
    assert forms["c_new"] == "o*c_prev + (1 - o)*i" and forms["h"] == "o*c_new/n_new"


def test_variables_assigned_side_by_side_read_as_their_nodes(tmp_path):
    """c, n = cell.let("c_new", ...), cell.let("n_new", ...): each pair of the line is read as one
    assignment; the line was not, and -a_s*r + c/n showed SymPy's c_new/n_new - a_s*r."""
    script, _ = write_script(tmp_path, """
        c_prev, cp = cell.state("c"), cell.state("n", positive=True)
        a_s, a_r = cell.affine("W", [x, h_prev], blocks=["a_s", "a_r"])
        r = cell.let("r", sigmoid(a_r))
        c, n = cell.let("c_new", r * c_prev + 1), cell.let("n_new", r * cp + 1)
        cell.update(c=c, n=n, h=cell.let("h_new", -a_s * r + c / n))
        """)
    cell = load_cell(script)
    forms = {str(let.symbol): shown(written_form(cell, let)) for let in cell.lets}
    assert forms["n_new"] == "r*n_prev + 1" and forms["h_new"] == "-a_s*r + c_new/n_new"


def test_a_number_held_in_a_variable_reads_as_the_number(tmp_path):
    """dt = 0.1, as an Euler step writes it: (h_prev + dt*f*A)/(1 + dt*(k + f)) did not read back, and
    showed SymPy's (h_prev + 0.1*A*f)/(1 + 0.1*f + 0.1*k), the step distributed; a variable assigned
    a number, then something else, is not read so."""
    script, _ = write_script(tmp_path, """
        dt = -0.5
        dt = 0.1
        (a_f,) = cell.affine("W", [x, h_prev], blocks=["a_f"])
        f, A = cell.let("f", sigmoid(a_f)), cell.param("A")
        k = cell.let("k", 1 + A**2)
        cell.update(h=(h_prev + dt * f * A) / (1 + dt * (k + f)))
        hp = 2
        hp = h_prev
        g = cell.let("g", hp * f)
        """)
    cell = load_cell(script)
    assert shown(written_form(cell, cell.updates["h"])) == "(h_prev + 0.1*f*A)/(1 + 0.1*(k + f))"
    assert written_form(cell, cell.lets[-1]) is None


def test_a_modules_constant_reads_as_its_float(tmp_path):
    """math.pi, the float the refusal of sympy.pi asks for: the line did not read back, and showed
    SymPy's 3.141592653589793*g**2 + g/(3*(1 + g**3))."""
    script, _ = write_script(tmp_path, """
        import math
        import numpy as np
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        g = cell.let("g", tanh(a))
        cell.update(h=math.pi * g**2 + sympy.Rational(1, 3) * g / (1 + g**3) - np.e * h_prev)
        """)
    cell = load_cell(script)
    assert shown(written_form(cell, cell.updates["h"])) == (
        "3.14159265358979*g**2 + g/(3*(1 + g**3)) - 2.71828182845905*h_prev")
