"""The hints that go with a cell script's errors, and NumPy's functions refused on a cell's
vectors (lstm_derive/hints.py): through the command line and in-process (test_spec's refused())
and after Python's own traceback, where a script runs as a program."""

import numpy as np
import pytest
import sympy

from lstm_derive.hints import refuse_numpy_functions, script_hint
from lstm_derive.spec import SpecError
from test_spec import PREAMBLE, refused, write_script


def test_numpys_tanh_on_a_cell_vector_is_refused_with_a_hint(tmp_path, capsys):
    body = "import numpy as np\n(a,) = cell.affine('W', [x, h_prev], blocks=['a'])\ncell.update(h=np.tanh(a))  # <- here\n"
    refused(tmp_path, capsys, body, "TypeError", "lstm_derive's functions (sigmoid, tanh, relu, softplus, exp), not NumPy's")


@pytest.mark.parametrize("expr, name", [("np.tanh(a)", "tanh"), ("1 - np.exp(-a)", "exp")])
def test_numpys_function_that_the_language_has_is_named_with_what_to_write(tmp_path, capsys, expr, name):
    """np.tanh and np.exp have the cell language's tanh and exp beside them: the hint names the one
    to write and its import, not only the list of every function."""
    body = f"import numpy as np\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n"
    refused(tmp_path, capsys, body, f"write {name}(...), not np.{name}(...)", f"from lstm_derive import {name}")


def test_numpys_function_that_the_language_lacks_gets_no_function_to_write(tmp_path, capsys):
    body = "import numpy as np\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=np.sin(a))  # <- here\n"
    message = refused(tmp_path, capsys, body, "TypeError", "not NumPy's")
    assert "write" not in message and "import" not in message


@pytest.mark.parametrize("expr, fragment", [
    ("np.maximum(a, 0)", "max, min and if/else on them are not in the cell language"),
    ("max(a, 0)", "(relu(a) is max(a, 0), and max(u, v) is v + relu(u - v))"),
    ("math.exp(a)", "math's functions take numbers, not a cell's vectors"),
])
def test_a_function_of_numbers_on_a_cell_vector_is_refused_with_a_hint(tmp_path, capsys, expr, fragment):
    body = f"import math\nimport numpy as np\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n"
    refused(tmp_path, capsys, body, "TypeError", fragment)


@pytest.mark.parametrize("expr, hint", [
    ("math.tanh(a)", "write tanh(...), not math.tanh(...), with from lstm_derive import tanh: math's functions take "
                     "numbers, not a cell's vectors, which take lstm_derive's (sigmoid, tanh, relu, softplus, exp)"),
    ("math.tanh(1 - math.exp(a))", "write tanh(...) and exp(...), not math.tanh(...) and math.exp(...), with "
                                   "from lstm_derive import tanh, exp: "),
])
def test_maths_function_that_the_language_has_is_named_with_what_to_write(tmp_path, capsys, expr, hint):
    """SymPy's message names no function ("Cannot convert expression to float"): the script's line does."""
    body = f"import math\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n"
    refused(tmp_path, capsys, body, "TypeError: Cannot convert expression to float; " + hint)


def test_maths_function_that_the_language_lacks_gets_no_function_to_write(tmp_path, capsys):
    body = "import math\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=math.sin(a))  # <- here\n"
    message = refused(tmp_path, capsys, body, "math's functions take numbers, not a cell's vectors")
    assert "write" not in message and "import" not in message


@pytest.mark.parametrize("expr, name", [
    ("tanh(a) + np.max(h_prev)", "np.max"),  # would be h_prev itself
    ("tanh(a - np.mean(a))", "np.mean"),  # a - a: 0
    ("tanh(a) * np.var(h_prev)", "np.var"),  # 0
    ("tanh(a + np.roll(h_prev, 1))", "np.roll"),
    ("tanh(a / np.linalg.norm(h_prev + 1))", "np.linalg.norm"),
    ("tanh(a) + np.dot(h_prev, h_prev)", "np.dot"),
    ("tanh(a) * np.prod(h_prev)", "np.prod"),
])
def test_numpys_functions_across_a_vector_are_refused(tmp_path, capsys, expr, name):
    """NumPy takes a SymPy expression for one number: np.max(h_prev) would be h_prev and np.var of
    anything 0, so the cell derived would silently not be the one written."""
    body = f"import numpy as np\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n"
    refused(tmp_path, capsys, body, f"{name} of a cell's vector is not in the cell language",
            "Nothing across a vector's H components is")


