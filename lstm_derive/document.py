"""Printing a derivation: a Markdown document, terminal text and LaTeX, all from one model.

:func:`sections` turns a :class:`~lstm_derive.derive.Derivation` (and the text of the kernel
emitted from it) into a list of sections made of a few kinds of block: prose, numbered
equations, a dataflow graph, bullet notes, a table. Each section has one builder below; each
output form has one small renderer. All three forms read the same value the kernels come from,
so the explanation cannot drift from the code.

Markdown is written for GitHub: display math in ``$$`` blocks, each ``\\\\`` at the end of a
line, equation numbers as ``\\qquad (n)`` (GitHub's MathJax does not number ``\\tag``), no
inline math, and the dataflow graph as a ``mermaid`` block.
"""

from __future__ import annotations

import io
import re
import textwrap
import tokenize
from dataclasses import dataclass

import sympy
from sympy.printing.latex import LatexPrinter, greek_letters_set
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .derive import Derivation, MatTerm, Step, summed
from .spec import CITATION, GATE_FUNCTIONS, SUPPORTED_FUNCTIONS, Affine, exp, positive, relu, sigmoid, softplus

__all__ = ["derivation_text", "derivation_markdown", "derivation_latex", "sections", "kernel_lines",
           "provenance", "step_text", "expr_text", "expr_latex"]


# -- printers of expressions ------------------------------------------------------------------


class _TextPrinter(StrPrinter):
    def __init__(self, blocks):
        super().__init__({"order": "none"})
        self.blocks = blocks

    def _print_MatTerm(self, expr):
        return f"{expr.weight}^T·{self.blocks[expr.affine]}"

    def _print_positive(self, expr):
        return f"[{self._print(expr.args[0])} > 0]"

    def _print_Float(self, expr):  # 0.5, as the script writes it, not SymPy's 0.500000000000000
        return repr(float(expr))

    def _print_softplus_slope(self, expr):
        return f"(1 - exp(-{self.parenthesize(expr.args[0], PRECEDENCE['Mul'], strict=False)}))"


class _TexPrinter(LatexPrinter):
    """Elementwise products as \\odot; names with subscripts; W^T [da...] for matrix terms. Terms
    and factors in their stored order, as the text form has them (a forward equation's as the
    script writes it), not sorted again."""

    def __init__(self, blocks):
        super().__init__({"mul_symbol": r" \odot ", "order": "none"})
        self.blocks = blocks

    def _print_Symbol(self, expr, style="plain"):
        return _tex_name(expr.name)

    def _print_MatTerm(self, expr):
        return f"{_tex_name(expr.weight)}^{{\\top}} {self.blocks[expr.affine]}"

    def _print_Mul(self, expr):
        """A number before the vectors it scales, not joined by \\odot (which is for two vectors):
        0.5 m_prev, -2 h_prev \\odot k. A fraction's number is SymPy's (m_prev/2)."""
        numbers = [f for f in expr.args if f.is_Number]
        if len(numbers) != 1 or numbers[0] in (1, -1) or not (numbers[0].is_Integer or numbers[0].is_Float):
            return super()._print_Mul(expr)
        number = numbers[0]
        rest = [f for f in expr.args if f is not number]
        below = [f for f in rest if f.is_Pow and f.exp.is_negative]
        above = [f for f in rest if f not in below]
        top = self._print(abs(number))
        if above:
            vectors = above[0] if len(above) == 1 else sympy.Mul(*above, evaluate=False)
            top += f" {self.parenthesize(vectors, PRECEDENCE['Mul'], strict=True)}"
        if below:
            top = f"\\frac{{{top}}}{{{self._print(sympy.Mul(*(1 / f for f in below)))}}}"
        return ("- " if number < 0 else "") + top


def _tex_name(name):
    """h_prev -> h_{\\text{prev}}, da_i -> da_{i}, W_x -> W_{x}; a name of several letters upright
    (tanh_a -> \\mathrm{tanh}_{a}, not the product t a n h), a Greek one as its letter."""
    head, _, tail = name.partition("_")
    head = _tex_head(head)
    if not tail:
        return head
    if len(tail) > 1 and tail.isalpha():
        return f"{head}_{{\\text{{{tail}}}}}"
    parts = [part if len(part) <= 1 or not part.isalpha() else f"\\text{{{part}}}" for part in tail.split("_")]
    return f"{head}_{{{','.join(parts)}}}"


def _tex_head(head):
    """A name's part before its subscript: one letter, or an adjoint's d and one letter, as it is;
    an adjoint's d before a longer name (drh -> d\\mathrm{rh})."""
    if head.lower() in greek_letters_set:
        return sympy.latex(sympy.Symbol(head))  # as SymPy spells it: alpha -> \\alpha, omicron -> o
    if len(head) <= 1 or len(head) == 2 and head[0] == "d":
        return head
    if head[0] == "d":
        return "d" + _tex_head(head[1:])
    return f"\\mathrm{{{head}}}"


def _tex_stack(tex_items):
    """A column of vectors; each \\\\ ends its line, which GitHub's math needs."""
    if len(tex_items) == 1:
        return tex_items[0]
    return "\\begin{bmatrix} " + " \\\\\n".join(tex_items) + " \\end{bmatrix}"


def _block_names(d, tex=False):
    """An affine's adjoint, as the stacked adjoints of its blocks: [da_i; da_f; ...]."""
    names = {}
    for a in d.cell.affines:
        parts = [f"d{b}" for b in a.blocks]
        if tex:
            names[a.name] = _tex_stack([_tex_name(p) for p in parts])
        else:
            names[a.name] = parts[0] if len(parts) == 1 else f"[{'; '.join(parts)}]"
    return names


def expr_text(expr, d: Derivation):
    return _TextPrinter(_block_names(d)).doprint(expr)


def expr_latex(expr, d: Derivation):
    return _TexPrinter(_block_names(d, tex=True)).doprint(expr)


def step_text(step: Step, d: Derivation):
    """One backward step in output form, the way the kernel computes it: ``ds = o*dh + ds_next``."""
    return f"{step.adjoint} = {step.text(_TextPrinter(_block_names(d)))}"


def _step_tex(step: Step, d):
    """Step.text in TeX: the same terms in the same order, local derivative first."""
    printer = _TexPrinter(_block_names(d, tex=True))
    parts = []
    for term in step.terms:
        adj = None if term.adjoint is None else printer.doprint(term.adjoint)
        if adj is None:
            parts.append(printer.doprint(term.local))
        elif term.local == 1:
            parts.append(adj)
        elif term.local == -1:
            parts.append(f"-{adj}")
        else:
            local = printer.doprint(term.local)
            if isinstance(term.local, sympy.Add):
                local = f"\\left({local}\\right)"
            parts.append(f"{local} {adj}" if term.local.is_Number else f"{local} \\odot {adj}")
    return summed(parts)


# -- the document model -----------------------------------------------------------------------


@dataclass(frozen=True)
class Prose:
    """A paragraph; `code` spans are allowed. plain: the terminal's wording, where it differs (the
    terminal's equations write an elementwise product as * or ⊙, the documents' as ⊙)."""

    text: str
    plain: str | None = None


@dataclass(frozen=True)
class Math:
    """A displayed equation: TeX for Markdown and LaTeX, lines of Unicode text for the terminal."""

    tex: str
    text: tuple  # the first line is "lhs = ...", the others continue with "= ..."
    number: int | None = None


@dataclass(frozen=True)
class Bullets:
    items: tuple


@dataclass(frozen=True)
class FlowNode:
    id: str
    label: str
    kind: str  # "input", "prev", "param", "affine", "let", "state", "loss"


@dataclass(frozen=True)
class FlowEdge:
    source: str
    target: str
    label: str = ""
    recurrent: bool = False  # a new state becoming the next step's previous state


@dataclass(frozen=True)
class Flow:
    nodes: tuple
    edges: tuple


@dataclass(frozen=True)
class Unrolled:
    """Two steps of the recurrence: the forward pass, and the gradients that reach step t's new
    states (dy from its own loss, d<s>_next from the steps after it)."""

    states: tuple
    output: str

    def at(self, t):
        return ", ".join(f"{s}({t})" for s in self.states)

    def nexts(self):
        return ", ".join(f"d{s}_next" for s in self.states)


@dataclass(frozen=True)
class Ref:
    """A table cell's text that links somewhere in Markdown."""

    text: str
    href: str


@dataclass(frozen=True)
class Table:
    header: tuple
    rows: tuple  # each cell: a str, or a tuple of Ref


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple


# -- the sections, one builder each ------------------------------------------------------------


def sections(d: Derivation, kernel_text=None, kernel_path="kernel.py"):
    """The document's sections; the kernel table only when the kernel's text is given."""
    out = [
        _forward_section(d),
        _dataflow_section(d),
        _loss_section(d),
        _backward_section(d),
        _carries_section(d),
        _gradients_section(d),
        _notes_section(d),
    ]
    if kernel_text is not None:
        out.append(_kernel_section(d, kernel_text, kernel_path))
    return out


