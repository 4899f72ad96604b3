"""Reverse-mode derivation over a cell's named nodes.

Each vector's adjoint is the sum over its consumers of ``adjoint(consumer) * d consumer/d
vector``, one named node at a time, the way the textbook writes an LSTM's backward pass.
Derivatives come out in output form (sigmoid' = y(1-y), tanh' = 1-y^2) because every
function application that a named node defines is replaced by that node's symbol.

The result, a :class:`Derivation`, is a plain value: the printers, the document writer and the
emitter all read it and none of them differentiates anything.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass

import sympy

from .functions import positive, relu
from .spec import CITATION, GATE_FUNCTIONS, SUPPORTED_FUNCTIONS, Affine, Cell, Let, Note, SpecError
from .written import written_form

__all__ = ["derive", "Derivation", "Equation", "Step", "Term", "MatTerm", "ParamGrad", "adjoint"]


def adjoint(symbol):
    """dL/dv for a vector v, as a symbol named d<v>."""
    return sympy.Symbol(f"d{symbol.name}", real=True)  # its name, what str() prints, without a printer made for it


def primal(adjoint_symbol):
    """The name of v for dL/dv: what adjoint() was given."""
    return str(adjoint_symbol)[1:]


class MatTerm(sympy.Symbol):
    """W_v^T da: what an affine node passes back to its input v, a matrix product."""

    def __new__(cls, affine: Affine, vector):
        weight = affine.weights[affine.inputs.index(vector)]
        obj = super().__new__(cls, f"{weight}^T*d{affine.name}", real=True)
        obj.affine = affine.name
        obj.weight = weight
        return obj


@dataclass(frozen=True)
class Equation:
    """A forward equation: ``lhs = rhs``; for an affine, lhs lists its blocks."""

    number: int
    lhs: tuple
    rhs: sympy.Expr | None  # None for an affine node
    node: object  # the Affine or Let it comes from
    shown: sympy.Expr | None = None  # rhs as the script writes it, unevaluated (written.written_form)


@dataclass(frozen=True)
class Term:
    """One consumer's share of an adjoint: ``adjoint * local`` (or a matrix term)."""

    consumer: str  # the consumer's name, "loss" or "next step"
    adjoint: sympy.Symbol | None  # the consumer's adjoint; None for a matrix term
    local: sympy.Expr  # d consumer / d target in output form, or the MatTerm
    pre: sympy.Expr | None = None  # the consumer's pre-activation, whose adjoint this term reads

    @property
    def contribution(self):
        return self.local if self.adjoint is None else self.adjoint * self.local

    def text(self, printer, times=lambda local: "*", grouped="({})"):
        """The term in the textbook's order, local derivative first: o*dh, not dh*o; the adjoint
        alone for a local derivative of 1, negated for -1. times(local) joins a local derivative to
        the adjoint, and grouped puts one that is a sum in parentheses (the document's TeX: \\odot
        and \\left( \\right))."""
        if self.adjoint is None:
            return printer.doprint(self.local)
        adj = printer.doprint(self.adjoint)
        if self.local == 1:
            return adj
        if self.local == -1:
            return f"-{adj}"
        local = printer.doprint(self.local)
        if isinstance(self.local, sympy.Add):
            local = grouped.format(local)
        return f"{local}{times(self.local)}{adj}"


@dataclass(frozen=True)
class Step:
    """dL/d target = sum of terms = result."""

    number: int
    target: sympy.Symbol
    kind: str  # "state", "let", "block", "carry", "param", "input"
    terms: tuple
    result: sympy.Expr

    @property
    def adjoint(self):
        return adjoint(self.target)

    def text(self, printer):
        """The result as the sum of its terms in order (ds = o*dh + ds_next); 0 for none."""
        return summed([t.text(printer) for t in self.terms])


def summed(texts, empty="0"):
    """Terms' texts as one sum, a term's leading minus the sum's (a - b, not a + -b); empty for none."""
    return " + ".join(t for t in texts if t).replace("+ -", "- ") or empty


@dataclass(frozen=True)
class ParamGrad:
    """dL/dP as a sum over time and batch of per-step quantities."""

    number: int
    name: str
    kind: str  # "weight", "bias" or "elementwise"
    affine: str | None
    vector: sympy.Symbol | None  # what the weight multiplies


