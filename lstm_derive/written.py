"""A let's expression as its script writes it, for display: the script's text read back into an
unevaluated SymPy expression, its terms and factors in the written order (``written_form``)."""

from __future__ import annotations

import ast
import functools
import math
from pathlib import Path

import sympy

from .spec import SUPPORTED_FUNCTIONS, Affine


def written_form(cell, let):
    """The let's expression with its terms and factors in the order its script writes them, for
    display: SymPy sorts them, and (1 - z)*n + z*h_prev would print as h_prev*z + n*(1 - z).
    None where the script's text is not at hand or does not read back into the same expression
    (a variable named unlike its node, other than one a call of the cell gives, an expression built
    in a loop or a function)."""
    tree = _script_tree(str(let.where.file))
    if tree is None:
        return None
    names = {str(v): v for v in cell.inputs + [cell.prev(s) for s in cell.states] + cell.params}
    for node in cell.nodes:
        names.update({str(b): b for b in node.blocks} if isinstance(node, Affine) else {str(node.symbol): node.symbol})
    names.update(_constants(tree, let.where.line))
    names.update(_variables(tree, let.where.line, names, cell))
    # a gate the derivation named where the script wrote it inline (g for tanh(a_g)) reads as its name,
    # in every let that writes it (the name takes the line of the first): the form that reads back wins
    calls = tuple(SUPPORTED_FUNCTIONS.values())
    named = {n.expr: n.symbol for n in cell.lets if n is not let and isinstance(n.expr, calls)}
    texts = list(_written_texts(tree, let.where.line, str(let.symbol)))
    if isinstance(let.expr, calls):  # a gate the derivation named, as the script writes it inline
        texts += _written_calls(tree, let.where.line)
    for text in texts:
        try:
            shown = _unevaluated(text, names)
            for form in (shown, _replaced(shown, named)):
                # SymPy distributes a number over a sum as it builds the let: 2*(hc - h_prev)*f is
                # f*(2*hc - 2*h_prev) there, the same expression
                if form.doit() == let.expr or sympy.expand_mul(form.doit() - let.expr) == 0:
                    return form
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            continue
    return None


def _variables(tree, line, names, cell):
    """The script's variables that hold a node under another name, as assigned before the line:
    c = cell.let("c_new", ...), hp = cell.state("h"), i_pre, f_pre = cell.affine(..., blocks=[...])."""
    affines = {a.name: a.blocks for a in cell.affines}
    held = {}
    for assigned, targets, call in _assignments(tree):
        if assigned >= line:
            break
        what = call.args[0].value
        if call.func.attr == "let" and isinstance(targets, ast.Name) and what in names:
            held[targets.id] = names[what]
        elif call.func.attr == "state" and isinstance(targets, ast.Name) and f"{what}_prev" in names:
            held[targets.id] = names[f"{what}_prev"]
        elif call.func.attr == "affine" and isinstance(targets, (ast.Tuple, ast.List)) and what in affines \
                and len(targets.elts) == len(affines[what]) and all(isinstance(t, ast.Name) for t in targets.elts):
            held.update({t.id: b for t, b in zip(targets.elts, affines[what])})
    return held


def _constants(tree, line):
    """The script's top-level variables that hold a number, as last assigned before the line: dt = 0.1
    (a time step, a constant named once and used in several lets), read as the number."""
    held = {}
    for statement in tree.body:
        if statement.lineno >= line:
            break
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                and isinstance(statement.targets[0], ast.Name):
            value = _number(statement.value)
            if value is None:
                held.pop(statement.targets[0].id, None)
            else:
                held[statement.targets[0].id] = value
    return held


def _number(node):
    """The number a node writes (0.1, 3, -0.5), as SymPy's, else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _number(node.operand)
        return None if value is None else -value
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return sympy.sympify(node.value)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in _CONSTANTS_OF \
            and node.attr in _CONSTANTS:  # math.pi: the float SymPy was given, where sympy.pi is refused
        return sympy.Float(_CONSTANTS[node.attr])
    return None


# The constants a script may write as its modules' floats (math.pi, np.pi), by the modules' usual names.
_CONSTANTS_OF = ("math", "np", "numpy")
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


@functools.lru_cache(maxsize=32)
def _assignments(tree):
    """(line, target, call) for the script's assignments of a call cell.let, cell.state or
    cell.affine whose first argument is the node's name as a string, in the order of their lines:
    c = cell.let("c_new", ...), and each pair of c, n = cell.let("c_new", ...), cell.let("n_new", ...)."""
    pairs = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                and len(target.elts) == len(value.elts):
            pairs += [(node.lineno, t, v) for t, v in zip(target.elts, value.elts)]
        else:
            pairs.append((node.lineno, target, value))
    return tuple(sorted((pair for pair in pairs if _names_a_node(pair[2])), key=lambda pair: pair[0]))


def _names_a_node(value):
    """Whether value is a call cell.let, cell.state or cell.affine given the node's name as a string."""
    return (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
            and value.func.attr in ("let", "state", "affine") and value.args
            and isinstance(value.args[0], ast.Constant) and isinstance(value.args[0].value, str))


def _script_tree(path):
    try:
        stamp = Path(path).stat()
    except (OSError, ValueError):
        return None
    return _parsed(path, stamp.st_mtime_ns, stamp.st_size)  # a script edited in this process is read again