def _forward_section(d):
    cell = d.cell
    prevs = _join([f"`{s}_prev`" for s in cell.states])
    are = "are the states" if len(cell.states) > 1 else "is the state"
    defined = [text.format(a=_placeholder(cell)) for function, text in _DEFINITIONS.items() if _uses(cell, function)]
    sigma = f", and {'; '.join(defined)}" if defined else ""
    renamed = [f"`{let.symbol}` is the new `{s}`, {s}(t)" for s, let in cell.updates.items() if str(let.symbol) != s]
    new = f" {'; '.join(renamed)[0].upper()}{'; '.join(renamed)[1:]}." if renamed else ""
    positive = _join([f"`{s}`" for s in cell.positive_states]) if cell.positive_states else ""
    if positive:  # a normaliser the cell divides by: the derivation holds only where it stays above 0
        many = len(cell.positive_states) > 1
        new += (f" {positive} {'are' if many else 'is'} declared positive: the cell needs "
                f"{'them' if many else 'it'} above 0 (a normaliser it divides by), as the equations below assume.")

    def intro(written):
        return (f"One step. `{cell.inputs[0]}` is the input x(t); {prevs} {are} of step t-1.{new} "
                "Every named vector but the input has H components (the input has D); products of "
                f"vectors are elementwise (written {written}), only affine maps multiply by a matrix{sigma}.")

    blocks = [Prose(intro("⊙ in the equations"), plain=intro("* or ⊙ in the equations; a matrix product, ·"))]
    return Section("Forward pass", tuple(blocks + [_forward_math(eq, d) for eq in d.forward] + _shapes(d)))


# What the functions a cell may call compute, in the forward section's words.
_DEFINITIONS = {sigmoid: "σ (sigmoid) is the logistic function 1/(1 + exp(-{a}))",
                relu: "relu({a}) = max({a}, 0), whose derivative [{a} > 0] is 1 where {a} > 0 and 0 elsewhere",
                softplus: "softplus({a}) = log(1 + exp({a}))"}

# Each function's derivative in output form, from its stored output y: (the rule, the form in y).
_OUTPUT_FORMS = {sigmoid: ("σ'({a}) = σ({a})(1 - σ({a}))", "{v}(1 - {v})"),
                 sympy.tanh: ("tanh'({a}) = 1 - tanh({a})²", "1 - {v}²"),
                 relu: ("relu'({a}) = [{a} > 0]", "[{v} > 0]"),
                 softplus: ("softplus'({a}) = 1/(1 + exp(-{a})) = 1 - exp(-softplus({a}))", "1 - exp(-{v})"),
                 exp: ("exp'({a}) = exp({a})", "{v}")}


def _placeholder(cell):
    """The argument the rules above are written in: a, unless the cell names a vector a that some
    call reads as part of its argument (an IndRNN's relu(a + u*h_prev)), where a rule in a would
    read as one about that vector."""
    names = {str(s) for s in cell.inputs + cell.params + cell.blocks + [let.symbol for let in cell.lets]}
    names |= {f"{s}_prev" for s in cell.states} | set(cell.parameter_names())
    calls = {c for let in cell.lets for c in let.expr.atoms(*_OUTPUT_FORMS)}
    if all(str(c.args[0]) == "a" for c in calls):  # rnn's h = tanh(a): the rule is about a itself
        names.discard("a")
    return next(p for p in ("a", "s", "q", "w", "y", "arg") if p not in names)


def _unnamed_call(d):
    """The first call of a function of the language that no let names (tanh(c) in h = o*tanh(c)), or None."""
    named = {let.expr for let in d.cell.lets}
    for let in d.cell.lets:
        calls = sorted(let.expr.atoms(*_OUTPUT_FORMS), key=sympy.default_sort_key)
        found = next((c for c in calls if c not in named), None)
        if found is not None:
            return found
    return None


def _uses(cell, function):
    return any(let.expr.has(function) for let in cell.lets)


def _shapes(d):
    """The affine maps' matrices: their shapes, and which rows hold which block."""
    parts = []
    for eq in d.forward:
        a = eq.node
        if not isinstance(a, Affine):
            continue
        k = f"{len(a.blocks)}H" if len(a.blocks) > 1 else "H"
        sizes = _join([f"`{w}` is {k} × {'D' if v in d.cell.inputs else 'H'}" for w, v in zip(a.weights, a.inputs)]
                      + [f"`{b}` has {k} entries" for b in a.biases])
        rows = f"; their rows hold {_join([f'`{b}`' for b in a.blocks])} in this order, H each" if len(a.blocks) > 1 else ""
        parts.append(f"in ({eq.number}), {sizes}{rows}")
    params = [f"`{p}`" for p in d.cell.params]
    if params:  # elementwise parameters (peepholes) have no affine map to describe them
        parts.append(f"{_join(params)} {'are parameter vectors' if len(params) > 1 else 'is a parameter vector'} "
                     "of H entries, learned like the weights and used elementwise")
    if not parts:
        return []
    text = "; ".join(parts)
    names = [str(n) for eq in d.forward if isinstance(eq.node, Affine) for n in (*eq.node.weights, *eq.node.biases)]
    two = next((n for n in names if "_" in n.partition("_")[2]), None)  # W_n_x: two subscripts
    comma = (f" The equations write a name with two subscripts with a comma between them: `{two}` is "
             f"{two.split('_')[0]} with the subscript {','.join(two.split('_')[1:])}.") if two else ""
    return [Prose(text[0].upper() + text[1:] + "." + comma)]


def _forward_math(eq, d):
    if eq.rhs is not None:
        name = str(eq.lhs[0])
        return Math(f"{_tex_name(name)} = {expr_latex(eq.shown, d)}",
                    (f"{name} = {expr_text(eq.shown, d)}",), eq.number)
    a = eq.node
    tex_terms = [f"{_tex_name(w)} {_tex_name(str(v))}" for w, v in zip(a.weights, a.inputs)]
    text_terms = [f"{w}·{v}" for w, v in zip(a.weights, a.inputs)]
    lhs_tex = _tex_stack([_tex_name(str(b)) for b in a.blocks])
    lhs_text = str(a.blocks[0]) if len(a.blocks) == 1 else f"[{'; '.join(map(str, a.blocks))}]"
    tex = f"{lhs_tex} = {' + '.join(tex_terms + [_tex_name(b) for b in a.biases])}"
    text = f"{lhs_text} = {' + '.join(text_terms + list(a.biases))}"
    return Math(tex, (text,), eq.number)


def _dataflow_section(d):
    return Section("Dataflow", (_flow(d),))


_FLOW_CAPTION = {
    "graph": ("Values flow along the arrows within step t; an arrow out of an affine map carries one of "
              "its blocks. The dotted arrows are the recurrence: a new state becomes the previous state "
              "of step t+1. Rectangles are affine maps, rounded boxes elementwise nodes, double-edged "
              "boxes new states{params}; the input, the previous states and the loss are pills."),
    "list": ("Each value on the left is computed within step t from those on its right (an affine map's "
             "outputs are its blocks); a new state becomes the previous state of step t+1."),
}


def _flow(d):
    """The cell as a graph: inputs and previous states, affine maps, lets, new states, the loss."""
    cell = d.cell
    new_states = {let.symbol: s for s, let in cell.updates.items()}
    ids = {x: f"in_{x}" for x in cell.inputs}
    ids.update({cell.prev(s): f"prev_{s}" for s in cell.states})
    ids.update({p: f"par_{p}" for p in cell.params})
    nodes = [FlowNode(f"in_{x}", str(x), "input") for x in cell.inputs]
    nodes += [FlowNode(f"prev_{s}", f"{s}_prev", "prev") for s in cell.states]
    nodes += [FlowNode(f"par_{p}", str(p), "param") for p in cell.params]
    edges, block_of = [], {}
    for eq in d.forward:
        node = eq.node
        if isinstance(node, Affine):
            nid = f"aff_{node.name}"
            nodes.append(FlowNode(nid, f"{node.name}: {_forward_math(eq, d).text[0]}", "affine"))
            edges += [FlowEdge(ids[v], nid) for v in node.inputs]
            block_of.update({b: nid for b in node.blocks})
            continue
        nid = f"n_{node.symbol}"
        kind = "state" if node.symbol in new_states else "let"
        nodes.append(FlowNode(nid, _forward_math(eq, d).text[0], kind))
        for v in _ordered(cell, node.expr.free_symbols):
            edges.append(FlowEdge(block_of[v], nid, str(v)) if v in block_of else FlowEdge(ids[v], nid))
        ids[node.symbol] = nid
    out = cell.updates[cell.output_state].symbol
    nodes.append(FlowNode("loss", "l(t)", "loss"))
    edges.append(FlowEdge(ids[out], "loss", "output"))
    edges += [FlowEdge(ids[cell.updates[s].symbol], f"prev_{s}", "next step", True) for s in cell.states]
    return Flow(tuple(nodes), tuple(edges))