def test_numpys_old_dispatch_names_the_function_and_line_the_script_wrote(tmp_path, capsys, monkeypatch):
    """NumPy before 1.25 dispatches np.max as a function named amax, written in Python under the file
    name "<__array_function__ internals>": the refusal still names np.max and the script's line."""
    source = "def amax(a, *args, **kwargs):\n    return guard(a, amax, (type(a),), (a, *args), kwargs)\n"
    dispatch = {"guard": refuse_numpy_functions}
    exec(compile(source, "<__array_function__ internals>", "exec"), dispatch)
    dispatch["amax"].__module__ = "numpy"
    monkeypatch.setattr(np, "max", dispatch["amax"])
    body = "import numpy as np\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a) + np.max(h_prev))  # <- here\n"
    refused(tmp_path, capsys, body, "np.max of a cell's vector is not in the cell language")


@pytest.mark.parametrize("expr, error", [
    ("h_prev[0]", "TypeError: 'Symbol' object is not subscriptable"),
    ("sum(h_prev)", "TypeError: 'Symbol' object is not iterable"),
    ("len(h_prev)", "TypeError: object of type 'Symbol' has no len()"),
    ("h_prev.T", "AttributeError: 'Symbol' object has no attribute 'T'"),
])
def test_a_vectors_components_are_not_there_to_index(tmp_path, capsys, expr, error):
    body = f"(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a) + {expr})  # <- here\n"
    refused(tmp_path, capsys, body, error, "a cell's vector is one symbol that stands for each of its H components")


@pytest.mark.parametrize("expr, error, given", [
    ("tanh(a) * [a, a]", "TypeError: can't multiply sequence by non-int of type 'tanh'", "a list, tuple or string"),
    ("[a, a] * sigmoid(a)", "TypeError: can't multiply sequence by non-int of type 'sigmoid'", "a list, tuple or string"),
    ("a + [a, a]", "TypeError: unsupported operand type(s) for +: 'Symbol' and 'list'", "a list"),
    ("[a] + a", 'TypeError: can only concatenate list (not "Symbol") to list', "a list"),
    ("a / (a, h_prev)", "TypeError: unsupported operand type(s) for /: 'Symbol' and 'tuple'", "a tuple"),
    ("tanh([a, a])", "AttributeError: 'list' object has no attribute", "a list"),  # raised inside SymPy
])
def test_a_list_in_an_expression_is_said_to_be_no_value_of_the_cell_language(tmp_path, capsys, expr, error, given):
    body = f"(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n"
    refused(tmp_path, capsys, body, error, f"; {given} is not a value of the cell language: a cell's vector is one "
            "symbol that stands for each of its H components alike, so an expression combines the vectors themselves")


@pytest.mark.parametrize("expr, hint", [
    ("a + None", "None is not a value of the cell language: a function that ends without `return` gives it"),
    ("a * '2'", "a list, tuple or string is not a value of the cell language"),
    ("a + '2'", "a string is not a value of the cell language: write a number as a number (0.5, not '0.5')"),
])
def test_none_or_a_string_in_an_expression_is_said_to_be_no_value(tmp_path, capsys, expr, hint):
    refused(tmp_path, capsys, f"(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n", hint)


def test_a_list_in_an_expression_gets_the_hint_after_pythons_traceback(tmp_path):
    import subprocess
    import sys

    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=[a] + a)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().splitlines()[-1].startswith("lstm-derive: a list is not a value of the cell language"), run.stderr


def test_a_type_error_of_lists_alone_gets_no_hint():
    """The hint is for a list beside a cell's expression, not for a script's own arithmetic."""
    assert script_hint(TypeError("unsupported operand type(s) for +: 'int' and 'list'")) == ""


