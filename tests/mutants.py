"""Systematic mistakes in a generated kernel's backward pass, for showing the checker catches them.

Each mutant is the kernel's source with one statement of ``backward()`` changed the way people
get backpropagation wrong: a term of a sum dropped or its sign flipped, y(1-y) written as y,
1-y**2 as 1+y**2, two gates' adjoints swapped, a carry dropped or taken from the wrong step, a
forward value read at the wrong step, a weight gradient transposed, a bias gradient not summed
over the batch, an elementwise parameter's gradient not summed over time.

Statements are found by their provenance comments (``# (9) dL/dc`` for an adjoint), by where
they stand (a local derivative is computed before the loop) and by the shape of their syntax
tree, not by their exact text, so the mutants follow the emitter's code as it changes.
"""

from __future__ import annotations

import ast
import copy
import re
import types
from dataclasses import dataclass

# "# (9) dL/dc", "# (20), (27) dL/dp_i": the adjoint a line computes, after its equation numbers.
ADJOINT = re.compile(r"#\s*(?:\(\d+\)[,\s]*)+dL/d(\w+)")

# Errors numpy raises for arrays of mismatched shapes. The kernel's own checks raise ValueErrors
# of the form "<argument>: expected ...", which a mutant of backward() must never trigger.
SHAPE_ERRORS = re.compile(r"could not be broadcast|mismatch in its core dimension|cannot reshape|"
                          r"does not have enough dimensions|shapes .* not aligned")


@dataclass(frozen=True)
class Mutant:
    cell: str
    operator: str
    line: int
    before: str
    after: str
    source: str

    def __str__(self):
        return f"{self.cell}:{self.line} [{self.operator}] {self.before.strip()}  ->  {self.after.strip()}"


@dataclass
class Statement:
    node: ast.stmt
    line: int  # 1-based
    text: str  # the source line
    place: str  # "before", "loop" or "after" the backward loop
    kind: str  # "adjoint", "local", "carry", "load" or "other"
    target: str  # the adjoint's name for "adjoint" lines, else ""


def backward_statements(source):
    """The one-line statements of backward(), classified by their syntax (comments only name them)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    backward = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "backward")
    out = []
    place = "before"
    for stmt in _unwrapped(backward.body):
        if isinstance(stmt, ast.For):  # the loop over steps, alone or inside the loop over spans
            inner = next((n for n in stmt.body if isinstance(n, ast.For)), None)
            for s in stmt.body:
                if s is inner:
                    out += [_statement(s2, lines, "loop") for s2 in inner.body if s2.lineno == s2.end_lineno]
                elif s.lineno == s.end_lineno:
                    out.append(_statement(s, lines, "loop" if inner is None else "before"))
            place = "after"
        elif stmt.lineno == stmt.end_lineno:
            out.append(_statement(stmt, lines, place))
    return out


def _unwrapped(body):
    """The statements of a body, those of a `with` block (the backward's np.errstate) in its place."""
    for stmt in body:
        if isinstance(stmt, ast.With):
            yield from _unwrapped(stmt.body)
        else:
            yield stmt


def _statement(stmt, lines, place):
    text = lines[stmt.lineno - 1]
    named = ADJOINT.search(text)
    targets = _assigned(stmt)
    target = named.group(1) if named else (targets[0] if targets else "")
    if place == "loop" and targets and all(n.endswith("_next") for n in targets) and isinstance(stmt, ast.Assign):
        kind = "carry"  # d<s>_next, ... = d<s>_prev, ...: what step t passes to step t-1
    elif place == "loop" and isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Subscript):
        kind = "load"  # a forward value at step t
    elif place == "loop":
        kind = "adjoint"
    elif _is_setup(stmt):
        kind = "other"
    elif place == "before":
        kind = "local"  # a local derivative computed for all steps before the loop
    elif any(n.startswith("d") and not n.endswith("_flat") for n in targets):
        kind = "adjoint"  # a parameter's or the input's gradient, after the loop
    else:
        kind = "other"
    return Statement(stmt, stmt.lineno, text, place, kind, target)


