"""What a cell script's mistakes mean: the hint that goes with an error Python, SymPy or NumPy
raises while a script builds its cell (the command line's, and after Python's traceback where a
script runs as a program), and NumPy's functions refused on a cell's vectors, which NumPy would
otherwise read as one number."""

from __future__ import annotations

import ast
import builtins
import difflib
import functools
import inspect
import math
import re
import sys
import traceback
from pathlib import Path

import sympy

from . import __all__ as EXPORTED
from .functions import SUPPORTED_FUNCTIONS
from .spec import (
    COMPARED_INSTEAD, DECLARED, INSTEAD, MAX_THROUGH_RELU, ONE_SYMBOL, SUPPORTED_OPERATIONS, Cell, SpecError, _caller_frame,
    is_comparison,
)

__all__ = ["script_hint", "pythons_suggestion", "hint_uncaught_errors", "refuse_numpy_functions"]


def script_hint(error):
    """What a cell script's error most likely means, or "": a function of numbers given a cell's
    vector, a matrix product written by hand, a comparison, more or fewer names than an affine
    node's blocks, a call of the cell's given its values wrongly, or a name not imported."""
    if isinstance(error, (ImportError, NameError)):
        return _import_hint(error) or _name_hint(error) or _undefined_hint(error)
    if isinstance(error, ValueError) and "values to unpack" in str(error):
        return "cell.affine returns one block per name in blocks= (or N blocks for blocks=N): give as many names"
    if any(sign in str(error) for sign in ("for @:", "matmul", "Matrix", "NDimArray")):  # W @ h, W*h with a matrix
        return ("a cell multiplies by a matrix only in an affine node: cell.affine('W', [x, h_prev], blocks=[...]) "
                "is W_x x + W_h h_prev + b, split into blocks, its weights made for it")
    if _compared(error):  # (c > 0)*c, relu(c)*(a_o > 0)
        return f"SymPy keeps a comparison of a cell's vectors (c > 0) as such, not as 0 or 1: {COMPARED_INSTEAD}"
    given = _not_a_value(error)
    if given:
        return f"{given} is not a value of the cell language: {NOT_A_VALUE_BECAUSE.get(given, ONE_SYMBOL)}"
    if _of_sympy(error) and (isinstance(error, AttributeError) or re.search(
            r"not subscriptable|not iterable|has no len\(\)", str(error))):  # h_prev[0], sum(h_prev), h_prev.T
        return ("a cell's vector is one symbol that stands for each of its H components alike: it has no components "
                "to index, iterate or sum, and nothing across them (a mean, a norm, a transpose) is in the cell "
                f"language, whose functions are {SUPPORTED_OPERATIONS}")
    return _type_error_hint(error) if isinstance(error, TypeError) else ""


def _type_error_hint(error):
    """script_hint for a TypeError that is none of a value's: a call of the cell's given its values
    wrongly, NumPy's or math's functions on a cell's vectors, a comparison."""
    functions = ", ".join(SUPPORTED_FUNCTIONS)
    keyword = re.search(r"Cell\.(\w+)\(\) got an unexpected keyword argument '(\w+)'", str(error))
    if keyword and callable(getattr(Cell, keyword.group(1), None)):  # cell.affine(..., block=[...])
        method, given = keyword.groups()
        names, call = _arguments(method)
        # Python 3.13's own message ends with "Did you mean 'blocks'?" where it finds one
        close = [] if "Did you mean" in str(error) else difflib.get_close_matches(given, names, n=1)
        sized = SIZED_AS.get(method, "") if re.search(r"shape|size|dim|scalar|units|features", given) else ""
        return (f"did you mean {close[0]}=? " if close else "") + f"{call} takes {', '.join(names)}" + sized
    called = re.search(r"Cell\.(\w+)\(\) (?:missing \d+ required|takes \d+ positional)", str(error))
    if called and called.group(1) in CALLED_AS:  # cell.let(tanh(a)), cell.update(tanh(a))
        return f"write {CALLED_AS[called.group(1)]}"
    if "ufunc" in str(error):
        return _ufunc_hint(error, functions)
    if "truth value of Relational" in str(error):  # max(a, 0), np.maximum, if a > 0
        return (f"a cell's vectors cannot be compared: max, min and if/else on them are not in the "
                f"cell language, whose functions are {SUPPORTED_OPERATIONS} {MAX_THROUGH_RELU}")
    if "convert expression to" in str(error):  # math.exp(a), float(a)
        return _math_hint(error, functions)
    return ""