def test_numpys_functions_on_other_sympy_expressions_are_numpys():
    """The refusal is for a cell's vectors alone: SymPy used beside lstm_derive is as NumPy treats it."""
    q = sympy.Symbol("q_of_no_cell")
    assert np.max(q) == q and np.mean(q + 1) == q + 1 and list(np.concatenate([[q], [2 * q]])) == [q, 2 * q]


def test_a_cell_script_run_as_a_program_gives_the_hint_after_pythons_traceback(tmp_path):
    """python my_cell.py: the traceback stays Python's own, and the command line's hint follows it;
    an error with no hint gets nothing more, and a script that imports a cell adds nothing."""
    import subprocess
    import sys

    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=max(a, h_prev))\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and "Traceback (most recent call last)" in run.stderr
    assert run.stderr.rstrip().endswith("lstm-derive: a cell's vectors cannot be compared: max, min and if/else on them "
                                        "are not in the cell language, whose functions are sigmoid, tanh, relu, softplus, "
                                        "exp, +, -, *, / and integer powers (relu(a) is max(a, 0), and max(u, v) is "
                                        "v + relu(u - v))"), run.stderr
    script.write_text(script.read_text().replace("max(a, h_prev)", "tanh(a)") + "raise KeyError('mine')\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().endswith("KeyError: 'mine'"), run.stderr
    # an error of the script's own, after the cell is built, gets no cell's hint
    script.write_text(script.read_text().replace("raise KeyError('mine')", "first, second = (1, 2, 3)"))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().endswith("ValueError: too many values to unpack (expected 2)"), run.stderr
    # NumPy's ufunc raises with no Python frame of its own, yet it is the cell's error
    script.write_text(script.read_text().replace("first, second = (1, 2, 3)", "import numpy as np; cell.update(h=np.tanh(a))"))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().endswith("lstm-derive: write tanh(...), not np.tanh(...), with from lstm_derive import "
                                        "tanh: a cell's vectors take lstm_derive's functions (sigmoid, tanh, relu, "
                                        "softplus, exp), not NumPy's"), run.stderr
    script.write_text(script.read_text().replace("import numpy as np; cell.update(h=np.tanh(a))\n", ""))
    (tmp_path / "user.py").write_text("import bad\nraise TypeError('cannot determine truth value of Relational')\n")
    run = subprocess.run([sys.executable, "user.py"], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().endswith("TypeError: cannot determine truth value of Relational"), run.stderr


def test_a_misspelt_keyword_gets_the_name_it_is_close_to(tmp_path, capsys):
    message = refused(tmp_path, capsys, "(a,) = cell.affine('W', [x, h_prev], block=['a'])  # <- here\n"
                      "cell.update(h=tanh(a))\n", "TypeError: Cell.affine() got an unexpected keyword argument 'block'",
                      "cell.affine takes name, inputs, blocks, bias")
    assert message.lower().count("did you mean") == 1, message


@pytest.mark.parametrize("message, hint", [
    ("Cell.affine() got an unexpected keyword argument 'block'", "did you mean blocks=? cell.affine takes name, inputs, blocks, bias"),
    # Python 3.13 names the close keyword itself
    ("Cell.affine() got an unexpected keyword argument 'block'. Did you mean 'blocks'?",
     "cell.affine takes name, inputs, blocks, bias"),
])
def test_a_misspelt_keyword_is_suggested_once(message, hint):
    assert script_hint(TypeError(message)) == hint


@pytest.mark.parametrize("body, error", [
    ("(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(aa))  # <- here\n",
     "NameError: name 'aa' is not defined. Did you mean: 'a'?"),
    ("(a,) = cell.afine('W', [x, h_prev])  # <- here\ncell.update(h=tanh(a))\n",
     "AttributeError: 'Cell' object has no attribute 'afine'. Did you mean: 'affine'?"),
])
def test_a_misspelt_name_gets_pythons_suggestion(tmp_path, capsys, body, error):
    """Python's traceback suggests the name meant, but not the error's text, which is all the
    command line shows: it adds the suggestion."""
    refused(tmp_path, capsys, body, error)


@pytest.mark.parametrize("body, hint", [
    ("(a,) = cell.affine('W', [x, h_prev])\ne = cell.let('e', tanh(a) + late)  # <- here\nlate = cell.let('late', tanh(a))\n"
     "cell.update(h=e)\n", "'late' is assigned only below, on line 9: a script runs from top to bottom, so a line reads "
     "only what the lines above it computed; move line 9 above this one"),
    ("(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a + h))  # <- here\n",
     "'h' is a state of the cell: its value of the step before is h_prev, which cell.state('h') returned; its new "
     "value is what cell.update(h=...) gives"),
    ("(a,) = cell.affine('W', [x, h_prev])\ne = cell.let('e', tanh(a + h))  # <- here\nh = cell.let('h_new', e)\n"
     "cell.update(h=h)\n", "'h' is assigned only below, on line 9, and is a state: its value of the step before is "
     "h_prev, which cell.state('h') returned"),
])
def test_a_name_read_before_the_line_that_assigns_it_says_where_it_is_assigned(tmp_path, capsys, body, hint):
    """An equation that reads a later line's node, or a state's name for the state's value: Python
    says only that the name is not defined."""
    message = refused(tmp_path, capsys, body, "NameError: name ", hint)
    assert "Did you mean" not in message  # Python's guess for 'late' is 'float'


def test_a_name_no_line_defines_is_said_so_with_the_close_names_the_script_defines(tmp_path, capsys):
    """A let's line removed and its use kept: Python says only that the name is not defined."""
    body = ("a_g, a_o = cell.affine('W', [x, h_prev], blocks=['a_g', 'a_o'])\ng = cell.let('g', tanh(a_g))\n"
            "cell.update(h=o * g)  # <- here\n")
    message = refused(tmp_path, capsys, body, "NameError: name 'o' is not defined; no line of the script defines 'o' "
                      "(its line removed, or the name misspelt?): a cell's vectors are the variables its lines "
                      "assign, as o = cell.let(\"o\", ...) would; close to it, the script defines a_o")
    assert "Did you mean" not in message


def test_a_name_no_line_defines_outside_the_cells_calls_is_left_to_python(tmp_path, capsys):
    body = "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a))\nprint(steps)  # <- here\n"
    message = refused(tmp_path, capsys, body, "NameError: name 'steps' is not defined")
    assert "no line of the script defines" not in message


def test_a_name_read_before_its_line_parses_the_script_once_for_the_suggestion_and_the_hint(tmp_path, monkeypatch):
    """The command line asks whether another name is meant (Python's suggestion) and what the hint
    is: both read where the name is assigned from one parse of the script."""
    import ast

    from lstm_derive import hints
    from lstm_derive.generate import load_cell

    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ne = cell.let('e', tanh(a) + late)\n"
                                       "late = cell.let('late', tanh(a))\ncell.update(h=e)\n")
    parsed, parse = [], ast.parse
    monkeypatch.setattr(ast, "parse", lambda source, *args, **kwargs: parsed.append(source) or
                        parse(source, *args, **kwargs))
    hints._parsed.cache_clear()
    with pytest.raises(SpecError, match="'late' is assigned only below, on line 9"):
        load_cell(script)
    assert len(parsed) == 1


def test_a_name_read_before_its_line_is_said_so_after_pythons_traceback(tmp_path):
    import subprocess
    import sys

    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ne = cell.let('e', tanh(a) + late)\n"
                                       "late = cell.let('late', tanh(a))\ncell.update(h=e)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().splitlines()[-1] == ("lstm-derive: 'late' is assigned only below, on line 9: a script "
                                                    "runs from top to bottom, so a line reads only what the lines "
                                                    "above it computed; move line 9 above this one"), run.stderr