@dataclass(frozen=True)
class Derivation:
    cell: Cell
    forward: tuple  # Equation
    steps: tuple  # Step, in the order the backward pass computes them
    param_grads: tuple  # ParamGrad

    @property
    def equations(self):
        return len(self.forward) + len(self.steps) + len(self.param_grads)

    def step_for(self, symbol):
        return next(s for s in self.steps if s.target == symbol)

    def numbered(self):
        """(number, what it computes) for every numbered equation, in order."""
        out = [(eq.number, ", ".join(map(str, eq.lhs))) for eq in self.forward]
        # a parameter's per-step, per-row adjoint, told apart from its sum: dp_i(t, j), then dp_i
        out += [(s.number, f"{s.adjoint}(t, j)" if s.kind == "param" else str(s.adjoint)) for s in self.steps]
        out += [(g.number, f"d{g.name}") for g in self.param_grads]
        return out

    def references(self):
        """Names a note may cite as {name}: forward values, adjoints and parameter gradients."""
        refs = {}
        for number, what in self.numbered():
            for name in what.split(", "):
                refs.setdefault(name.removesuffix("(t, j)"), number)
        return refs


def derive(cell: Cell, warn=None) -> Derivation:
    """The cell's derivation, once validate() has found the cell valid; warn, where given, is
    called first with each of its warnings (Cell.warnings, which validates it), before a long cell
    makes the derivation wait."""
    if warn is None:
        cell.validate()
    else:
        for warning in cell.warnings():  # validates the cell first
            warn(warning)
    cell = named_block_calls(cell)
    named = cell.output_form()
    _check_denominators(cell, named)
    forward = _forward_equations(cell)
    first = len(forward) + 1  # the equations are numbered on from the forward ones
    steps = [Step(n, *step) for n, step in enumerate(_early_blocks(list(_backward_steps(cell, named))), first)]
    grads = [ParamGrad(n, *grad) for n, grad in enumerate(_parameter_gradients(cell), first + len(steps))]
    d = Derivation(cell, tuple(forward), tuple(steps), tuple(grads))
    _check_citations(d)
    return d


def _check_citations(d):
    """A note's {name} must name a value an equation computes: a typo would reach the document."""
    refs = d.references()
    for note in d.cell.notes:
        for m in CITATION.finditer(note):
            name = m.group(1)
            if name is None or name in refs or not isinstance(note, Note):
                continue
            close = difflib.get_close_matches(name, refs, n=1)
            guess = f"; did you mean {{{close[0]}}}?" if close else ""
            raise SpecError(f"{note.where}: the note cites {{{name}}}, but no equation computes {name}{guess} "
                            "(write {{ and }} for a brace itself)")


def _check_denominators(cell, named):
    """A denominator that is zero once the calls that lets compute are read as those lets (named:
    the output form; f - sigmoid(a) with f = sigmoid(a)) would reach the kernel as SymPy's complex
    infinity, a name NumPy does not know: refused, naming the let that makes it zero."""
    for let in cell.lets:
        others = {call: v for call, v in named.items() if v != let.symbol}
        for base in [p.base for p in let.expr.atoms(sympy.Pow) if p.exp.is_negative]:
            if base.xreplace(others) != 0:
                continue
            reads = [n for n in cell.lets if n.symbol in others.values() and base.has(n.expr)]
            why = " and ".join(f"{n.expr} as {n.symbol} (declared at {n.where})" for n in reads)
            raise SpecError(f"{let.where}: '{let.symbol}' divides by {base}, which is 0 at every value once the "
                            f"derivation reads {why}, as it reads every call a let computes; write "
                            f"'{let.symbol}' without that denominator")


def named_block_calls(cell: Cell) -> Cell:
    """The cell with each sigmoid or tanh of a block that no node names named, as the textbook
    names g for tanh(a_g): c = f*c_prev + i*tanh(a_g) becomes g = tanh(a_g), then c = f*c_prev
    + i*g. The backward pass then passes through the gate like any other, and the kernel
    activates it with its affine's other gates. The cell itself if there is none."""
    named, made = cell, []  # made: (new let, the let whose expression held the call)
    while (found := _unnamed_block_call(named)) is not None:
        k, call = found
        named = next(trial for name in _names_for(call, named.blocks, {let.expr for let in named.lets})
                     if (trial := named.with_let(name, call, k)) is not None)
        made.append((named.nodes[k], named.nodes[k + 1].symbol))
    if made:
        named.notes = list(cell.notes) + [
            f"`{let.symbol} = {let.expr}` is named here for the derivation{_not_the_plain_gate(named, let)}: the "
            f"script writes it inside `{reader}`, and naming it lets the backward pass go through it like any gate."
            for let, reader in made]
    return named