def _math_hint(error, functions):
    """For math's function on a cell's vector, which SymPy's message does not name: the language's
    functions of the names that the script's line calls from math (math.tanh(a) is tanh(a))."""
    line = next((f.line or "" for f in reversed(traceback.extract_tb(error.__traceback__))
                 if not _in(f, PACKAGE_FOLDER, SYMPY_FOLDER)), "")
    called = dict.fromkeys(re.findall(r"\bmath\.(\w+)\s*\(", line))
    named = [n for n in called if n in SUPPORTED_FUNCTIONS]
    lacked = next((n for n in called if n in INSTEAD), None)
    if not named and lacked:  # math.sqrt: lstm_derive has none to use instead
        return f"math.{lacked} takes numbers, not a cell's vectors: {INSTEAD[lacked]}"
    if not named:
        return f"math's functions take numbers, not a cell's vectors: use lstm_derive's {functions}"
    return (f"{_written_instead(named, 'math')}: math's functions take numbers, not a cell's vectors, which "
            f"take lstm_derive's ({functions})" + (_instead_of(lacked) if lacked else ""))


def _instead_of(name):
    """What the cell language writes for a function it lacks but can express (sqrt(v**2) is relu(v) +
    relu(-v)), after "; ", or "": a function it lacks is met with what to write."""
    return f"; {INSTEAD[name]}" if name in INSTEAD else ""


def _written_instead(names, module):
    """write tanh(...), not np.tanh(...), with from lstm_derive import tanh: each of names so."""
    written = _join_names([f"{n}(...)" for n in names])
    instead = _join_names([f"{module}.{n}(...)" for n in names])
    return f"write {written}, not {instead}, with from lstm_derive import {', '.join(names)}"