@pytest.mark.parametrize("expr, error", [
    ("tanh(zzz_unlike_any)", "NameError: name 'zzz_unlike_any' is not defined"),
    ("tanh(h_prev) * h_prev.mean()", "AttributeError: 'Symbol' object has no attribute 'mean'"),  # SymPy's expand?
])
def test_a_name_that_suggests_nothing_gets_no_suggestion(tmp_path, capsys, expr, error):
    message = refused(tmp_path, capsys, f"cell.update(h={expr})  # <- here\n", error)
    assert "Did you mean" not in message


def test_a_function_not_imported_is_named_with_its_import(tmp_path, capsys):
    refused(tmp_path, capsys, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=softplus(a))  # <- here\n",
            "NameError: name 'softplus' is not defined; softplus is lstm_derive's: from lstm_derive import softplus")


@pytest.mark.parametrize("line, fragment", [
    ("from sympy import sigmoid", "sigmoid is lstm_derive's: from lstm_derive import sigmoid"),
    ("from lstm_derive import Sigmoid", "did you mean sigmoid? lstm_derive gives Cell, "),
    ("from lstm_derive import gelu", "the cell language's functions are sigmoid, tanh, relu, softplus, exp, +, -, *"),
])
def test_an_import_that_fails_names_what_lstm_derive_gives(tmp_path, capsys, line, fragment):
    refused(tmp_path, capsys, "", "ImportError: cannot import name", fragment, preamble=f"{line}  # <- here\n" + PREAMBLE)