def _names_of(target):
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple) and all(isinstance(e, ast.Name) for e in target.elts):
        return [e.id for e in target.elts]
    return []


def _assigned(stmt):
    """The names a statement assigns (the base name of a subscript target)."""
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AugAssign):
        targets = [stmt.target]
    elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        targets = [k.value for k in stmt.value.keywords if k.arg == "out"]
    elif isinstance(stmt, ast.Delete):
        targets = stmt.targets
    else:
        return []
    names = []
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.append(n.id)
                break
    return names


def _is_setup(stmt):
    """Argument checks, unpacking, buffers and views: no arithmetic of the derivation."""
    if isinstance(stmt, (ast.Return, ast.For, ast.Delete)) or (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Dict)):
        return True
    names = _assigned(stmt)
    if names in (["span"], ["t0"]) or (len(names) == 1 and names[0].endswith("_span")
                                        and not any(isinstance(n, ast.BinOp) for n in ast.walk(stmt))):
        return True  # the bounds of a span of steps, and the gates saved for it (not a local formed for it)
    value = getattr(stmt, "value", None)
    if (isinstance(stmt, ast.Assign) and all(_names_of(t) for t in stmt.targets)
            and isinstance(value, (ast.Name, ast.Tuple, ast.Attribute))
            and not any(isinstance(n, ast.BinOp) for n in ast.walk(value))):
        return True  # aliases and views: a = b, a, b = c, d (not a write into a buffer, a[...] = b)
    if isinstance(stmt, ast.Assign) and all(_names_of(t) for t in stmt.targets) and _is_view(value):
        return True  # views of buffers' columns: a, b = c[:, :2 * H], d[..., H:]
    for n in ast.walk(stmt):
        if isinstance(n, ast.Call):
            name = ast.unparse(n.func)
            if (name.startswith("_") and name not in ("_before_ends", "_summed", "_summed_products")  # a sum's, not an argument's
                    or name in ("np.empty", "np.zeros", "np.zeros_like", "np.empty_like")):
                return True
            if isinstance(n.func, ast.Attribute) and n.func.attr == "reshape" and not any(
                    isinstance(m, ast.BinOp) and not isinstance(m.op, ast.Mult) for m in ast.walk(n.func.value)) \
                    and isinstance(stmt, ast.Assign) and _assigned(stmt)[0].endswith(("_flat", "_blocks")):
                return True
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == "cache":
            return True
        if isinstance(n, ast.Attribute) and n.attr == "shape":
            return True
    return False


def _is_view(value):
    """A view of a buffer, or a tuple of them: subscripts of names or of a name's reshape
    (dpre_W_by.reshape(B, 4, H)[:, 0:3])."""
    def buffer(v):
        reshaped = isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "reshape"
        return isinstance(v, ast.Name) or (reshaped and isinstance(v.func.value, ast.Name))
    items = value.elts if isinstance(value, ast.Tuple) else [value]
    return all(isinstance(v, ast.Subscript) and buffer(v.value) for v in items)


# -- helpers over expressions ------------------------------------------------------------------

def _value(stmt):
    """What a statement computes: an assignment's value, or a call such as np.multiply(a, b, out=c)."""
    if isinstance(stmt, (ast.Assign, ast.AugAssign)):
        return stmt.value
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        return stmt.value
    return None


def _with_value(stmt, value):
    new = copy.deepcopy(stmt)
    new.value = value
    return new


def _payload(stmt):
    """The part two statements of the same form exchange when swapped: the value, or the call's
    arguments but for out=."""
    if isinstance(stmt, (ast.Assign, ast.AugAssign)):
        return "value", stmt.value
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        return "call " + ast.unparse(stmt.value.func), stmt.value.args
    return None, None