def _ordered(cell, symbols):
    """Symbols in declaration order: input, previous states, parameters, then the nodes."""
    order = list(cell.inputs) + [cell.prev(s) for s in cell.states] + list(cell.params)
    for node in cell.nodes:
        order += node.blocks if isinstance(node, Affine) else [node.symbol]
    return [v for v in order if v in symbols]


def _shared_note(d):
    """For a let of parameters alone (lam = sigmoid(p)), the same at every step: its adjoint in the
    equations is step t's share, which the parameters' gradients sum."""
    shared = [f"`{let.symbol}`" for let in d.cell.lets if let.symbol in _steady(d.cell)]
    if not shared:
        return ""
    one = len(shared) == 1
    return (f" {_join(shared)}, a let of parameters alone, {'is' if one else 'are'} the same at every step, and "
            f"the losses of earlier steps depend on {'it' if one else 'them'} too: {'its' if one else 'their'} "
            "adjoint below is step t's share, which the parameters' gradients sum over the steps.")


def _loss_section(d):
    cell = d.cell
    y = cell.output_state
    nexts = ", ".join(f"`d{s}_next`" for s in cell.states)
    defs = [r"dv := \frac{\mathrm{d} L(t)}{\mathrm{d} v}", rf"dy := \frac{{\partial l(t)}}{{\partial {y}(t)}}"]
    defs += [rf"{_tex_name(f'd{s}_next')} := \frac{{\partial L(t+1)}}{{\partial {s}(t)}}" for s in cell.states]
    text_defs = ["dv := dL(t)/dv", f"dy := ∂l(t)/∂{y}(t)"] + [f"d{s}_next := ∂L(t+1)/∂{s}(t)" for s in cell.states]
    return Section("Loss and notation", (
        Prose(f"The loss of a sequence of T steps is the sum of a loss l(t) of each step's output `{y}`, plus a loss "
              "l_final of the final state, which may be zero. L(t) is the part of it that step t can change: "
              "the loss of step t, of every later step, and of the final state."),
        Math(r"L = \sum_{t=1}^{T} l(t) + l_{\mathrm{final}}, \qquad "
             r"L(t) = \sum_{\tau=t}^{T} l(\tau) + l_{\mathrm{final}}, \qquad L(T+1) = l_{\mathrm{final}}",
             ("L = Σ_t l(t) + l_final,   L(t) = Σ_{τ≥t} l(τ) + l_final,   L(T+1) = l_final",)),
        Prose("Below, every vector v is that of step t and its adjoint dv is the gradient of L(t), a total "
              "derivative (d: through every node of the step that v reaches), where ∂ is a partial one (the "
              f"other inputs held fixed); `dy` is the gradient of this step's own loss, y(t) = {y}(t) being the "
              f"step's output, and {nexts} "
              f"{'are the gradients' if len(d.cell.states) > 1 else 'is the gradient'} carried back "
              "from step t+1 (at the last step, t = T, the gradient of l_final: the kernel's `dstate`, zero by "
              "default). Steps count from 1 here and from 0 in the kernel's arrays: step t's `dy` is "
              "`dys[t-1]`. Since the losses of earlier steps do not depend on step t, dL/dv = dL(t)/dv."
              + _shared_note(d)),
        Math(r", \quad ".join(defs), (",  ".join(text_defs),)),
        *_output_gradient(d, y),
        Unrolled(tuple(cell.states), y),
        *([Prose("L(t+1) is read as a function of the states step t hands on: "
                 f"{nexts} are its partial derivatives, each with the other states held fixed. The paths "
                 "between the states inside step t are in the equations below, so none is counted twice.")]
          if len(cell.states) > 1 else []),
        Prose("With a batch, l(t) sums the losses of the B sequences (for their mean, `dys` carries the 1/B), "
              "and every vector is one row b of step t, written v(t, b) where that matters: the adjoints "
              "and carries are each row's own, and only the parameters' gradients sum over b. Vectors are "
              "columns here; the kernel holds a step's B rows as one (B, H) array, so W^T da is `da @ W` "
              "there, and Σ_b da x^T is `da.T @ x`."),
    ))


def _output_gradient(d, y):
    """The output state's gradient: the loss of this step and everything after it, which reaches
    it directly and, where another node of the step reads it (h = o*tanh(c) for an output c),
    through that node too."""
    step = d.step_for(d.cell.updates[y].symbol)
    through = [t.consumer for t in step.terms if t.consumer not in ("loss", "next step")]
    tex = (rf"\frac{{\mathrm{{d}} L(t)}}{{\mathrm{{d}} {y}(t)}} = \frac{{\partial l(t)}}{{\partial {y}(t)}}"
           rf" + \frac{{\partial L(t+1)}}{{\partial {y}(t)}}")
    text = f"dL(t)/d{y}(t) = ∂l(t)/∂{y}(t) + ∂L(t+1)/∂{y}(t)"
    unread = "" if d.cell.prev(y) in d.cell.read_in_step() else (
        f" No equation reads `{y}_prev`, so the second part is zero but at a sequence's last step, where it is the "
        "gradient of l_final (and, for a sequence that ends before the others, of the later outputs that repeat "
        "its state).")
    if not through:
        return [Prose(f"The gradient for `{y}` has two parts, the loss of this step and everything after it:"),
                Math(tex, (text,))] + ([Prose(unread.strip())] if unread else [])
    tex += "".join(rf" + d{_tex_name(u)} \odot \frac{{\partial {_tex_name(u)}}}{{\partial {y}(t)}}" for u in through)
    text += "".join(f" + d{u} ⊙ ∂{u}/∂{y}(t)" for u in through)
    nodes = _join([f"`{u}`" for u in through])
    return [Prose(f"The gradient for `{y}` has the loss of this step and everything after it, which reaches {y}(t) "
                  f"directly and through {nodes}, a node of the step that reads it (equation ({step.number})):"),
            Math(tex, (text,))] + ([Prose(unread.strip())] if unread else [])


def _backward_section(d):
    steps = [s for s in d.steps if s.kind in ("state", "let", "block")]
    return Section("Backward pass", tuple(
        [Prose("One step, last node first: the named nodes in the reverse of the script's order, each "
               "block's adjoint once its readers' are known."), Bullets(_backward_rules(d))]
        + [_step_math(s, d) for s in steps]
        + [Prose(text) for text in _pre_activation_prose(d)]))  # it cites the equations above


# Where a function's stored output rounds to its bound, in float64 and float32, as measured with
# NumPy (σ(a) = 1 from a = 36.7 and 16.6; np.tanh(a) = 1 from 18.99 and 10.0; a gate's tanh computed
# as 2σ(2a) - 1, from 18.4 and 8.3): there its output-form derivative is 0, for a true one below eps/2
# (σ), eps (np.tanh) or 2 eps (2σ(2a) - 1).
_SATURATED = {sigmoid: ("σ({a}) to 1 past {a} ≈ 37", "17"), sympy.tanh: ("tanh({a}) to ±1 past |{a}| ≈ 19", "10")}
_TANH_GATES = "; a gate's tanh computed as 2σ(2{a}) - 1, past 18.4 and 8.3"


_SOFTPLUS_SLOPE = "1 - exp(-y) of its output y (computed as -expm1(-y))"


def _backward_rules(d):
    """How to read the equations below: the chain rule, the two forms, output form."""
    rules = ["Each adjoint is the sum, over the node's consumers, of the consumer's adjoint times its local "
             "derivative ∂u/∂v: that of u's own equation, its other inputs held fixed. An elementwise node's "
             "Jacobian is diagonal, so ∂u/∂v is written as that diagonal and the product is elementwise (⊙).",
             "Each equation gives that sum first, then the same in the step's stored values: the form the kernel "
             "computes."]
    forms, names, functions = [], [], []
    for function, (rule, form) in _OUTPUT_FORMS.items():
        example = next((let for let in d.cell.lets if isinstance(let.expr, function)), None)
        if example is not None:
            functions.append(function)
            names.append("σ" if function is sigmoid else function.__name__)
            forms.append(f"{rule.format(a=_placeholder(d.cell))} is {form.format(v=example.symbol)} for "
                         f"`{example.symbol} = {names[-1]}({expr_text(_as_written(example.expr.args[0], d), d)})`")
    if not forms:
        return tuple(rules)
    them = "them" if len(names) > 1 else "it"
    calls = ""
    if any(f in functions for f in (sigmoid, sympy.tanh, exp)):
        calls = f", and calls no exp or tanh to differentiate {them}"
        calls += f" but softplus's {_SOFTPLUS_SLOPE}" if _uses(d.cell, softplus) else ""  # softplus inside a let too
    elif _uses(d.cell, softplus):
        calls = f", and calls only softplus's {_SOFTPLUS_SLOPE}, to differentiate {them}"
    unnamed = _unnamed_call(d)
    kept = (f" A call no node names, as `{expr_text(unnamed, d)}`, is kept from the forward pass, and its "
            "derivative reads that value." if unnamed is not None else "")
    rules.append(f"Derivatives are in output form, written with the node's own stored value ({'; '.join(forms)}): "
                 f"no derivative of {_join(names, 'or')} reads its argument, so the backward pass reads the stored "
                 f"outputs alone{calls}.{kept}")
    # a call no node names (an SRU's tanh(c)) is kept and differentiated in output form too
    saturated = [(text.format(a=_placeholder(d.cell)), n) for f, (text, n) in _SATURATED.items() if _uses(d.cell, f)]
    if saturated:
        bounds = f"in float64 {_join([text for text, _ in saturated])}; in float32 past {_join([n for _, n in saturated])}"
        bounds += _TANH_GATES.format(a=_placeholder(d.cell)) if _uses(d.cell, sympy.tanh) else ""
        rules.append(f"Output form is exact to rounding in absolute terms, not in relative ones: where a stored "
                     f"output rounds to its bound ({bounds}), its derivative comes out 0 for a true one below 2 eps "
                     "(4.4e-16; 2.4e-7 in float32), under the rounding of any term of order 1 it joins.")
    return tuple(rules)