def _not_the_plain_gate(cell, let):
    """" (not f = sigmoid(a_f), which the script names)" for sigmoid_f = sigmoid(a_f - 1), whose name
    could read as the plain gate's; "" where the cell names no plain gate of its block."""
    blocks = [b for b in cell.blocks if let.expr.args[0].has(b)]
    plain = next((other for other in cell.lets if len(blocks) == 1 and other.symbol != let.symbol
                  and other.expr == type(let.expr)(blocks[0])), None)
    return f" (not `{plain.symbol} = {plain.expr}`, which the script names)" if plain is not None else ""


def _unnamed_block_call(cell):
    """(index of the first node that reads it, call): an innermost sigmoid or tanh of a block (of
    no other function: tanh(softplus(a_g)) is no g) inside a let's expression that no let is; None
    if there is none."""
    named = {let.expr for let in cell.lets}
    for k, node in enumerate(cell.nodes):
        if not isinstance(node, Let):
            continue
        calls = [c for c in node.expr.atoms(*GATE_FUNCTIONS)
                 if c != node.expr and c not in named and not c.args[0].has(*SUPPORTED_FUNCTIONS.values())
                 and any(c.args[0].has(b) for b in cell.blocks)]
        if calls:  # in the order of the blocks they read, as the affine lists its gates
            return k, min(calls, key=lambda c: ([j for j, b in enumerate(cell.blocks) if c.args[0].has(b)],
                                                 sympy.default_sort_key(c)))
    return None


def _names_for(call, blocks, defined=()):
    """Names to try, best first: g for tanh(a_g), then tanh_g, tanh_g2, tanh_g3, ... (the kernel
    names check of the cell refuses keywords, builtins and names taken). defined: the lets'
    expressions; where one is the plain gate (sigmoid(a_f)), a call of more (sigmoid(a_f - 1)) is
    not given the plain gate's textbook name f."""
    read = [b for b in blocks if call.args[0].has(b)]
    stems = [str(b).removeprefix("a_") for b in read]
    base = f"{type(call).__name__}_{'_'.join(stems)}"
    plain = len(read) == 1 and call.args[0] != read[0] and type(call)(read[0]) in defined
    if (len(read) == 1 and str(read[0]).startswith("a_") and stems[0].isidentifier() and not stems[0].startswith("_")
            and not plain):
        yield stems[0]  # not a_2's 2, nor a__x's _x: the kernel keeps names with _ for itself
    yield base
    yield from (f"{base}{n}" for n in itertools.count(2))


def _forward_equations(cell):
    equations = []
    for k, node in enumerate(cell.nodes, start=1):
        if isinstance(node, Affine):
            equations.append(Equation(k, tuple(node.blocks), None, node))
        else:
            shown = written_form(cell, node)
            equations.append(Equation(k, (node.symbol,), node.expr, node, node.expr if shown is None else shown))
    return equations


def _consumer_terms(cell, vector, later_nodes, named):
    """The terms dL/d vector receives from the nodes after it within one step."""
    terms = []
    for node in later_nodes:
        if isinstance(node, Let):
            if vector not in node.expr.free_symbols:  # no term: diff would only say 0, at a cost
                continue
            block = _pre_activation_block(cell, node) if vector not in cell.blocks else None
            if block is not None:  # p*da rather than y*(1 - y)*p*dy: see _pre_activation_block
                pre = node.expr.args[0]
                local = _fewest_operations(sympy.diff(pre, vector))
                if local != 0:
                    terms.append(Term(str(node.symbol), adjoint(block), _in_output_form(local, named), pre))
                continue
            local = _fewest_operations(sympy.diff(node.expr, vector))
            if local != 0:
                terms.append(Term(str(node.symbol), adjoint(node.symbol), _in_output_form(local, named)))
        elif vector in node.inputs:
            terms.append(Term(node.name, None, MatTerm(node, vector)))
    return terms


def _in_output_form(local, named):
    """The local derivative with each call a let defines read as the let: sigmoid(a_i) as i.

    xreplace, not subs: for a call (not SymPy's exp, which the cells refuse) subs finds just what
    xreplace finds, the call itself, at about ten times the cost."""
    return local.xreplace(named)


def _fewest_operations(derivative):
    """The derivative over one denominator where that takes fewer operations: d/df f/(f + i) is
    i/(f + i)**2, not 1/(f + i) - f/(f + i)**2, two terms that cancel where i << f and lose all
    their digits (SymPy's diff writes the quotient rule out, term by term)."""
    together = sympy.together(derivative)
    candidates = [derivative, together, _relu_products_read_as_relu(together)]
    return min(candidates, key=sympy.count_ops)