def _with_payload(stmt, payload):
    new = copy.deepcopy(stmt)
    if isinstance(new, ast.Expr):
        new.value.args = copy.deepcopy(payload)
    else:
        new.value = copy.deepcopy(payload)
    return new


def _is_product(node, y):
    """node multiplies y with something: y*..., ...*y, or np.multiply(y, ...)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return any(_same(side, y) for side in (node.left, node.right))
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "np.multiply":
        return any(_same(arg, y) for arg in node.args)
    return False


def _sum_terms(node):
    """[(sign, term)] of an Add/Sub chain; [(+1, node)] for anything else."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        sign = 1 if isinstance(node.op, ast.Add) else -1
        return _sum_terms(node.left) + [(sign, node.right)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return [(-sign, term) for sign, term in _sum_terms(node.operand)]
    return [(1, node)]


def _build_sum(terms):
    sign, first = terms[0]
    node = first if sign > 0 else ast.UnaryOp(ast.USub(), first)
    for sign, term in terms[1:]:
        node = ast.BinOp(node, ast.Add() if sign > 0 else ast.Sub(), term)
    return node


def _outermost_sum(root):
    """The first Add/Sub chain met walking down from root (breadth first), with a setter."""
    queue = [(root, None, None)]
    while queue:
        node, parent, field = queue.pop(0)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            return node, parent, field
        for name, child in ast.iter_fields(node):
            if isinstance(child, ast.AST) and not (isinstance(node, ast.Subscript) and name == "slice"):
                queue.append((child, node, name))  # not into indices: t0 + 1 is no term of the derivation
    return None, None, None


def _replace_in(stmt, old, new):
    """A copy of stmt with the subtree ``old`` (by identity in stmt) replaced by ``new``."""
    path = _path_to(stmt, old)
    copy_ = copy.deepcopy(stmt)
    if not path:
        return new
    node = copy_
    for field, index in path[:-1]:
        node = getattr(node, field) if index is None else getattr(node, field)[index]
    field, index = path[-1]
    if index is None:
        setattr(node, field, new)
    else:
        getattr(node, field)[index] = new
    return copy_


def _path_to(root, target):
    if root is target:
        return []
    for field, child in ast.iter_fields(root):
        children = child if isinstance(child, list) else [child]
        for i, c in enumerate(children):
            if isinstance(c, ast.AST):
                sub = _path_to(c, target)
                if sub is not None:
                    return [(field, i if isinstance(child, list) else None)] + sub
    return None


def _same(a, b):
    return ast.dump(a) == ast.dump(b)


def _is_one(node):
    return isinstance(node, ast.Constant) and node.value == 1


def _reads(node):
    """Subscript and Name nodes read in an expression (not stored)."""
    return [n for n in ast.walk(node) if isinstance(n, (ast.Subscript, ast.Name)) and isinstance(n.ctx, ast.Load)]


def _parse_expr(text):
    return ast.parse(text, mode="eval").body


# -- the mutation operators: each yields (operator, new statement) ------------------------------

def _sum_of(s):
    """(the outermost sum of an adjoint or local line, its signed terms), or (None, [])."""
    value = _value(s.node)
    if value is None or s.kind not in ("adjoint", "local"):
        return None, []
    chain, _, _ = _outermost_sum(value)
    return (chain, _sum_terms(chain)) if chain is not None else (None, [])


def drop_term(s):
    """A term of a sum left out; a term named d<state>_next is a dropped carry."""
    chain, terms = _sum_of(s)
    for k, (_, term) in enumerate(terms):
        rest = terms[:k] + terms[k + 1:]
        if not rest:
            continue
        op = "drop a carry" if isinstance(term, ast.Name) and term.id.endswith("_next") else "drop a term"
        yield op, _replace_in(s.node, chain, _build_sum(rest))


def flip_sign(s):
    """A term added instead of subtracted or the other way round."""
    chain, terms = _sum_of(s)
    for k in range(1, len(terms)):
        flipped = list(terms)
        flipped[k] = (-terms[k][0], terms[k][1])
        op = "1 - y**2 -> 1 + y**2" if _is_one(terms[0][1]) and isinstance(terms[k][1], ast.BinOp) and isinstance(
            terms[k][1].op, ast.Pow) else "flip a sign"
        yield op, _replace_in(s.node, chain, _build_sum(flipped))


def flip_augmented(s):
    """x -= y written as x += y, and the other way round (1 - y**2 computed as 1, then -= y**2)."""
    if not isinstance(s.node, ast.AugAssign) or s.kind not in ("adjoint", "local"):
        return
    op = s.node.op
    if isinstance(op, (ast.Add, ast.Sub)):
        new = copy.deepcopy(s.node)
        new.op = ast.Sub() if isinstance(op, ast.Add) else ast.Add()
        squared = isinstance(s.node.value, ast.BinOp) and isinstance(s.node.value.op, ast.Pow)
        yield ("1 - y**2 -> 1 + y**2" if squared and isinstance(op, ast.Sub) else "flip a sign"), new


def sigmoid_derivative(s):
    """y*(1 - y) written as y: the factor (1 - y) of a product dropped."""
    value = _value(s.node)
    if value is None or s.kind not in ("adjoint", "local"):
        return
    for node in ast.walk(value):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and _is_one(node.left)
                and isinstance(node.right, (ast.Name, ast.Subscript))):
            if any(_is_product(n, node.right) for n in ast.walk(value)):
                yield "y*(1 - y) -> y", _replace_in(s.node, node, ast.Constant(1))