def _pre_activation_prose(d):
    """Why a peephole's path reads the block's adjoint: it is the whole pre-activation's too."""
    readers = {}  # block adjoint -> (pre-activation, its gate, [(step, term)])
    for step in d.steps:
        for t in step.terms:
            if t.pre is not None:
                readers.setdefault(t.adjoint, (t.pre, t.consumer, []))[2].append((step, t))
    if not readers:
        return []
    (adj, (pre, gate, uses)), *others = readers.items()
    step, term = uses[0]
    block = next(s for s in d.steps if s.adjoint == adj)
    local = block.terms[0]
    takes = str(adj) if term.local == 1 else _times_text(term.local, adj, d)
    shown = expr_text(_as_written(pre, d), d)
    text = (f"`{block.target}` enters `{gate}`'s pre-activation `{shown}` alone, with "
            f"coefficient 1, and nothing else reads it: so `{adj}` = dL/d{block.target} is "
            f"`dL/d({shown})` too, which the pre-activation's other inputs read. "
            f"({step.number}) takes `{takes}` for `{step.target}`, the same as "
            f"`{_times_text(term.local * local.local, local.adjoint, d)}`")
    if len(uses) > 1:
        text += f"; {_numbers([s.number for s, _ in uses[1:]])} {'reads' if len(uses) == 2 else 'read'} the same `{adj}`"
    likewise = [f"`{a}` for `{expr_text(_as_written(p, d), d)}` in {_numbers([s.number for s, _ in u])}" for a, (p, _, u) in others]
    return [text + (f". Likewise {'; '.join(likewise)}." if likewise else ".")]


def _times_text(expr, adjoint, d):
    """expr*adjoint as text, a sum in parentheses: (1 + u)*da, not 1 + u*da."""
    text = expr_text(expr, d)
    return f"({text})*{adjoint}" if isinstance(expr, sympy.Add) else f"{text}*{adjoint}"


def _step_math(step: Step, d):
    """dv = (the chain-rule sum) = (its output form); once when the two are the same."""
    lhs, lhs_tex = str(step.adjoint), _tex_name(str(step.adjoint))
    if step.kind == "param":  # one step's and row's share; the sum over them comes with the weights'
        lhs, lhs_tex = f"{lhs}(t, b)", f"{lhs_tex}(t, b)"
    chain_text = " + ".join(_chain_text(t, step, d) for t in step.terms) or "0"
    chain_tex = " + ".join(_chain_tex(t, step, d) for t in step.terms) or "0"
    result_text = step.text(_TextPrinter(_block_names(d)))
    if chain_text == result_text:
        return Math(f"{lhs_tex} = {chain_tex}", (f"{lhs} = {chain_text}",), step.number)
    if len(chain_text) + len(result_text) <= _ONE_LINE:
        tex = f"{lhs_tex} = {chain_tex} = {_step_tex(step, d)}"
    else:  # the two forms one under the other, as the text form has them: one line would scroll
        tex = f"\\begin{{aligned}} {lhs_tex} &= {chain_tex} \\\\\n&= {_step_tex(step, d)} \\end{{aligned}}"
    return Math(tex, (f"{lhs} = {chain_text}", f"= {result_text}"), step.number)


_ONE_LINE = 80  # characters of an equation's two forms, as text, that one displayed line takes


def _chain_text(term, step, d):
    v = step.target
    if term.consumer == "loss":
        return f"∂l(t)/∂{v}"
    if term.consumer == "next step":
        return f"∂L(t+1)/∂{v}"
    if isinstance(term.local, MatTerm):
        return expr_text(term.local, d)
    if term.pre is not None:
        return f"{term.adjoint} ⊙ ∂({expr_text(_as_written(term.pre, d), d)})/∂{v}"
    return f"{term.adjoint} ⊙ ∂{term.consumer}/∂{v}"


def _chain_tex(term, step, d):
    v = _tex_name(str(step.target))
    if term.consumer == "loss":
        return rf"\frac{{\partial l(t)}}{{\partial {v}}}"
    if term.consumer == "next step":
        return rf"\frac{{\partial L(t+1)}}{{\partial {v}}}"
    if isinstance(term.local, MatTerm):
        return expr_latex(term.local, d)
    if term.pre is not None:
        return rf"{_tex_name(str(term.adjoint))} \odot \frac{{\partial \left({expr_latex(_as_written(term.pre, d), d)}\right)}}{{\partial {v}}}"
    return rf"{_tex_name(str(term.adjoint))} \odot \frac{{\partial {_tex_name(term.consumer)}}}{{\partial {v}}}"


def _as_written(pre, d):
    """A gate's pre-activation as the script writes it (a_o + p_o*c), where its equation shows it."""
    for eq in d.forward:
        expr = getattr(eq.node, "expr", None)
        if eq.rhs is not None and isinstance(expr, sympy.Function) and expr.args[0] == pre \
                and type(eq.shown) is type(expr):
            return eq.shown.args[0]
    return pre


def _carries(d):
    """(state, its carry step, the step of its new value's adjoint) for every state, in the
    derivation's order of the carries."""
    out = []
    for step in (s for s in d.steps if s.kind == "carry"):
        state = str(step.target)[: -len("_prev")]
        out.append((state, step, d.step_for(d.cell.updates[state].symbol)))
    return out


def _carries_section(d):
    carries = [step for _, step, _ in _carries(d)]
    uses = [f"`d{state}_prev` becomes `d{state}_next` in ({into.number})" for state, _, into in _carries(d)]
    return Section("Carries to step t-1", tuple(
        [Prose("What step t passes back: the adjoints of the previous states.")]
        + [_step_math(s, d) for s in carries]
        + [Prose(f"At step t-1, {_join(uses)}. The backward loop runs t = T, ..., 1; it starts from "
                 "the gradient of l_final (the kernel's `dstate`, zero by default) and returns the "
                 "gradient of the initial state."),
           *_many_steps_prose(d),
           _ended_prose(d)]))


def _many_steps_prose(d):
    """What each carry does over many steps: a direct factor compounds into a product over the
    steps between (a power, for a factor no step changes); paths through gates' pre-activations add
    to that factor at every step; a path through a weight matrix makes a product of matrices."""
    out = []
    for state, step, into in _carries(d):
        own = into.adjoint
        direct = [t for t in step.terms if t.adjoint == own and t.pre is None and not isinstance(t.local, MatTerm)]
        weights = [f"`{t.local.weight}^T`" for t in step.terms if isinstance(t.local, MatTerm)]
        weights += _matrices_through_lets(d, state, [t.consumer for t in step.terms if t.adjoint is not None
                                                     and t.pre is None and t.adjoint != own])
        reaching = _read_by_new_value(d, state)  # a peephole into a gate of another state's does not compound here
        through_pre = [t for t in step.terms if t.pre is not None and sympy.Symbol(t.consumer, real=True) in reaching]
        parts = []
        if through_pre:
            parts.append(_through_pre_activations(d, state, direct[0] if len(direct) == 1 else None, through_pre))
        elif len(direct) == 1:
            parts.append(_along_the_state(d, state, direct[0].local))
        new_of = {str(let.symbol): other for other, let in d.cell.updates.items() if other != state}
        for t in step.terms:  # h_prev read by c's new value: the carries of the two states take turns
            if t.adjoint is not None and t.adjoint != own and t.pre is None and t.consumer in new_of:
                other = new_of[t.consumer]
                parts.append(f"through the new `{other}` (times `{expr_text(t.local, d)}`), it joins `{other}`'s carry, "
                             "so over the steps between the two states' factors multiply in turn")
        if weights:
            which = "that matrix" if len(weights) == 1 else "those matrices, one or more in turn along each path,"
            parts.append(f"through {_join(weights)}, it is multiplied at every step by {which} and by the "
                         "local derivatives of the nodes between, a product of matrices over the steps between, "
                         "whose size can shrink or grow geometrically with τ - t: the vanishing and exploding "
                         "gradients of recurrent networks")
        if parts:
            out.append(Prose(f"Over many steps, `d{state}_prev` compounds. The gradient that reaches {state}(t) from "
                             f"the loss of a later step τ: {'; '.join(parts)}."))
    return out