def test_a_function_not_imported_is_named_after_pythons_traceback(tmp_path):
    import subprocess
    import sys

    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=softplus(a))\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().endswith("NameError: name 'softplus' is not defined\n"
                                        "lstm-derive: softplus is lstm_derive's: from lstm_derive import softplus"), run.stderr


@pytest.mark.parametrize("body, fragment", [
    ("(a,) = cell.affine('W', [x, h_prev])\ncell.update(tanh(a))  # <- here\n",
     "takes 1 positional argument but 2 were given; write cell.update(h=..., c=...), each state's new value given "
     "by the state's name"),
    ("(a,) = cell.affine('W', [x, h_prev])\ng = cell.let(tanh(a))  # <- here\ncell.update(h=g)\n",
     "missing 1 required positional argument: 'expr'; write g = cell.let(\"g\", tanh(a_g)), the name first"),
    ("(a,) = cell.affine([x, h_prev])  # <- here\ncell.update(h=tanh(a))\n",
     "missing 1 required positional argument: 'inputs'; write a_i, a_f = cell.affine(\"W\", [x, h_prev]"),
    ("c_prev, n_prev = cell.state('c', 'n')  # <- here\n",
     "takes 2 positional arguments but 3 were given; write one state a call, h_prev, c_prev = cell.state(\"h\"), "
     "cell.state(\"c\")"),
])
def test_a_call_given_its_values_wrongly_shows_how_it_is_written(tmp_path, capsys, body, fragment):
    refused(tmp_path, capsys, body, "TypeError: Cell.", fragment)


@pytest.mark.parametrize("line", ["from lstm_derive import Sigmoid", "from lstm_derive import Cell, Sigmoid"])
def test_an_import_that_fails_is_named_after_pythons_traceback(tmp_path, line):
    """Before any Cell is made, which installs the hint for every other error of a script."""
    import subprocess
    import sys

    (tmp_path / "imports.py").write_text(line + "\n")
    run = subprocess.run([sys.executable, "imports.py"], capture_output=True, text=True, cwd=tmp_path)
    last = run.stderr.rstrip().splitlines()[-2:]
    assert last[0].startswith("ImportError: cannot import name 'Sigmoid' from 'lstm_derive'"), run.stderr
    assert last[1].startswith("lstm-derive: did you mean sigmoid? lstm_derive gives Cell, "), run.stderr