def tanh_derivative(s):
    """1 - y**2 written as 1 + y**2, wherever it stands."""
    value = _value(s.node)
    if value is None or s.kind not in ("adjoint", "local"):
        return
    for node in ast.walk(value):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and _is_one(node.left)
                and isinstance(node.right, ast.BinOp) and isinstance(node.right.op, ast.Pow)):
            yield "1 - y**2 -> 1 + y**2", _replace_in(s.node, node, ast.BinOp(node.left, ast.Add(), node.right))


def zero_adjoint(s):
    """The only term of an adjoint, or a whole parameter gradient, left out."""
    value = _value(s.node)
    if value is None or s.kind not in ("adjoint", "local"):
        return
    chain, _, _ = _outermost_sum(value)
    if chain is not None and len(_sum_terms(chain)) > 1:
        return  # drop_term covers sums
    op = {"after": "drop a parameter gradient", "before": "drop a local derivative"}.get(s.place, "drop an adjoint")
    if isinstance(s.node, ast.Expr):  # np.multiply(a, b, out=c): c = 0 * a * b
        new = copy.deepcopy(s.node)
        new.value.args[0] = _parse_expr(f"0 * ({ast.unparse(new.value.args[0])})")
        yield op, new
    else:
        yield op, _with_value(s.node, _parse_expr(f"0 * ({ast.unparse(value)})"))


def wrong_step(s):
    """A value read at the wrong step: [t] -> [min(t + 1, T - 1)] (a later step, already computed
    in the backward loop; in a span's saved copy [t - t0] likewise), [t + 1] -> [t], and the
    slices [:-1] <-> [1:] outside the loop."""
    value = _value(s.node)
    if value is None or s.kind == "carry":
        return
    for node in _reads(value):
        if not isinstance(node, ast.Subscript):
            continue
        index = ast.unparse(node.slice)
        replacement = {"t": "min(t + 1, T - 1)", "t + 1": "t", ":-1": "1:", "1:": ":-1",
                       "t - t0": "min(t - t0 + 1, t1 - t0 - 1)"}.get(index)
        if replacement is None or (s.place == "loop") != (index in ("t", "t + 1", "t - t0")):
            continue
        new = copy.deepcopy(node)
        new.slice = ast.parse(f"_[{replacement}]", mode="eval").body.slice
        yield "read at the wrong step", _replace_in(s.node, node, new)