def _relu_products_read_as_relu(expr):
    """expr with each term u*[relu(u) > 0] of its numerator written relu(u), which it equals: the
    quotient rule writes softsign's a/(1 + relu(a) + relu(-a)) as a numerator whose terms cancel
    to 1 only so read. expr itself where no term is such a product."""
    slopes = [s for s in expr.atoms(positive) if isinstance(s.args[0], relu)]
    if not slopes:
        return expr
    numerator, denominator = expr.as_numer_denom()
    terms = [_relu_product_read_as_relu(term, slopes) for term in sympy.Add.make_args(sympy.expand(numerator))]
    return sympy.factor_terms(sympy.Add(*terms)) / denominator


def _relu_product_read_as_relu(term, slopes):
    for slope in slopes:
        u = slope.args[0].args[0]
        rest = term / (u * slope)
        if not rest.has(slope) and rest.as_numer_denom()[1].is_number:  # u and its slope were factors
            return rest * slope.args[0]
    return term


def _pre_activation_block(cell, let):
    """The block whose adjoint is also the adjoint of a function's whole pre-activation, or None.

    In y = sigmoid(a + p*c_prev), with a a block that nothing else reads, da = y*(1 - y)*dy is
    dL/d(a + p*c_prev) too. Whatever else the pre-activation reads (a peephole's c_prev and p, the
    GRU's r in a_xn + r*a_hn) then receives p*da rather than y*(1 - y)*p*dy: the textbook's form,
    and the product the backward pass has formed already. Blocks keep their own form (a_hn's
    adjoint is r*da_xn either way)."""
    if not isinstance(let.expr, tuple(SUPPORTED_FUNCTIONS.values())) or not isinstance(let.expr.args[0], sympy.Add):
        return None
    pre = let.expr.args[0]
    return next((b for b in cell.blocks
                 if b in pre.free_symbols and sympy.diff(pre, b) == 1 and cell.readers(b) == [let]), None)


def _backward_steps(cell, named):
    """Yields (target, kind, terms, result), last node first, each local derivative in the output
    form named."""
    new_states = {let.symbol: state for state, let in cell.updates.items()}
    nodes = cell.nodes
    for k in reversed(range(len(nodes))):
        node, later = nodes[k], nodes[k + 1:]
        targets = node.blocks if isinstance(node, Affine) else [node.symbol]
        for target in targets:
            terms = _consumer_terms(cell, target, later, named)
            kind = "block" if isinstance(node, Affine) else "let"
            if target in new_states:
                kind = "state"
                terms += _state_terms(cell, new_states[target])
            yield target, kind, tuple(terms), _sum(terms)
    for state in cell.states:
        prev = cell.prev(state)
        terms = _consumer_terms(cell, prev, nodes, named)
        yield prev, "carry", tuple(terms), _sum(terms)
    for p in cell.params:
        terms = _consumer_terms(cell, p, nodes, named)
        yield p, "param", tuple(terms), _sum(terms)
    x = cell.inputs[0]
    terms = _consumer_terms(cell, x, nodes, named)
    yield x, "input", tuple(terms), _sum(terms)


def _early_blocks(steps):
    """The steps, each block's moved up to just after its gate's when an earlier step reads the
    block's adjoint: dc = p_o*da_o + ... reads da_o, so do, da_o, then dc."""
    for target, kind, terms, _ in [s for s in steps if s[1] == "block"]:
        position = next(j for j, s in enumerate(steps) if s[0] == target)
        if any(t.adjoint == adjoint(target) for s in steps[:position] for t in s[2]):
            gate = next(j for j, s in enumerate(steps) if adjoint(s[0]) == terms[0].adjoint)
            steps.insert(gate + 1, steps.pop(position))
    return steps


def _state_terms(cell, state):
    """A new state also feeds the loss (if it is the output) and the next step."""
    terms = []
    if state == cell.output_state:
        terms.append(Term("loss", sympy.Symbol("dy", real=True), sympy.Integer(1)))
    terms.append(Term("next step", sympy.Symbol(f"d{state}_next", real=True), sympy.Integer(1)))
    return terms


def _sum(terms):
    return sympy.Add(*[t.contribution for t in terms])


def _parameter_gradients(cell):
    """Yields (name, kind, affine, vector) for every parameter, in declaration order."""
    for a in cell.affines:
        for weight, vector in zip(a.weights, a.inputs):
            yield weight, "weight", a.name, vector
        for bias in a.biases:
            yield bias, "bias", a.name, None
    for p in cell.params:
        yield p.name, "elementwise", None, p