def _join_names(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ufunc_hint(error, functions):
    """For NumPy's elementwise function on a cell's vector: the language's function of that name
    to write instead, with its import (np.tanh(a) is tanh(a)), where the language has one."""
    called = re.search(r"no callable (\w+) method", str(error))
    name = called.group(1) if called else None
    if name in SUPPORTED_FUNCTIONS:
        return f"{_written_instead([name], 'np')}: a cell's vectors take lstm_derive's functions ({functions}), not NumPy's"
    if name in INSTEAD:  # np.sqrt: lstm_derive has none to use instead
        return f"np.{name} takes numbers, not a cell's vectors: {INSTEAD[name]}"
    return f"a cell's vectors take lstm_derive's functions ({functions}), not NumPy's"


# Python's values an operator's TypeError names beside a cell's expression, as a script wrote them;
# "sequence" is Python's word for a list, tuple or string multiplied by an expression.
NOT_A_VALUE = {"list": "a list", "tuple": "a tuple", "set": "a set", "dict": "a dict",
               "sequence": "a list, tuple or string", "str": "a string", "NoneType": "None"}
NOT_A_VALUE_BECAUSE = {
    "a string": "write a number as a number (0.5, not '0.5') and a vector as the variable a call of the cell returned",
    "None": "a function that ends without `return` gives it, and so do cell.update and cell.note",
}
# The messages of Python's operators given operands they cannot combine: both operands' types.
_OPERANDS = (r"unsupported operand type\(s\) for [^:]+: '(\w+)' and '(\w+)'",
             r"can't multiply (sequence) by non-int of type '(\w+)'",
             r'can only concatenate (\w+) \(not "(\w+)"\) to \w+')


def _not_a_value(error):
    """What a script gave where a cell's expression goes, in words ("a list"), or "": an operand
    beside a cell's expression (tanh(a)*[a, a]), or an argument of a SymPy function that fails
    inside SymPy (tanh([a, a]): 'list' object has no attribute 'is_Number')."""
    if isinstance(error, TypeError):
        named = [n for pattern in _OPERANDS for match in re.findall(pattern, str(error)) for n in match]
        of_a_cell = any(_is_sympys(n) for n in named)
    elif isinstance(error, AttributeError):
        named = re.findall(r"^'(\w+)' object has no attribute", str(error))
        of_a_cell = _raised_in_sympy(error)
    else:
        return ""
    given = [NOT_A_VALUE[n] for n in named if n in NOT_A_VALUE]
    return given[0] if given and of_a_cell else ""


def _compared(error):
    """Whether an operator's TypeError names a comparison of SymPy's as an operand ('StrictGreaterThan'
    for c > 0, 'And' for (a > 0) & (b > 0)): SymPy keeps a comparison of symbols as one, of no number."""
    if not isinstance(error, TypeError):
        return False
    named = [n for pattern in _OPERANDS for match in re.findall(pattern, str(error)) for n in match]
    return any(isinstance(getattr(sympy, n, None), type) and is_comparison(getattr(sympy, n)) for n in named)


# An error raised in their code is one of building the cell, not of the rest of a script.
SYMPY_FOLDER = str(Path(sympy.__file__).parent)
PACKAGE_FOLDER = str(Path(__file__).parent)


def _raised_in_sympy(error):
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and _in(frames[-1], SYMPY_FOLDER)


def _in(frame, *folders):
    """Whether a traceback's frame runs code of a file below one of folders."""
    return frame.filename.startswith(folders)


# How each of a script's calls is written, for a call given too few or too many values by position.
CALLED_AS = {
    "__init__": 'Cell("name", title="...", output="h")',
    "input": 'x = cell.input("x")',
    "state": 'one state a call, h_prev, c_prev = cell.state("h"), cell.state("c")',
    "affine": 'a_i, a_f = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f"]), the name first, then the list of inputs',
    "let": 'g = cell.let("g", tanh(a_g)), the name first, then the expression',
    "param": 'p = cell.param("p"), an elementwise vector of size H',
    "update": "cell.update(h=..., c=...), each state's new value given by the state's name",
    "note": 'cell.note("..."), one text',
}


# What a call given a size or a shape (cell.param("a", shape=())) meets: every vector but the input has size H,
# and the cell language has no way to declare another.
SIZED_AS = {
    "param": ("; a parameter is a vector of size H, one value per unit: a scalar one, a number that every unit "
              "shares, cannot be declared; cell.param(\"p\") learns one per unit, and a number that need not be "
              "learned is written as a number (0.5*h_prev)"),
    "affine": ("; every block is a vector of size H, as every vector but the input is: one of another size (an "
               "LSTM's projection to P < H) cannot be declared"),
    "state": "; a state is a vector of size H, as every vector but the input is: one of another size cannot be declared",
    "input": "; the input's size is D, the last axis of the x given to the kernel, not said in the cell",
}


def _arguments(method):
    """The arguments a script gives a method of Cell's, and how the call is named."""
    if method == "__init__":  # Cell(...): the fields a script gives, not those the cell fills itself
        return ["name", "title", "output"], "Cell()"
    return [n for n in inspect.signature(getattr(Cell, method)).parameters if n != "self"], f"cell.{method}"


def _import_hint(error):
    """A name of lstm_derive's not imported, sought in SymPy or NumPy, or misspelt in the import."""
    wanted = _missing_name(error)
    if wanted is None:
        return ""
    if wanted in EXPORTED:
        return f"{wanted} is lstm_derive's: from lstm_derive import {wanted}"
    if getattr(error, "name", None) != "lstm_derive":
        return ""
    close = difflib.get_close_matches(wanted.lower(), EXPORTED, n=1)
    return ((f"did you mean {close[0]}? " if close else "") + f"lstm_derive gives {', '.join(EXPORTED)}; the cell "
            f"language's functions are {SUPPORTED_OPERATIONS}")


def _name_hint(error):
    """For a name that is right where its line is not (read before a later line assigns it, a
    state's name read for its value) or where the cell language lacks it (log, sqrt): the hint, and
    no other name is meant; else ""."""
    return _order_hint(error) or _held_hint(error) or _function_hint(error)


def _held_hint(error):
    """For the name a call of the cell gave a vector, read where the script's variable that holds it is
    meant (c = cell.let("c_new", ...), then tanh(c_new)): that variable, which a close name need not be."""
    name, frame = getattr(error, "name", None), _innermost_frame(error)
    if not name or frame is None:
        return ""
    held = [k for k, v in {**frame.f_globals, **frame.f_locals}.items()
            if isinstance(v, sympy.Symbol) and v in DECLARED and str(v) == name and not k.startswith("_")]
    if not held:
        return ""
    return (f"'{name}' is the name the cell gave the vector that the script's variable {held[0]} holds: a line reads "
            f"a vector through its variable, so write {held[0]}")


def _function_hint(error):
    """For a function of mathematics' (log, sqrt, sin) called but not defined: the cell language has
    no such function, whose are named. A name the line does not call, or no mathematician's (a
    helper of the script's own), is left to Python's message."""
    frames = traceback.extract_tb(error.__traceback__)
    name = getattr(error, "name", None)
    if not (name and frames and re.search(rf"\b{re.escape(name)}\s*\(", frames[-1].line or "")):
        return ""
    if not (hasattr(math, name) or isinstance(getattr(sympy, name, None), sympy.FunctionClass)):
        return ""
    return f"{name} is not a function of the cell language, whose functions are {SUPPORTED_OPERATIONS}" + _instead_of(name)


def _order_hint(error):
    """For a name a script's line reads before a later line assigns it (i = sigmoid(a_i + c), c
    computed below), or a state's name read for its value: where it is assigned, and what gives
    the state's value of the step before."""
    frames = traceback.extract_tb(error.__traceback__)
    name, frame = getattr(error, "name", None), _innermost_frame(error)
    if not name or not frames or frames[-1].name != "<module>" or frame is None:  # in a helper: not the script's order
        return ""
    later = _assigned_after(frames[-1].filename, name, frames[-1].lineno)
    cells = [v for v in frame.f_globals.values() if isinstance(v, Cell)]
    if not cells or name not in cells[0].states:
        return (f"'{name}' is assigned only below, on line {later}: a script runs from top to bottom, so a line "
                f"reads only what the lines above it computed; move line {later} above this one") if later else ""
    previous = next((k for k, v in frame.f_globals.items() if isinstance(v, sympy.Symbol) and str(v) == f"{name}_prev"
                     and not k.startswith("_")), f"{name}_prev")
    return ((f"'{name}' is assigned only below, on line {later}, and is a state: " if later else
             f"'{name}' is a state of the cell: ") + f"its value of the step before is {previous}, which "
            f"cell.state('{name}') returned; its new value is what cell.update({name}=...) gives")


def _undefined_hint(error):
    """For a name that a call of the cell's reads but no line of the script binds (a let's line
    removed, its use kept): the cell language's word for it, and the names close to it that the
    script's vectors have, where Python suggests none. A name read elsewhere is left to Python."""
    frames = traceback.extract_tb(error.__traceback__)
    name, frame = getattr(error, "name", None), _innermost_frame(error)
    if not name or not frames or frames[-1].name != "<module>" or frame is None:
        return ""
    try:
        tree = _parsed(Path(frames[-1].filename).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return ""
    cells = {k for k, v in frame.f_globals.items() if isinstance(v, Cell)}
    if any(_binds(node, name) for node in ast.walk(tree)) or not _in_a_call_of(tree, frames[-1].lineno, cells):
        return ""
    if _called(tree, name, frames[-1].lineno):  # tahn(c): a function, misspelt or never imported, is no vector
        return (f"no line of the script defines or imports a function '{name}': the cell language's functions are "
                f"{', '.join(SUPPORTED_FUNCTIONS)}, imported from lstm_derive")
    vectors = [k for k, v in frame.f_globals.items() if isinstance(v, sympy.Basic) and not k.startswith("_")]
    close = [] if pythons_suggestion(error) else difflib.get_close_matches(name, vectors, n=3, cutoff=0.5)
    return (f"no line of the script defines '{name}' (its line removed, or the name misspelt?): a cell's vectors are "
            f"the variables its lines assign, as {name} = cell.let(\"{name}\", ...) would"
            + (f"; close to it, the script defines {', '.join(close)}" if close else ""))


def _called(tree, name, line):
    """Whether the statement on a line calls name itself, name(...)."""
    return any(isinstance(call.func, ast.Name) and call.func.id == name
               and call.lineno <= line <= (call.end_lineno or call.lineno)
               for call in ast.walk(tree) if isinstance(call, ast.Call))


def _in_a_call_of(tree, line, cells):
    """Whether the statement on a line calls a method of one of the variables named in cells."""
    return any(isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
               and call.func.value.id in cells and call.lineno <= line <= (call.end_lineno or call.lineno)
               for call in ast.walk(tree) if isinstance(call, ast.Call))


def _assigned_after(path, name, line):
    """The first line after ``line`` of the file at ``path`` that binds ``name``, or None."""
    try:
        tree = _parsed(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    bound = [node.lineno for node in ast.walk(tree) if _binds(node, name) and node.lineno > line]
    return min(bound, default=None)


@functools.lru_cache(maxsize=2)
def _parsed(source):
    """The script's syntax tree, parsed once for an error that Python's suggestion and the hint
    both ask about (the command line gives both)."""
    return ast.parse(source)


def _binds(node, name):
    if isinstance(node, ast.Name):
        return node.id == name and isinstance(node.ctx, ast.Store)
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name == name
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names)
    return False


def _missing_name(error):
    """The name an ImportError could not import, or a NameError's name."""
    if isinstance(error, NameError):
        return getattr(error, "name", None)
    missing = re.match(r"cannot import name '(\w+)'", str(error))
    return missing.group(1) if missing else None


def pythons_suggestion(error):
    """Python's "Did you mean" for a misspelt name or attribute, which its traceback prints but the
    error's own text lacks: the command line, which shows that text alone, adds it."""
    name = getattr(error, "name", None)
    if isinstance(error, NameError) and _name_hint(error):
        return ""
    if isinstance(error, NameError) and name:
        frame = _innermost_frame(error)
        known = [*frame.f_locals, *frame.f_globals, *vars(builtins)] if frame else []
    elif isinstance(error, AttributeError) and name and hasattr(error, "obj") and not isinstance(error.obj, sympy.Basic):
        # not SymPy's methods for a cell's vector (h_prev.mean: 'expand'?), which a script never calls
        known = [n for n in dir(error.obj) if not n.startswith("_") or name.startswith("_")]
    else:
        return ""
    close = difflib.get_close_matches(name, [n for n in known if n != name], n=1)
    return f". Did you mean: '{close[0]}'?" if close else ""


def _innermost_frame(error):
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame if tb is not None else None


def _about_the_cell(error):
    """Whether an error came from building the cell: raised within lstm_derive or SymPy, on a line
    that unpacks an affine's blocks, by a NumPy ufunc given a SymPy expression, for a value that is
    none of the cell language's beside one that is (a list), for a name of lstm_derive's not
    imported from it, read before its line or of a function the language lacks, or by a call of
    the cell's given its values wrongly. The rest of the script (a training loop) gets no hint."""
    frames = traceback.extract_tb(error.__traceback__)
    # np.tanh(a) and h_prev[0] fail with no Python frame of NumPy's or SymPy's: their message names SymPy's class
    return (any(_in(f, PACKAGE_FOLDER, SYMPY_FOLDER) for f in frames)
            or bool(frames and ".affine(" in (frames[-1].line or ""))
            or _of_sympy(error) or _compared(error) or bool(_not_a_value(error) or _import_hint(error) or _name_hint(error)
                                        or _undefined_hint(error))
            or bool(re.match(r"Cell\.\w+\(\)", str(error))))


def _of_sympy(error):
    """Whether an error's message names a SymPy class as the object's type ('Symbol' object is not
    subscriptable; ufunc does not support argument 0 of type Add)."""
    named = re.findall(r"'(\w+)' object|of type '?(\w+)", str(error))
    return any(_is_sympys(name) for pair in named for name in pair if name)


def _is_sympys(name):
    """Whether a type's name is that of a cell's expression: a SymPy class, or a function of the
    cell language's (sigmoid is lstm_derive's class, not SymPy's)."""
    return isinstance(getattr(sympy, name, None), type) or name in SUPPORTED_FUNCTIONS


def hint_uncaught_errors():
    """For a cell script run as a program (python my_cell.py): after Python's own traceback of an
    uncaught error, the hint the command line would give with it (max(a, h_prev): a cell's vectors
    cannot be compared, ...). Installed once; the traceback itself is left as it is."""
    previous = sys.excepthook
    if getattr(previous, "gives_cell_hints", False):
        return

    def hook(kind, error, tb):
        previous(kind, error, tb)
        hint = script_hint(error) if _about_the_cell(error) else ""
        if hint:
            print(f"lstm-derive: {hint}", file=sys.stderr)

    hook.gives_cell_hints = True
    sys.excepthook = hook


def refuse_numpy_functions(self, func, types, args, kwargs):
    """sympy.Basic.__array_function__, so that NumPy's functions refuse a cell's vectors. NumPy
    would take such an expression for one number and hand it back (np.max(h_prev) is h_prev,
    np.mean(a) is a, np.var(a) is 0): the cell derived would not be the one written. Expressions
    of no cell's symbols go to NumPy's own implementation, as before."""
    if not any(_of_a_cell(value) for value in (*args, *kwargs.values())):
        return func._implementation(*args, **kwargs)
    frame = _caller_frame()
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}: " if frame is not None else ""
    name = f"{func.__module__.replace('numpy', 'np', 1)}.{_numpy_name(func)}"  # np.max, np.linalg.norm
    raise SpecError(f"{where}{name} of a cell's vector is not in the cell language: NumPy would take the vector "
                    "for one number (np.max(h_prev) would be h_prev itself, np.var(h_prev) 0), and another cell "
                    "than the one written would be derived. Nothing across a vector's H components is (a mean, a "
                    f"maximum, a norm); elementwise, a cell's vectors take lstm_derive's functions "
                    f"({', '.join(SUPPORTED_FUNCTIONS)})" + _instead_of(_numpy_name(func)))


def _numpy_name(func):
    """func's name as a script calls it: NumPy before 1.25 names np.max amax, np.min amin and
    np.round round_."""
    module = sys.modules.get(func.__module__)
    return next((alias for alias in ("max", "min", "round") if getattr(module, alias, None) is func), func.__name__)


def _of_a_cell(value):
    """Whether value is an expression of a cell's symbols, or a list or tuple that holds one."""
    if isinstance(value, (list, tuple)):
        return any(_of_a_cell(v) for v in value)
    return isinstance(value, sympy.Basic) and not DECLARED.isdisjoint(value.free_symbols)


if "__array_function__" not in vars(sympy.Basic):  # were SymPy to define one, it would stay SymPy's
    sympy.Basic.__array_function__ = refuse_numpy_functions