def shifted_sequence(s):
    """A local derivative computed before the loop from a sequence shifted by one step."""
    value = _value(s.node)
    if value is None or s.kind != "local":
        return
    for node in _reads(value):
        if isinstance(node, ast.Name) and node.id.endswith("_seq"):
            yield "read at the wrong step", _replace_in(s.node, node, _parse_expr(f"np.roll({node.id}, 1, axis=0)"))


def bad_carry(s):
    """The carry to step t-1: one dropped, one stale (from the wrong step), two states' swapped."""
    if s.kind != "carry":
        return
    targets = _names_of(s.node.targets[0])
    values = [ast.unparse(v) for v in (s.node.value.elts if isinstance(s.node.value, ast.Tuple) else [s.node.value])]
    for k, (target, value) in enumerate(zip(targets, values)):
        dropped = values[:k] + [f"0 * {value}"] + values[k + 1:]
        yield "drop a carry", _assign(targets, dropped)
        stale = values[:k] + [target] + values[k + 1:]
        yield "carry from the wrong step", _assign(targets, stale)
    for k in range(len(values) - 1):
        swapped = values[:k] + [values[k + 1], values[k]] + values[k + 2:]
        yield "swap two carries", _assign(targets, swapped)


def _assign(targets, values):
    return ast.parse(f"{', '.join(targets)} = {', '.join(values)}").body[0]


def transposed_weight_gradient(s):
    """dW computed as the transpose of the right product, reshaped to W's shape so it runs."""
    value = _value(s.node)
    if value is None or s.kind != "adjoint" or s.place != "after":
        return
    if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult) and isinstance(n.left, ast.Attribute)
           and n.left.attr == "T" for n in ast.walk(value)):
        code = ast.unparse(value)
        yield "transposed weight gradient", _with_value(
            s.node, _parse_expr(f"np.ascontiguousarray(({code}).T).reshape(({code}).shape)"))


def unsummed_gradient(s):
    """A bias gradient of the first batch row only; an elementwise parameter's gradient taken
    from one batch row, or from one step only (= instead of +=, or the first step's terms of a
    sum after the loop)."""
    value = _value(s.node)
    if value is None or s.kind != "adjoint":
        return
    for node in ast.walk(value):
        called = ast.unparse(node.func) if isinstance(node, ast.Call) else None
        if called == "_summed" and isinstance(node.args[0], ast.Name) and ast.unparse(node.args[1]) == "0":
            summed = node.args[0].id
            if summed.endswith("_flat"):  # a bias's (T * B, H) adjoints
                new = copy.deepcopy(node)
                new.args[0] = _parse_expr(f"{summed}[::B]")
                yield "bias gradient not summed over the batch", _replace_in(s.node, node, new)
            else:  # a (B, H) sum the loop added up
                yield "parameter gradient not summed over the batch", _replace_in(s.node, node, _parse_expr(f"({summed})[0]"))
        if called == "_summed_products":
            operands = [ast.unparse(a) for a in node.args]
            for kind, rows in (("the batch", "[:, :1]"), ("time", "[:1]")):
                yield f"parameter gradient not summed over {kind}", _replace_in(
                    s.node, node, _parse_expr(f"_summed_products({', '.join(f'({o}){rows}' for o in operands)})"))
    if isinstance(s.node, ast.AugAssign) and s.place == "loop" and isinstance(s.node.target, ast.Name):
        yield "parameter gradient not summed over time", ast.Assign([copy.deepcopy(s.node.target)],
                                                                    copy.deepcopy(s.node.value), lineno=0)


# The specific operators first: a mutant two operators make is named after the first.
OPERATORS = [sigmoid_derivative, tanh_derivative, flip_augmented, bad_carry, transposed_weight_gradient, unsummed_gradient,
             drop_term, flip_sign, zero_adjoint, wrong_step, shifted_sequence]