@functools.lru_cache(maxsize=32)
def _parsed(path, mtime_ns, size):
    try:
        return ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None


def _written_texts(tree, line, name):
    """The expression nodes of cell.let("name", expr) and cell.update(name=expr) calls on a line."""
    for call in _calls(tree):
        if not (isinstance(call.func, ast.Attribute) and call.lineno <= line <= (call.end_lineno or call.lineno)):
            continue
        if call.func.attr == "let" and len(call.args) == 2 and isinstance(call.args[0], ast.Constant) \
                and call.args[0].value == name:
            yield call.args[1]
        elif call.func.attr == "update":
            yield from (k.value for k in call.keywords if k.arg == name)


def _written_calls(tree, line):
    """The calls of the cell language's functions (sigmoid(a_f - 1)) in the statement on a line."""
    return [call for call in _calls(tree) if isinstance(call.func, ast.Name)
            and call.func.id in SUPPORTED_FUNCTIONS and call.lineno <= line <= (call.end_lineno or call.lineno)]


@functools.lru_cache(maxsize=32)  # every let of a script looks through the same calls: found once, not once a let
def _calls(tree):
    """The script's calls, in ast.walk's order."""
    return tuple(node for node in ast.walk(tree) if isinstance(node, ast.Call))


def _product(l, r):
    """l*r unevaluated, a number first (2*x, as written) and a sign in front (-a*b, not (-a)*b)."""
    if l.is_number and r.is_number:
        return l * r
    if r.is_number:
        l, r = r, l
    if l.is_number and r.is_Mul and r.args[0] == -1:  # -f*hc*2 is -2*f*hc
        return sympy.Mul(-l, *r.args[1:], evaluate=False)
    if l.is_number and r.is_Mul and not r.args[0].is_number:  # f*hc*2 is 2*f*hc, not 2*(f*hc)
        return sympy.Mul(l, *r.args, evaluate=False)
    factors = (*l.args, r) if l.is_Mul else (l, r)  # a*b*c as one product, -a*b with its sign in front
    return sympy.Mul(*factors, evaluate=False)


def _divided(l, n):
    """l/n for a number n, unevaluated: c*h_prev/3, not (c*h_prev)/3; -c*h_prev/3 with its sign in front."""
    if l.is_Mul and l.args[0] == -1:
        return sympy.Mul(-1, _divided(sympy.Mul(*l.args[1:], evaluate=False), n), evaluate=False)
    return sympy.Mul(*(l.args if l.is_Mul else (l,)), sympy.Pow(n, -1, evaluate=False), evaluate=False)


def _negated(e):
    """-e unevaluated, a number's sign taken into it: a - 1.0 and -2*a, not a - 1*1.0 and -1*2*a."""
    if e.is_number:
        return -e
    if e.is_Mul and e.args[0] == -1:  # --a is a
        rest = e.args[1:]
        return rest[0] if len(rest) == 1 else sympy.Mul(*rest, evaluate=False)
    if e.is_Mul and e.args[0].is_number:
        return sympy.Mul(-e.args[0], *e.args[1:], evaluate=False)
    return sympy.Mul(-1, e, evaluate=False)


def _sum(l, r):
    """l + r unevaluated; a + b + c as one sum, not (a + b) + c."""
    return sympy.Add(*(l.args if l.is_Add else (l,)), r, evaluate=False)


_BINARY = {
    ast.Add: _sum,
    ast.Sub: lambda l, r: _sum(l, _negated(r)),
    ast.Mult: _product,
    ast.Div: lambda l, r: _divided(l, r) if r.is_number else _product(l, sympy.Pow(r, -1, evaluate=False)),
    ast.Pow: lambda l, r: sympy.Pow(l, r, evaluate=False),
}


def _replaced(expr, mapping):
    """expr with the mapping's subexpressions replaced, its order kept (xreplace would sort it); a
    function call is matched by its value (sigmoid(a_f - 1) as written is sigmoid(-1 + a_f))."""
    if expr in mapping:
        return mapping[expr]
    if isinstance(expr, sympy.Function) and expr.args and expr.doit() in mapping:
        return mapping[expr.doit()]
    if not expr.args:
        return expr
    return expr.func(*(_replaced(a, mapping) for a in expr.args), evaluate=False)


def _unevaluated(node, names):
    """An expression's syntax tree as an unevaluated SymPy expression, its order kept."""
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_unevaluated(node.left, names), _unevaluated(node.right, names))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _negated(_unevaluated(node.operand, names))
    if isinstance(node, ast.Name):
        return names[node.id]
    if _number(node) is not None:
        return _number(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1 and not node.keywords:
        return SUPPORTED_FUNCTIONS[node.func.id](_unevaluated(node.args[0], names), evaluate=False)
    if _is_rational(node):  # sympy.Rational(1, 3) or Rational(1, 3): a number, as written
        return sympy.Rational(*(_integer(arg) for arg in node.args))
    raise ValueError(f"not read back: {ast.dump(node)}")


def _is_rational(node):
    func = getattr(node, "func", None)
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return (isinstance(node, ast.Call) and name == "Rational" and len(node.args) == 2 and not node.keywords
            and all(type(_integer(a)) is int for a in node.args))


def _integer(node):
    """The int a node writes (3, or -3 as a unary minus), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _integer(node.operand)
        return None if value is None else -value
    return node.value if isinstance(node, ast.Constant) and type(node.value) is int else None