def _matrices_through_lets(d, state, consumers):
    """The weights a carry reaches through lets, past its state's own: a GRU's r*h_prev, read by
    W_h ("`W_h^T` (through `rh`)"), or an mLSTM's m = a_mx*a_mh, whose a_mh is N_h h_prev and which
    W_m reads ("`W_m^T` (through `m`)"). From the lets named in consumers and the blocks of the
    affines that read the state, forward through lets and affines, to those that reach a new value."""
    lets = {str(let.symbol): let for let in d.cell.lets}
    prev = d.cell.prev(state)
    reaching = set().union(*(_read_by_new_value(d, s) for s in d.cell.states))
    reached = {lets[c].symbol for c in consumers if c in lets}
    reached |= {b for a in d.cell.affines if prev in a.inputs for b in a.blocks}
    found, changed = [], True
    while changed:
        changed = False
        for node in d.cell.nodes:
            if isinstance(node, Affine):
                read = [(w, v) for w, v in zip(node.weights, node.inputs) if v in reached and v != prev]
                if read and set(node.blocks) & reaching and not set(node.blocks) <= reached:
                    found += [pair for pair in read if pair not in found]
                    reached |= set(node.blocks)
                    changed = True
            elif node.symbol not in reached and node.expr.free_symbols & reached:
                reached.add(node.symbol)
                changed = True
    return [f"`{w}^T` (through `{v}`)" for w, v in found]


def _along_the_state(d, state, local):
    """The carry's one direct factor, compounded over the steps between."""
    g = expr_text(local, d)
    grows = (f"over steps where |{g}| < 1 it shrinks, where |{g}| = 1 it passes unchanged in size, and where "
             f"|{g}| > 1, if {g} can get there, it grows geometrically")
    if _in_unit_interval(d, local):  # a gate, or one minus a gate: it can only fade
        grows = f"{g} lies in (0, 1), so it fades as fast as {g} is below 1, and hardly at all where {g} is near 1"
    elif isinstance(_value(d, local), positive):  # [u > 0]: all or nothing
        grows = (f"{g} is 0 or 1, so the gradient passes unchanged while {g} is 1 at every step between, and is cut "
                 f"at the first step where it is 0")
    start = f"along `{state}` alone, it is multiplied by `{g}`"
    if local.is_Number:  # a fixed leak: its power, exactly
        fate = ("it fades geometrically" if abs(local) < 1 else "it grows geometrically" if abs(local) > 1
                else "it passes unchanged in size")
        return f"along `{state}` alone, it is multiplied by {g}^(τ - t): {fate}"
    if local.free_symbols <= _steady(d.cell):  # a parameter, or a let of them: no step of its own
        return f"{start}, the same at every step, τ - t times: {grows}"
    at = f"{g}" if g.replace("_", "").isalnum() else f"({g})"
    product = f"the product {at}(t+1) {at}(t+2) ... {at}(τ)" if len(g) <= 12 else "the product of its values at steps t+1 to τ"
    return f"{start} of every step between, {product}: {grows}"


def _through_pre_activations(d, state, direct, through_pre):
    """A carry that also reaches the state through gates' pre-activations (a peephole): per step,
    the paths add, so what compounds is their sum, not each factor alone."""
    paths = [f"{_factor_text(d, t.local)}*∂{state}/∂{t.adjoint.name.removeprefix('d')}" for t in through_pre]
    total = _summed(([_factor_text(d, direct.local)] if direct else []) + paths)
    pres = _join([f"`{expr_text(_as_written(t.pre, d), d)}`" for t in through_pre])
    several = len(through_pre) > 1
    first = expr_text(direct.local, d) if direct else ""
    text = (f"along `{state}` alone, it is multiplied at every step between by `{total}`: "
            + (f"the direct factor `{first}` and, " if direct else "")
            + f"through the pre-activation{'s' if several else ''} {pres}, {'each' if several else 'its'} "
            f"coefficient times the derivative of the new `{state}` with respect to that pre-activation, through "
            "its activation. "
            + ("A product of these sums over the steps between: it shrinks or grows geometrically as the sum is "
               "below or above 1 in size" if direct or several else
               "A product over the steps between: it shrinks or grows geometrically as that factor is below or above "
               "1 in size"))
    if direct and _in_unit_interval(d, direct.local):
        text += f", and the terms past `{first}` can take it above 1 where {first} alone, in (0, 1), could only fade it"
    return text


def _summed(terms):
    """Terms' texts joined into a sum, a term's own minus sign as the operator: a - b, not a + -b."""
    text = terms[0]
    for term in terms[1:]:
        text += f" - {term[1:]}" if term.startswith("-") else f" + {term}"
    return text


def _read_by_new_value(d, state):
    """The symbols the state's new value reads, through lets, within one step (itself included)."""
    lets = {let.symbol: let for let in d.cell.lets}
    reached, todo = set(), [d.cell.updates[state].symbol]
    while todo:
        symbol = todo.pop()
        if symbol not in reached:
            reached.add(symbol)
            if symbol in lets:
                todo += list(lets[symbol].expr.free_symbols)
    return reached


def _value(d, expr):
    """A let's expression for its symbol (followed through lets that only rename), else expr."""
    lets = {let.symbol: let.expr for let in d.cell.lets}
    seen = set()
    while expr in lets and expr not in seen:
        seen.add(expr)
        expr = lets[expr]
    return expr


def _positive_valued(d, expr, depth=0):
    """Whether expr is above 0 whatever the inputs: softplus, exp, sigmoid, a positive number, a
    product or sum of such values, or a let whose value is one."""
    if depth > 10:
        return False
    expr = _value(d, expr)
    if expr.is_Number:
        return expr > 0
    if isinstance(expr, (softplus, exp, sigmoid)):
        return True
    if isinstance(expr, (sympy.Mul, sympy.Add)):
        return all(_positive_valued(d, a, depth + 1) for a in expr.args)
    return False


def _factor_text(d, expr):
    text = expr_text(expr, d)
    return f"({text})" if isinstance(expr, sympy.Add) else text


def _in_unit_interval(d, expr, depth=0):
    """Whether expr lies in (0, 1) whatever the inputs: a sigmoid, one minus such a value, a product
    of such values, or a let whose value is one of these."""
    if depth > 10:
        return False
    expr = _value(d, expr)
    if isinstance(expr, sigmoid):
        return True
    if isinstance(expr, exp):  # exp(-softplus(a)) = sigmoid(-a)
        return _positive_valued(d, -expr.args[0], depth + 1)
    if isinstance(expr, sympy.Mul):
        return all(_in_unit_interval(d, f, depth + 1) for f in expr.args)
    if isinstance(expr, sympy.Add) and 1 in expr.args:
        return _in_unit_interval(d, sympy.expand(1 - expr), depth + 1)
    return False


def _ended_prose(d):
    """The carries of a step past a sequence's end, where the step is the identity."""
    states = list(d.cell.states)
    kept = _join([f"`{s} = {s}_prev`" for s in states])
    passed = _join([f"`d{s}_prev = " + ("dy + " if s == d.cell.output_state else "") + f"d{s}_next`"
                    for s in states])
    return Prose(f"In a batch of sequences of different lengths (the kernel's `lengths`), a sequence "
                 f"that has ended keeps its state: for its rows the step is the identity, {kept}. Its "
                 f"carries are then the adjoints that reach the new state, {passed}, and the step adds "
                 "nothing to the parameters' and the input's gradients below: the adjoints of its "
                 "pre-activations are zero. Its `dy` there still reaches the kept state, as its output there "
                 "repeats it: for padding that should carry no loss, `dys` is zero there.")


def _gradients_section(d):
    blocks = [Prose("The same parameters serve every step and every row, as if each had its own copy, "
                    "so their gradients are sums over the steps t and the batch rows b of each copy's "
                    "(outer products for the weights); the input's gradient is one product per step and "
                    "row. The kernel computes them all after the backward loop, for all steps at once.")]
    blocks += [_step_math(s, d) for s in d.steps if s.kind in ("param", "input")]
    blocks += [_grad_math(g, d) for g in d.param_grads]
    return Section("Gradients of the input and the parameters", tuple(blocks))


def _grad_math(g, d):
    name = f"d{g.name}"
    sums_tex, sums_text = r"\sum_{t=1}^{T} \sum_{b=1}^{B}", "Σ_t Σ_b"
    if g.kind == "weight":
        stack, v = _block_names(d, tex=True)[g.affine], _tex_name(str(g.vector))
        return Math(f"{_tex_name(name)} = {sums_tex} {stack}(t, b) \\thinspace {v}(t, b)^{{\\top}}",
                    (f"{name} = {sums_text} {_block_names(d)[g.affine]}(t, b)·{g.vector}(t, b)^T",), g.number)
    if g.kind == "bias":
        return Math(f"{_tex_name(name)} = {sums_tex} {_block_names(d, tex=True)[g.affine]}(t, b)",
                    (f"{name} = {sums_text} {_block_names(d)[g.affine]}(t, b)",), g.number)
    return Math(f"{_tex_name(name)} = {sums_tex} {_tex_name(name)}(t, b)",
                (f"{name} = {sums_text} {name}(t, b)",), g.number)