SWAPS = {"block": "swap two gates' adjoints", "let": "swap two adjoints", "local": "swap two local derivatives"}


def _reads_any(stmt, names):
    _, payload = _payload(stmt)
    nodes = payload if isinstance(payload, list) else [payload]
    return any(isinstance(n, ast.Name) and n.id in names for node in nodes for n in ast.walk(node))


def swaps(statements):
    """Two adjoints swapped: adjacent pre-activation (gate) adjoints, adjacent adjoints of the
    lets and states in the loop, and adjacent local derivatives computed before it."""
    groups = {}
    for s in statements:
        form, payload = _payload(s.node)
        if payload is None or s.kind not in ("adjoint", "local") or s.place == "after":
            continue
        if s.kind == "adjoint" and s.target.endswith("_prev"):
            continue  # carries to step t-1 are covered by bad_carry
        if s.kind == "local":
            group = "local"
        else:
            is_block = not all(isinstance(t, ast.Name) for t in getattr(s.node, "targets", [getattr(s.node, "target", None)]))
            group = "block" if is_block else "let"
        groups.setdefault((group, form, type(s.node).__name__), []).append(s)
    for (group, _, _), members in groups.items():
        for a, b in zip(members, members[1:]):
            between = {n for s in statements if a.line <= s.line < b.line for n in _assigned(s.node)}
            if _reads_any(a.node, _assigned(b.node) + sorted(between)) or _reads_any(b.node, between):
                continue  # swapping would read a name before the statement that binds it, or after a del
            if _commute(a.node, b.node):
                continue  # the same program: x *= u; x *= v is x *= v; x *= u
            yield SWAPS[group], [(a, _with_payload(a.node, _payload(b.node)[1])),
                                 (b, _with_payload(b.node, _payload(a.node)[1]))]


def _commute(a, b):
    """Two statements that give the same result in either order: the same statement, or two
    in-place multiplications of one array."""
    if ast.unparse(_payload(a)[1] if isinstance(a, ast.AugAssign) else a) == \
            ast.unparse(_payload(b)[1] if isinstance(b, ast.AugAssign) else b):
        return True
    both_products = all(isinstance(n, ast.AugAssign) and isinstance(n.op, ast.Mult) for n in (a, b))
    return both_products and _same(a.target, b.target)


def mutants(cell, source):
    """Every distinct mutant of the kernel source, in a stable order."""
    lines = source.splitlines(keepends=True)
    statements = backward_statements(source)
    seen, out = {source}, []

    def emit(operator, changes):
        new_lines = list(lines)
        for s, node in changes:
            indent = s.text[: len(s.text) - len(s.text.lstrip())]
            node = ast.fix_missing_locations(node)
            new_lines[s.line - 1] = indent + ast.unparse(node) + "\n"
        text = "".join(new_lines)
        if text in seen:
            return
        seen.add(text)
        first = changes[0][0]
        out.append(Mutant(cell, operator, first.line, "".join(lines[s.line - 1] for s, _ in changes).rstrip(),
                          "".join(new_lines[s.line - 1] for s, _ in changes).rstrip(), text))

    for s in statements:
        for operator in OPERATORS:
            for name, node in operator(s):
                emit(name, [(s, node)])
    for name, changes in swaps(statements):
        emit(name, changes)
    return out


def load(mutant):
    """The mutant as a module."""
    module = types.ModuleType(f"mutant_{mutant.cell}_{mutant.line}")
    exec(compile(mutant.source, f"<mutant {mutant}>", "exec"), module.__dict__)  # noqa: S102
    return module


def is_shape_error(error):
    """An error numpy raises for mismatched shapes, never one of the kernel's own checks."""
    return (isinstance(error, ValueError) and bool(SHAPE_ERRORS.search(str(error)))
            and not re.match(r"^[\w\[\]]+: expected", str(error)))