def test_the_package_and_its_kernels_install_no_hint_and_load_no_sympy():
    import subprocess
    import sys

    code = ("import sys; from lstm_derive import kernels; from lstm_derive.kernels import lstm; import lstm_derive; "
            "hasattr(lstm_derive, '__wrapped__'); print('sympy' in sys.modules, sys.excepthook is sys.__excepthook__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.split() == ["False", "True"], run.stdout + run.stderr


def test_a_call_given_its_values_wrongly_is_shown_after_pythons_traceback(tmp_path):
    import subprocess
    import sys

    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(tanh(a))\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().endswith("TypeError: Cell.update() takes 1 positional argument but 2 were given\n"
                                        "lstm-derive: write cell.update(h=..., c=...), each state's new value given by "
                                        "the state's name"), run.stderr


@pytest.mark.parametrize("error", [
    ValueError("ufunc 'add' output (typecode 'O') could not be coerced"),  # a training loop's NumPy
    RuntimeError("could not convert expression to float"),
    KeyError("W"),
])
def test_an_error_that_is_no_type_error_of_the_cell_language_gets_no_hint(error):
    """The TypeErrors' hints (NumPy's functions, math's) read the message: the same words in
    another error are not that mistake."""
    assert script_hint(error) == ""


def test_a_type_error_of_no_kind_the_hints_know_gets_no_hint():
    assert script_hint(TypeError("'int' object is not callable")) == ""


@pytest.mark.parametrize("expr, name", [("tanh(log(1 + a*a))", "log"), ("sqrt(a*a + 1)", "sqrt"), ("tanh(a)*sin(a)", "sin")])
def test_a_function_of_mathematics_the_language_lacks_is_said_to_be_none_of_its(tmp_path, capsys, expr, name):
    """Python says only that log is not defined (and, for sqrt, did you mean 'sorted'?): importing it
    would not help, as the cell language has no log."""
    message = refused(tmp_path, capsys, f"(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n",
                      f"NameError: name '{name}' is not defined; {name} is not a function of the cell language, "
                      "whose functions are sigmoid, tanh, relu, softplus, exp, +, -, *")
    assert "Did you mean" not in message


@pytest.mark.parametrize("body", [
    "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a))\nlog  # <- here\n",  # named, not called
    "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tanh(a))\ntrain(cell)  # <- here\n",  # the script's own
])
def test_an_undefined_name_that_is_no_call_of_a_mathematical_function_gets_no_such_hint(tmp_path, capsys, body):
    message = refused(tmp_path, capsys, body, "NameError: name ")
    assert "not a function of the cell language" not in message


@pytest.mark.parametrize("expr", ["(h_prev > 0) * h_prev", "relu(a) * (a > 0)", "tanh(a) * ((a > 0) & (h_prev > 0))"])
def test_a_comparison_used_as_a_value_says_what_to_write_instead(tmp_path, capsys, expr):
    """SymPy keeps h_prev > 0 as a comparison, which Python's operators then refuse, naming its class alone."""
    body = f"from lstm_derive import relu\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n"
    refused(tmp_path, capsys, body, "TypeError: unsupported operand type(s) for *: ",
            "SymPy keeps a comparison of a cell's vectors (c > 0) as such, not as 0 or 1: comparisons are not in the "
            "cell language", "(v > 0)*v is relu(v)", "a gate that opens where v > 0 is sigmoid(v)")


def test_a_comparison_used_as_a_value_is_said_so_after_pythons_traceback(tmp_path):
    import subprocess
    import sys

    script, _ = write_script(tmp_path, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=(a > 0) * a)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().splitlines()[-1].startswith(
        "lstm-derive: SymPy keeps a comparison of a cell's vectors (c > 0) as such"), run.stderr


@pytest.mark.parametrize("expr, error, hint", [
    ("np.sqrt(1 + a**2)", "TypeError", "np.sqrt takes numbers, not a cell's vectors: the cell language has no root"),
    ("math.sqrt(1 + a**2)", "TypeError", "math.sqrt takes numbers, not a cell's vectors: the cell language has no root"),
    ("sqrt(1 + a**2)", "NameError", "sqrt is not a function of the cell language, whose functions are sigmoid, tanh, "
                                    "relu, softplus, exp, +, -, *, / and integer powers; the cell language has no root"),
    ("np.cbrt(a)", "TypeError", "np.cbrt takes numbers, not a cell's vectors: the cell language has no root"),
    ("math.log(1 + a**2)", "TypeError", "math.log takes numbers, not a cell's vectors: the cell language has "
                                        "no logarithm: log(sigmoid(v)) is -softplus(-v)"),
    ("math.log(1 + math.exp(a))", "TypeError", "write exp(...), not math.exp(...), with from lstm_derive import exp: "
                                               "math's functions take numbers, not a cell's vectors, which take "
                                               "lstm_derive's (sigmoid, tanh, relu, softplus, exp); the cell language "
                                               "has no logarithm: log(sigmoid(v)) is -softplus(-v), and log(1 + exp(v)) "
                                               "is softplus(v)"),
    ("np.log1p(a)", "TypeError", "np.log1p takes numbers, not a cell's vectors: the cell language has no logarithm"),
    ("np.fabs(a)", "TypeError", "np.fabs takes numbers, not a cell's vectors: |v| is relu(v) + relu(-v)"),
    ("np.clip(a, 0, 1)", "np.clip", "; clip(v, lo, hi) is lo + relu(v - lo) - relu(v - hi)"),
    ("np.where(a > 0, a, 0)", "np.where", "; comparisons are not in the cell language"),
])
def test_a_function_the_language_lacks_is_met_with_what_to_write_instead(tmp_path, capsys, expr, error, hint):
    """lstm_derive has no sqrt or log: its functions are no answer to np.sqrt, but what it can write is."""
    body = f"import math\nimport numpy as np\n(a,) = cell.affine('W', [x, h_prev])\ncell.update(h={expr})  # <- here\n"
    message = refused(tmp_path, capsys, body, error, hint)
    assert "use lstm_derive's" not in message and "not NumPy's" not in message


def test_a_root_the_language_lacks_is_said_so_after_pythons_traceback(tmp_path):
    import subprocess
    import sys

    script, _ = write_script(tmp_path, "import math\n(a,) = cell.affine('W', [x, h_prev])\n"
                                       "cell.update(h=math.sqrt(1 + a**2))\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert run.stderr.rstrip().splitlines()[-1].startswith(
        "lstm-derive: math.sqrt takes numbers, not a cell's vectors: the cell language has no root"), run.stderr


@pytest.mark.parametrize("body, name, variable", [
    ("(a,) = cell.affine('W', [x, h_prev])\nc = cell.let('c_new', tanh(a))\ncell.update(h=tanh(c_new))  # <- here\n",
     "c_new", "c"),
    ("i, g = cell.affine('W', [x, h_prev], blocks=['a_i', 'a_g'])\ncell.update(h=sigmoid(a_i) * tanh(g))  # <- here\n",
     "a_i", "i"),
])
def test_a_vectors_name_read_for_the_variable_that_holds_it_names_that_variable(tmp_path, capsys, body, name, variable):
    """c = cell.let("c_new", ...) then tanh(c_new): the script's own variable c, not a close name (c_prev)."""
    message = refused(tmp_path, capsys, body, f"NameError: name '{name}' is not defined; '{name}' is the name the "
                      f"cell gave the vector that the script's variable {variable} holds: a line reads a vector "
                      f"through its variable, so write {variable}")
    assert "close to it" not in message and "Did you mean" not in message


@pytest.mark.parametrize("body, hint", [
    ("alpha = cell.param('alpha', shape=())  # <- here\n",
     "cell.param takes name; a parameter is a vector of size H, one value per unit: a scalar one, a number that every "
     "unit shares, cannot be declared; cell.param(\"p\") learns one per unit"),
    ("(a,) = cell.affine('W', [x, h_prev], size=8)  # <- here\n",
     "cell.affine takes name, inputs, blocks, bias; every block is a vector of size H, as every vector but the input "
     "is: one of another size (an LSTM's projection to P < H) cannot be declared"),
    ("c_prev = cell.state('c', size=8)  # <- here\n", "cell.state takes name, positive; a state is a vector of size H"),
    ("x2 = cell.input('x2', dim=3)  # <- here\n", "cell.input takes name; the input's size is D, the last axis of the x "
                                                "given to the kernel, not said in the cell"),
])
def test_a_size_given_to_a_call_says_that_vectors_have_size_h(tmp_path, capsys, body, hint):
    refused(tmp_path, capsys, body, "got an unexpected keyword argument", hint)


def test_a_misspelt_function_is_said_to_be_no_function_the_script_defines_not_a_vector(tmp_path, capsys):
    """tahn(a): Python suggests tanh; no let would define a function."""
    message = refused(tmp_path, capsys, "(a,) = cell.affine('W', [x, h_prev])\ncell.update(h=tahn(a))  # <- here\n",
                      "NameError: name 'tahn' is not defined. Did you mean: 'tanh'?; no line of the script defines or "
                      "imports a function 'tahn': the cell language's functions are sigmoid, tanh, relu, softplus, "
                      "exp, imported from lstm_derive")
    assert "cell.let" not in message