def _no_line(d, number):
    """The Lines cell of an equation no kernel line cites: an adjoint that is another one, which the
    kernel reads under that name (dr = ds_new), says so."""
    step = next((s for s in d.steps if s.number == number), None)
    if step is not None and isinstance(step.result, sympy.Symbol):
        return f"none: it is `{step.result}`, read as it is"
    return "none"


def _notes_section(d):
    notes = _carry_notes(d) + _output_form_notes(d) + _previous_value_notes(d) + _block_order_notes(d)
    notes += [_cite(d, note) for note in d.cell.notes]
    return Section("Where people go wrong", (Bullets(tuple(notes)),))


def _kernel_section(d, kernel_text, kernel_path):
    lines, spans = kernel_lines(kernel_text), _line_spans(kernel_text)
    rows = []
    for number, what in d.numbered():
        found = lines.get(number, [])
        functions = ", ".join(dict.fromkeys(f"`{f}`" for f, _ in found)) or "none"
        refs = tuple(Ref(str(n), f"{kernel_path}#L{n}") if spans[n] == n else
                     Ref(f"{n}-{spans[n]}", f"{kernel_path}#L{n}-L{spans[n]}") for _, n in found)
        rows.append((f"({number})", f"`{what}`", functions, refs or _no_line(d, number)))
    return Section("Kernel lines", (
        Prose(f"Where [{kernel_path.split('/')[-1]}]({kernel_path}) implements each equation; its "
              "comments cite the same numbers. A line may hold one factor of an equation (the kernel "
              f"multiplies the local derivatives first){_local_example(kernel_text)}."),
        Table(("Equation", "Defines", "Function", "Lines"), tuple(rows)),
    ))


def _local_example(kernel_text):
    """", and a comment's ∂h/∂z is a local derivative ...", with the kernel's first such comment, and
    what a comment's d instead of ∂ means where the kernel has one."""
    comments = [comment for _, _, _, comment in provenance(kernel_text or "")]
    local = next((m.groups() for m in map(re.compile(r"# \(\d+\) ∂(\w+)/∂(\w+)\b").match, comments) if m), None)
    if local is None:
        return ""
    top, bottom = local
    text = f", and a comment's ∂{top}/∂{bottom} is a local derivative, the other inputs of {top} held fixed"
    paths = next((m.groups() for m in map(re.compile(r"# [(),\d ]+ (d\w+/d\w+) with its paths through (.+)$").match,
                                          comments) if m), None)
    between = next((m.group(1) for m in map(re.compile(r"# [(),\d ]+ (d\w+/d\w+) through the nodes between\b").match,
                                            comments) if m), None)
    if paths:
        text += (f"; a `d` in place of `∂` marks a factor that also takes other paths within the step "
                 f"({paths[0]} with its paths through {paths[1]})")
    elif between:
        text += (f"; a `d` in place of `∂` marks a derivative through the nodes between, along every path "
                 f"within the step ({between})")
    return text


# -- facts the sections share ----------------------------------------------------------------


def provenance(kernel_text):
    """(numbers cited, function, line, comment) for every provenance comment of a kernel.

    A provenance comment starts with the numbers it cites: ``# (9) dL/ds`` or
    ``# (2), (3), (4), (5) all gates ...``, and may cite factors it reads from a product later
    (``, times (12), (11) from da_xn``). Only real comments count, not docstrings.
    """
    out, function, previous = [], None, None
    for tok in tokenize.generate_tokens(io.StringIO(kernel_text).readline):
        if tok.type == tokenize.NAME and previous is not None and previous.string == "def" \
                and previous.start[1] == 0:
            function = tok.string
        cited = re.match(r"# \(\d+\)(, \(\d+\))*", tok.string) if tok.type == tokenize.COMMENT else None
        if cited:
            numbers = tuple(int(n) for n in re.findall(r"\d+", cited.group(0)))
            # "# (19) ∂a_n/∂a_hn, times (12), (11) from da_xn": the line holds those factors too
            times = re.search(r", times (\(\d+\)(?:, \(\d+\))*) from ", tok.string)
            numbers += tuple(int(n) for n in re.findall(r"\d+", times.group(1))) if times else ()
            out.append((numbers, function, tok.start[0], tok.string))
        previous = tok
    return out


def kernel_lines(kernel_text):
    """{equation number: [(function, line), ...]} from the kernel's provenance comments."""
    found = {}
    for numbers, function, line, _ in provenance(kernel_text):
        for number in numbers:
            found.setdefault(number, []).append((function, line))
    return found


def _names_only(line):
    """A line that only names values (views, or the next step's states): h_prev = h."""
    return re.fullmatch(r"\s*[\w, ]+ = [\w\[\]\-+:., ]+(#.*)?", line) is not None


def _line_spans(kernel_text):
    """{cited line: last line of what it stands for}. A comment on a line of its own, or one that
    ends with a colon ("c = f*c_prev + i*g, written in place:"), heads the lines below it, down to
    the next citation, comment line, blank line, dedent or block of its own (`if masked[t]:`); any
    other cited line stands alone."""
    lines = kernel_text.split("\n")
    cited = {line for _, _, line, _ in provenance(kernel_text)}
    spans = {}
    for line in cited:
        text = lines[line - 1]
        head = text.lstrip().startswith("#") or text.rstrip().endswith(":")
        indent, last = len(text) - len(text.lstrip()), line
        while head and last < len(lines):
            below = lines[last]
            if (not below.strip() or last + 1 in cited or below.lstrip().startswith("#")
                    or len(below) - len(below.lstrip()) < indent or _names_only(below)
                    or below.split("  #")[0].rstrip().endswith(":")):
                break
            last += 1
        spans[line] = last
    return spans


def _cite(d, note):
    """Replaces {ds} in a note by the number of the equation that computes ds, (9), and {{ and }}
    by a brace (derive() has refused a name no equation computes)."""
    refs = d.references()

    def cited(m):
        name = m.group(1)
        return m.group(0)[0] if name is None else f"({refs[name]})" if name in refs else m.group(0)

    return CITATION.sub(cited, note)


def _numbers(numbers):
    """(14) to (17) for a run of consecutive numbers, else (3), (7) and (9)."""
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"({numbers[0]}) to ({numbers[-1]})"
    return _join([f"({n})" for n in numbers])


def _join(items, word="and"):
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} " + items[-1]


def _carry_notes(d):
    """What d<state>_next already holds, read off the terms of the carry step."""
    notes = []
    for state, carry, into in _carries(d):
        if not carry.terms:
            continue
        held = [_held(term, into.adjoint, d) for term in carry.terms]
        if len(held) == 1:
            holds = f"{held[0]}: it is `{step_text(carry, d)}`, equation ({carry.number}), computed at step t+1"
        else:  # the carry first, then what each of its terms has applied: one long clause reads badly
            holds = (f"{_count(len(held))} terms: it is `{step_text(carry, d)}`, equation ({carry.number}), "
                     f"computed at step t+1, with {_join(held)} applied")
        uses = "adds" if len(into.terms) > 1 else "takes"  # dh = dh_next alone, where h is no step's output
        notes.append(
            f"`d{state}_next` already holds {holds}. So ({into.number}) {uses} `d{state}_next` as it is, "
            f"without applying {'that' if len(held) == 1 else 'any of them'} again; and dropping "
            f"`d{state}_next` loses every later loss that reaches `{state}` through `{state}_prev` of step t+1.")
    return notes


def _count(n):
    return {2: "two", 3: "three", 4: "four"}.get(n, str(n))


def _held(term, own, d):
    """One term of a carry, said as what it has already applied: f(t+1), the product with W_h^T."""
    if isinstance(term.local, MatTerm):
        return f"the product with `{term.local.weight}^T`"
    if term.pre is not None:  # a peephole's or IndRNN's p*h_prev inside a gate's pre-activation
        when = "" if term.local.free_symbols <= _steady(d.cell) else ", of step t+1"
        return (f"`{_factor_text(d, term.local)}*{term.adjoint}`{when}, through the pre-activation "
                f"`{expr_text(_as_written(term.pre, d), d)}` (`{term.adjoint}` with its activation's derivative)")
    if term.adjoint != own:
        return f"the path through `{term.consumer}`"
    local = expr_text(term.local, d)
    if term.local.free_symbols <= _steady(d.cell):  # a parameter, or a let of them alone: no step of its own
        return f"`{local}`" if isinstance(term.local, sympy.Symbol) else f"the factor `{local}`"
    return f"`{local}(t+1)`" if isinstance(term.local, sympy.Symbol) else f"the factor `{local}` of step t+1"


def _steady(cell):
    """The parameters and the lets of them alone: the same at every step."""
    steady = set(cell.params)
    for let in cell.lets:
        if let.expr.free_symbols <= steady:
            steady.add(let.symbol)
    return steady


def _output_form_notes(d):
    """The steps that differentiate a sigmoid or tanh: in output form, from the stored output."""
    gates = {str(let.symbol): let for let in d.cell.lets if isinstance(let.expr, GATE_FUNCTIONS)}
    stored = {str(let.symbol) for let in d.cell.lets if type(let.expr) in SUPPORTED_FUNCTIONS.values()}
    steps = [s for s in d.steps if any(t.consumer in stored and t.pre is None for t in s.terms)]
    # an example of one term, a gate's (a block two gates read sums two), a step of its own (a
    # parameter's dp(t, b) is summed in another equation), a sigmoid's where there is one
    alone = [s for s in steps if len(s.terms) == 1 and s.terms[0].consumer in gates and s.terms[0].pre is None]
    if not alone:
        return []
    example = next((s for s in alone if isinstance(gates[s.terms[0].consumer].expr, sigmoid) and s.kind != "param"),
                   next((s for s in alone if s.kind != "param"), alone[0]))
    gate = gates[example.terms[0].consumer]
    y, f = gate.symbol, "sigmoid" if isinstance(gate.expr, sigmoid) else "tanh"
    wrong = f"{f}({y})*(1 - {f}({y}))" if f == "sigmoid" else f"1 - {f}({y})**2"
    verb = "writes its derivative" if len(steps) == 1 else "write the derivatives"
    argument = gate.expr.args[0]
    called = "argument" if argument.free_symbols <= _steady(d.cell) else "pre-activation"  # sigmoid(p): a parameter
    lhs = f"{example.adjoint}(t, b)" if example.kind == "param" else str(example.adjoint)
    text = step_text(example, d).replace(f"{example.adjoint} =", f"{lhs} =", 1)
    return [f"{_numbers([s.number for s in steps])} {verb} in output form, from the stored outputs: "
            f"`{text}`. {'The argument is' if called == 'pre-activation' else 'It reads'} the output `{y}`, not the {called} "
            f"`{expr_text(_as_written(argument, d), d)}`; `{wrong}` would apply {f} twice."]


def _previous_value_notes(d):
    """Weight gradients pair each step's adjoints with the previous state the affine read."""
    notes = []
    for g in d.param_grads:
        if g.kind == "weight" and str(g.vector).endswith("_prev"):
            state = str(g.vector)[: -len("_prev")]
            notes.append(f"({g.number}) pairs the adjoints of step t with `{g.vector}` = {state}(t-1), "
                         f"the value the affine map read, not with the new `{state}`(t).")
    return notes + _state_time_notes(d)


def _state_time_notes(d):
    """Elementwise parameters of which some pair with a state before its update and others after."""
    def named(steps):
        return _join(f"({s.number}) `{s.adjoint}`" for s in steps)

    notes = []
    for state in d.cell.states:
        prev, new = d.cell.prev(state), d.cell.updates[state].symbol
        reads = {}  # param -> "prev" / "new"
        for step in d.steps:
            if step.kind != "param":
                continue
            for t in step.terms:
                for v, when in ((prev, "prev"), (new, "new")):
                    if t.local.has(v):
                        reads.setdefault(step, set()).add(when)
        early = [s for s, w in reads.items() if w == {"prev"}]
        late = [s for s, w in reads.items() if w == {"new"}]
        if early and late:
            notes.append(f"{named(late)} {'pairs' if len(late) == 1 else 'pair'} a gate's adjoint with the new "
                         f"`{new}`(t), {named(early)} with `{prev}` = {new}(t-1): each the value its gate "
                         f"read. Each is an elementwise product per (t, b), summed over t and b into the "
                         f"parameter's gradient, not an outer product like a weight's.")
    return notes


def _block_order_notes(d):
    """The order of the blocks in the stacked weights, which converting weights depends on."""
    stacks = []
    for a in d.cell.affines:
        if len(a.blocks) > 1:
            params = _join([f"`{p}`" for p in a.weights + a.biases])
            stacks.append(f"the rows of {params} hold the blocks {', '.join(f'`{b}`' for b in a.blocks)}")
    if not stacks:
        return []
    text = "; ".join(stacks)
    return [f"{text[0].upper()}{text[1:]}, in this order, H rows each. Weights taken from another "
            "implementation must be stacked in the same order."]


# -- Markdown ---------------------------------------------------------------------------------


def derivation_markdown(d: Derivation, source: str, kernel_text=None, kernel_path=None, script_path=None,
                        command="lstm-derive generate") -> str:
    """The derivation document, derivations/<cell>.md; ``kernel_path`` and ``script_path`` are
    relative to it (by default it sits beside the script, the kernel in lstm_derive/kernels/)."""
    cell = d.cell
    kernel_path = kernel_path or f"../lstm_derive/kernels/{cell.name}.py"
    script = script_path or source.split("/")[-1]
    label = _from_root(kernel_path)
    # a script elsewhere and its kernel beside the document, of one name: said apart
    where = " (beside this document)" if label == source.split("/")[-1] and "/" not in kernel_path else ""
    out = [
        f"<!-- Generated by lstm-derive from {source}. Do not edit by hand: edit the script and run"
        f" `{command}`. -->",
        f"# {_md_escape(cell.title or cell.name)}",
        "",
        f"Cell `{cell.name}`, written in [`{source}`]({script}). Its kernel "
        f"[`{label}`]({kernel_path}){where} cites the numbered equations below"
        f"{_example_comment(d, kernel_text)}.",
        "",
    ]
    for section in sections(d, kernel_text, kernel_path):
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            out += _MARKDOWN[type(block)](block) + [""]
    return "\n".join(out).rstrip() + "\n"


def _from_root(path):
    """A relative link as the reader names the file: ../lstm_derive/kernels/lstm.py is
    lstm_derive/kernels/lstm.py (the script beside the document is lstm.py too)."""
    return re.sub(r"^(\.\./)+", "", path)


def _md_escape(text):
    """Plain text in Markdown: * and _ stay characters, not emphasis."""
    return re.sub(r"([\\`*_\[\]])", r"\\\1", text)


def _example_comment(d, kernel_text):
    """The intro's example comment, quoted from the kernel: the one of the first state's adjoint."""
    first = next(s.number for s in d.steps if s.kind == "state")
    comments = [c for numbers, _, _, c in provenance(kernel_text or "") if numbers == (first,)]
    return f" in comments such as `{comments[0]}`" if comments else " in its comments"


def _md_prose(block):
    return [block.text]


def _md_math(block):
    number = "" if block.number is None else f" \\qquad ({block.number})"
    return ["$$", block.tex + number, "$$"]


def _md_bullets(block):
    return [f"- {item}" for item in block.items]


_MERMAID_SHAPES = {"input": '(["{}"])', "prev": '(["{}"])', "param": '[/"{}"/]', "affine": '["{}"]',
                   "let": '("{}")', "state": '[["{}"]]', "loss": '(["{}"])'}


def _md_flow(block):
    # The previous states first, the first chained to the others by invisible links (~~~): Mermaid's
    # layout, breaking the recurrence's cycles, keeps them on the left beside the input; declared
    # later, a previous state lands right of the new state its dotted arrow comes from.
    prev = [n for n in block.nodes if n.kind == "prev"]
    lines = ["```mermaid", "flowchart LR"]
    lines += [f"    {n.id}{_MERMAID_SHAPES[n.kind].format(n.label)}" for n in prev + [n for n in block.nodes if n.kind != "prev"]]
    lines += [f"    {a.id} ~~~ {b.id}" for a, b in zip(prev, prev[1:])]
    for e in block.edges:
        label = f'|"{e.label}"|' if e.label else ""
        arrow = "-.->" if e.recurrent else "-->"  # Mermaid has no one-headed arrow pointing back (<-.- draws no head)
        lines.append(f"    {e.source} {arrow}{label} {e.target}")
    params = ", slanted boxes elementwise parameters" if any(n.kind == "param" for n in block.nodes) else ""
    return lines + ["```", "", _FLOW_CAPTION["graph"].format(params=params)]


def _md_table(block):
    def cell(c):
        return ", ".join(f"[{r.text}]({r.href})" for r in c) if isinstance(c, tuple) else c

    lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in block.rows]


def _md_unrolled(block):
    return ["```mermaid", "flowchart LR",
            f'    s0(["{block.at("t-1")}"]) --> step_t["step t"] --> s1(["{block.at("t")}"])',
            f'    s1 --> step_u["step t+1"] --> s2(["{block.at("t+1")}"])',
            '    x_t(["x(t)"]) --> step_t',
            '    x_u(["x(t+1)"]) --> step_u',
            f'    s1 -->|"{block.output}(t)"| l_t(["l(t)"])',
            f'    s2 -->|"{block.output}(t+1)"| l_u(["l(t+1)"])',
            '    l_t -.->|"dy"| s1',
            f'    step_u -.->|"{block.nexts()}"| s1',
            "```", "", _UNROLLED_CAPTION]


_UNROLLED_CAPTION = ("Two steps of the recurrence. Solid arrows are the forward pass; dotted arrows, here (not "
                     "the recurrence, as in the dataflow above), are the "
                     "gradients that reach step t's new state: `dy` from its own loss, and the gradient of every "
                     "later loss, which can only come back through step t+1.")


_MARKDOWN = {Prose: _md_prose, Math: _md_math, Bullets: _md_bullets, Flow: _md_flow, Table: _md_table,
             Unrolled: _md_unrolled}


# -- terminal text ----------------------------------------------------------------------------

_WIDTH = 100
_NBSP = "\u00a0"  # joins the words of a code span while wrapping


def derivation_text(d: Derivation, kernel_text=None, kernel_path=None) -> str:
    """The same derivation for a terminal: Unicode text, the chain rule and the kernel's lines."""
    cell = d.cell
    kernel_path = kernel_path or f"lstm_derive/kernels/{cell.name}.py"
    out = [f"{cell.title or cell.name}  [{cell.name}]"]
    for section in sections(d, kernel_text, kernel_path):
        out += ["", section.title]
        for block in section.blocks:
            out += _TEXT[type(block)](block)
    return "\n".join(out)


def _plain(text):
    """Prose without Markdown: [text](link) becomes text, and `code` code that never wraps."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    return re.sub(r"`([^`]*)`", lambda m: m.group(1).replace(" ", _NBSP), text)


def _wrap(text, first, rest):
    lines = textwrap.wrap(_plain(text), _WIDTH, initial_indent=first, subsequent_indent=rest,
                          break_on_hyphens=False, break_long_words=False)
    return [line.replace(_NBSP, " ") for line in lines]


def _text_prose(block):
    return _wrap(block.plain or block.text, "  ", "  ")


def _text_math(block):
    head = "  " if block.number is None else f"  ({block.number}) "
    pad = " " * (len(head) + block.text[0].index("=")) if "=" in block.text[0] else " " * len(head)
    lines = [head + block.text[0]] + [pad + line for line in block.text[1:]]
    return [part for line in lines for part in _broken(line, pad + "  ")]


def _broken(line, pad):
    """A line of math longer than the width, broken before a top-level + or - or after a top-level
    comma, the following lines indented by pad."""
    if len(line) <= _WIDTH:
        return [line]
    pieces, depth, start = [], 0, 0
    for k, char in enumerate(line):
        depth += (char in "([{") - (char in ")]}")
        if depth == 0 and (line.startswith(" + ", k) or line.startswith(" - ", k) or line.startswith(",  ", k)):
            cut = k + 1 if char == "," else k
            pieces.append(line[start:cut])
            start = cut
    pieces.append(line[start:])
    out = [pieces[0]]
    for piece in pieces[1:]:
        if len(out[-1]) + len(piece) <= _WIDTH:
            out[-1] += piece
        else:
            out.append(pad + piece.strip())
    return out


def _text_bullets(block):
    return [line for item in block.items for line in _wrap(item, "  - ", "    ")]


def _flow_rows(block):
    """(node, what flows into it, what it becomes at step t+1) for every node something flows into."""
    kinds = {n.id: n.kind for n in block.nodes}
    names = {n.id: _flow_name(n) for n in block.nodes}
    rows = []
    for node in block.nodes:
        into = [e.label if kinds[e.source] == "affine" else names[e.source]
                for e in block.edges if e.target == node.id and not e.recurrent]
        carried = [names[e.target] for e in block.edges if e.source == node.id and e.recurrent]
        if into:
            rows.append((names[node.id], into, carried))
    return rows


def _text_flow(block):
    rows = _flow_rows(block)
    width = max(len(name) for name, _, _ in rows)
    return [f"  {name.ljust(width)} ← {', '.join(into)}"
            + "".join(f"   ⇢ {c} of step t+1" for c in carried) for name, into, carried in rows
            ] + _wrap(_FLOW_CAPTION["list"], "  ", "  ")


def _flow_name(node):
    """g for "g = tanh(a_g)", W for the affine "W: ...", the label itself otherwise."""
    if node.kind == "affine":
        return node.label.split(":")[0]
    return node.label.split(" = ")[0]


def _text_table(block):
    def cell(c):
        return ", ".join(r.text for r in c) if isinstance(c, tuple) else _plain(c)

    rows = [tuple(block.header)] + [tuple(cell(c) for c in row) for row in block.rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(block.header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _unrolled_rows(block):
    return [f"forward:  {block.at('t-1')} → step t → {block.at('t')} → step t+1 → {block.at('t+1')}",
            f"back:     dy to {block.output}(t) from its own loss l(t); {block.nexts()} to {block.at('t')} from step "
            "t+1, which carries every later loss"]


def _text_unrolled(block):
    return [line for row in _unrolled_rows(block) for line in _wrap(row, "  ", " " * 12)]


_TEXT = {Prose: _text_prose, Math: _text_math, Bullets: _text_bullets, Flow: _text_flow, Table: _text_table,
         Unrolled: _text_unrolled}


# -- LaTeX ------------------------------------------------------------------------------------


def derivation_latex(d: Derivation, kernel_text=None, kernel_path=None) -> str:
    """A standalone LaTeX document (amsmath) of the derivation, numbered with \\tag."""
    cell = d.cell
    kernel_path = kernel_path or f"lstm_derive/kernels/{cell.name}.py"
    out = ["\\documentclass{article}", "\\usepackage{amsmath,amssymb}", "\\begin{document}",
           f"\\section*{{{_latex_prose(cell.title or cell.name)}}}", ""]
    for section in sections(d, kernel_text, kernel_path):
        out += [f"\\subsection*{{{_latex_prose(section.title)}}}", ""]
        for block in section.blocks:
            out += _LATEX[type(block)](block) + [""]
    return "\n".join(out + ["\\end{document}"]) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                  "%": r"\%", "_": r"\_", "^": r"\^{}", "~": r"\~{}", "⊙": r"$\odot$", "σ": r"$\sigma$", "±": r"$\pm$", "≈": r"$\approx$",
                  "²": r"$^2$", "×": r"$\times$", "Σ": r"$\Sigma$", "∂": r"$\partial$", "τ": r"$\tau$",
                  "·": r"$\cdot$", "\u2032": r"$'$", "→": r"$\rightarrow$",
                  ">": r"$>$", "<": r"$<$"}  # text mode's default encoding prints > as ¿


# Prose's bits of notation, set as math: a transpose, and a sum's index (Σ_b).
_LATEX_NOTATION = re.compile(r"\^T\b|Σ_[a-z]\b")


# A function's name before ' (relu'(a)): a derivative, set with a prime.
_PRIMED = re.compile("(" + "|".join(["σ", *SUPPORTED_FUNCTIONS]) + ")'")


def _latex_escape(text):
    text = _PRIMED.sub(lambda m: f"{m.group(1)}\u2032", text)  # a prime, not an apostrophe
    out, start = [], 0
    for m in _LATEX_NOTATION.finditer(text):
        out += [_LATEX_SPECIAL.get(c, c) for c in text[start:m.start()]]
        out.append("$^{\\top}$" if m.group() == "^T" else f"$\\Sigma_{m.group()[-1]}$")
        start = m.end()
    return "".join(out + [_LATEX_SPECIAL.get(c, c) for c in text[start:]])


def _latex_prose(text):
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    parts = text.split("`")
    return "".join(f"\\texttt{{{_latex_escape(p)}}}" if k % 2 else _latex_escape(p) for k, p in enumerate(parts))


def _latex_para(block):
    return [_latex_prose(block.text)]


def _latex_math(block):
    if block.number is None:
        return ["\\begin{equation*}", block.tex, "\\end{equation*}"]
    return ["\\begin{equation*}", f"{block.tex} \\tag{{{block.number}}}", "\\end{equation*}"]


def _latex_bullets(block):
    return ["\\begin{itemize}"] + [f"\\item {_latex_prose(i)}" for i in block.items] + ["\\end{itemize}"]


def _latex_flow(block):
    items = []
    for name, into, carried in _flow_rows(block):
        item = f"\\item {_latex_prose(f'`{name}`')} $\\leftarrow$ {_latex_prose(', '.join(f'`{v}`' for v in into))}"
        items.append(item + "".join(f"; it becomes {_latex_prose(f'`{c}`')} of step t+1" for c in carried))
    return ["\\begin{itemize}"] + items + ["\\end{itemize}", "", _latex_prose(_FLOW_CAPTION["list"])]


def _latex_table(block):
    def cell(c):
        return ", ".join(r.text for r in c) if isinstance(c, tuple) else _latex_prose(c)

    out = ["\\begin{tabular}{" + "l" * len(block.header) + "}",
           " & ".join(_latex_prose(h) for h in block.header) + " \\\\ \\hline"]
    out += [" & ".join(cell(c) for c in row) + " \\\\" for row in block.rows]
    return out + ["\\end{tabular}"]


def _latex_unrolled(block):
    return ["\\begin{itemize}"] + [f"\\item {_latex_prose(row)}" for row in _unrolled_rows(block)] + ["\\end{itemize}"]


_LATEX = {Prose: _latex_para, Math: _latex_math, Bullets: _latex_bullets, Flow: _latex_flow, Table: _latex_table,
          Unrolled: _latex_unrolled}
