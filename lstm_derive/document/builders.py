"""The sections, one builder each, in the order ``sections`` gives them: the forward pass, the
dataflow graph, the loss and notation, the backward pass, the carries to step t-1 (with what a carry
does over many steps), the gradients of the input and the parameters, backpropagation through time
as one listing, the notes (``notes``), when the kernel's text is given, the table of the kernel
lines that implement each equation, and how to gradient-check the kernel."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import PurePath

import sympy

from ..derive import Derivation, MatTerm, Step, summed
from ..functions import FUNCTIONS, SUPPORTED_FUNCTIONS, exp
from ..spec import Affine, Let
from .facts import (
    _as_written, _carries, _factor_text, _join, _line_spans, _numbers, _steady, kernel_lines, provenance,
)
from .model import Bullets, Flow, FlowEdge, FlowNode, Listing, Math, Prose, Ref, Section, Table, Unrolled
from .notes import _notes_section
from .printers import _block_names, _step_tex, _tex_name, _tex_stack, expr_latex, expr_text, step_result_text


def sections(d: Derivation, kernel_text=None, kernel_path="kernel.py"):
    """The document's sections; the kernel table only when the kernel's text is given."""
    out = [
        _forward_section(d),
        _dataflow_section(d),
        _loss_section(d),
        _backward_section(d, kernel_text),
        _carries_section(d),
        _gradients_section(d),
        _bptt_section(d),
        _notes_section(d),
    ]
    if kernel_text is not None:
        out.append(_kernel_section(d, kernel_text, kernel_path))
    return out + [_check_section(d)]


def _forward_section(d):
    cell = d.cell
    prevs = _join([f"`{s}_prev`" for s in cell.states])
    are = "are the states" if len(cell.states) > 1 else "is the state"
    defined = [f.definition.format(a=_placeholder(cell)) for f in FUNCTIONS if f.definition and _uses(cell, f.cls)]
    sigma = f", and {'; '.join(defined)}" if defined else ""
    renamed = [f"`{let.symbol}` is the new `{s}`, {s}(t)" for s, let in cell.updates.items() if str(let.symbol) != s]
    new = f" {'; '.join(renamed)[0].upper()}{'; '.join(renamed)[1:]}." if renamed else ""
    positive = _join([f"`{s}`" for s in cell.positive_states]) if cell.positive_states else ""
    if positive:  # a normaliser the cell divides by: the derivation holds only where it stays above 0
        many = len(cell.positive_states) > 1
        new += (f" {positive} {'are' if many else 'is'} declared positive: the cell needs "
                f"{'them' if many else 'it'} above 0 (a normaliser it divides by), as the equations below assume.")
    new += _pole_prose(d)

    def intro(written):
        return (f"One step. `{cell.inputs[0]}` is the input x(t); {prevs} {are} of step t-1.{new} "
                "Every named vector but the input has H components (the input has D); products of "
                f"vectors are elementwise (written {written}), only affine maps multiply by a matrix{sigma}.")

    blocks = [Prose(intro("⊙ in the equations, and `*` in code and the diagrams, where `·` is a matrix product and `**` "
                          "a power"),
                    plain=intro("* or ⊙ in the equations; a matrix product, ·; ** is a power"))]
    return Section("Forward pass", tuple(blocks + [_forward_math(eq, d) for eq in d.forward] + _shapes(d)))


# Where the kernel meets a zero of what a denominator reads, by kind (Cell.poles_of), and what to give instead;
# {them} and {are} agree with the names, {names} lists them.
_POLE_PROSE = {
    "state": ("as in the kernel's default initial state (zeros, for None)",
              "give its `forward` an initial {names} that {are} nonzero"),
    "parameter": ("and the kernel's `init_params` draws {them} uniform around zero, bringing steps near that pole, "
                  "where outputs and gradients grow without bound", "give its `forward` parameters with {names} away "
                  "from zero"),
}


def _pole_prose(d):
    """What the kernel's forward docstring says of a denominator that zero states make zero (its default
    initial state, zeros, is then no state to start from) or zero parameters do (init_params draws
    them around zero)."""
    return "".join(_pole_sentence(d, kind) for kind in _POLE_PROSE)


def _pole_sentence(d, kind):
    poles = d.cell.poles_of(kind)
    if not poles:
        return ""
    numbers = sorted({eq.number for eq in d.forward for let, _, _ in poles if eq.node is let})
    zeros = d.cell.zeros_divided_by(kind)
    many = len(zeros) > 1
    read = _join([f"`{n}_prev`" if kind == "state" else f"`{n}`" for n in zeros])
    why, instead = _POLE_PROSE[kind]
    words = {"names": _join([f"`{n}`" for n in zeros]), "them": "them" if many else "it", "are": "are" if many else "is"}
    return (f" {'Equations' if len(numbers) > 1 else 'Equation'} {_numbers(numbers)} "
            f"{'divide' if len(numbers) > 1 else 'divides'} by zero where {read} {words['are']} zero, "
            f"{why.format(**words)}: {instead.format(**words)}.")


def _placeholder(cell):
    """The argument the functions' rules are written in: a, unless the cell names a vector a that some
    call reads as part of its argument (an IndRNN's relu(a + u*h_prev)), where a rule in a would
    read as one about that vector."""
    names = {str(s) for s in cell.inputs + cell.params + cell.blocks + [let.symbol for let in cell.lets]}
    names |= {f"{s}_prev" for s in cell.states} | set(cell.parameter_names())
    calls = {c for let in cell.lets for c in let.expr.atoms(*SUPPORTED_FUNCTIONS.values())}
    if all(str(c.args[0]) == "a" for c in calls):  # rnn's h = tanh(a): the rule is about a itself
        names.discard("a")
    return next(p for p in ("a", "s", "q", "w", "y", "arg") if p not in names)


def _unnamed_call(d):
    """The first call of a function of the language that no let names (tanh(c) in h = o*tanh(c)), or None."""
    named = {let.expr for let in d.cell.lets}
    for let in d.cell.lets:
        calls = sorted(let.expr.atoms(*SUPPORTED_FUNCTIONS.values()), key=sympy.default_sort_key)
        found = next((c for c in calls if c not in named), None)
        if found is not None:
            return found
    return None


def _uses(cell, function):
    return any(let.expr.has(function) for let in cell.lets)


def _stacked_rows(a):
    """An affine's number of rows, H for each of its blocks stacked: H, 4H."""
    return f"{len(a.blocks)}H" if len(a.blocks) > 1 else "H"


def _shapes(d):
    """The affine maps' matrices: their shapes, and which rows hold which block."""
    parts = []
    for eq in d.forward:
        a = eq.node
        if not isinstance(a, Affine):
            continue
        k = _stacked_rows(a)
        sizes = _join([f"`{w}` is {k} × {'D' if v in d.cell.inputs else 'H'}" for w, v in zip(a.weights, a.inputs)]
                      + [f"`{b}` has {k} entries" for b in a.biases])
        rows = f"; their rows hold the blocks {_join([f'`{b}`' for b in a.blocks])} in this order, H each" if len(a.blocks) > 1 else ""
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
    return [Prose(text[0].upper() + text[1:] + "." + comma + _pre_activation_defined(d))]


def _pre_activation_defined(d):
    """What the sections call a pre-activation, with the cell's first activation as the example."""
    eq = next((eq for eq in d.forward if isinstance(eq.node, Let)
               and type(eq.node.expr) in SUPPORTED_FUNCTIONS.values()), None)
    if eq is None:
        return ""
    arg = expr_text(_as_written(eq.node.expr.args[0], d), d, written=True)
    return (f" A pre-activation is what an activation function reads, as `{eq.lhs[0]} = {expr_text(eq.shown, d, written=True)}` "
            f"in ({eq.number}) reads `{arg}`.")


def _forward_math(eq, d):
    if eq.rhs is not None:
        name = str(eq.lhs[0])
        return Math(f"{_tex_name(name)} = {expr_latex(eq.shown, d, written=True)}",
                    (f"{name} = {expr_text(eq.shown, d, written=True)}",), eq.number)
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
              "derivative (d: through every node that v reaches, in step t and, through the states it hands on, "
              "in later steps), whereas ∂ is a partial one (the other inputs held fixed). Outside that rule: "
              f"`dy` is the gradient of this step's own loss l(t) alone, y(t) = {y}(t) being the step's output; "
              f"{nexts} {'are the gradients' if len(d.cell.states) > 1 else 'is the gradient'} of L(t+1), carried "
              "back from step t+1 (at the last step, t = T, the gradient of l_final: the kernel's `dstate`, zero by "
              f"default); {_outside_the_rule(d)}. Steps count from 1 here and from 0 in the kernel's arrays: step "
              "t's `dy` is `dys[t-1]`. Since the losses of earlier steps do not depend on step t, dL/dv = dL(t)/dv "
              "for a vector v of step t." + _shared_note(d)),
        Math(r", \quad ".join(defs), (",  ".join(text_defs),)),
        _carried_and_summed_math(d),
        *_output_gradient(d, y),
        Unrolled(tuple(cell.states), y),
        *([Prose("L(t+1) is read as a function of the states step t hands on: "
                 f"{nexts} are its partial derivatives, each with the other states held fixed. The paths "
                 "between the states inside step t are in the equations below, so none is counted twice.")]
          if len(cell.states) > 1 else []),
        Prose("With a batch, l(t) sums the losses of the B sequences (for their mean, `dys` carries the 1/B), "
              "and every vector is that of one sequence j of the batch at step t, written v(t, j) where that "
              "matters: the adjoints and carries are each sequence's own, and only the parameters' gradients "
              "sum over j. Each such vector is a column here; the kernel holds a step's B rows as one (B, H) array, so W^T da is `da @ W` "
              "there, and Σ_j da x^T is `da.T @ x`."),
    ))


def _outside_the_rule(d):
    """The carries to step t-1 and the parameters' gradients, which are no dL(t)/dv of step t's v."""
    states = d.cell.states
    prevs, nexts = (", ".join(f"`d{s}_{when}`" for s in states) for when in ("prev", "next"))
    many = len(states) > 1
    held = f", each with the other state{'s' if len(states) > 2 else ''} held fixed" if many else ""
    text = (f"{prevs}, which step t carries back and step t-1 reads as {nexts}, "
            f"{'are the partial derivatives' if many else 'is the gradient'} of L(t) with respect to "
            f"{', '.join(f'{s}(t-1)' for s in states)}{held}")
    grads = [f"`d{g.name}`" for g in d.param_grads]
    if not grads:
        return text
    shares = [s for s in d.steps if s.kind == "param"]
    share = (f" ({shares[0].adjoint}(t, j){' and the like' if len(shares) > 1 else ''}, below, "
             f"{'are the shares' if len(shares) > 1 else 'is the share'} of step t and sequence j)" if shares else "")
    return (f"{text}; and the parameters' gradients, {_join(grads)}, are those of the whole loss L, summed over "
            f"every step and sequence{share}, not of L(t)")


def _carried_and_summed_math(d):
    """dh_prev := ∂L(t)/∂h(t-1), ..., and dθ := dL/dθ for a parameter θ."""
    tex = [rf"{_tex_name(f'd{s}_prev')} := \frac{{\partial L(t)}}{{\partial {s}(t-1)}}" for s in d.cell.states]
    text = [f"d{s}_prev := ∂L(t)/∂{s}(t-1)" for s in d.cell.states]
    if d.param_grads:
        tex.append(r"d\theta := \frac{\mathrm{d} L}{\mathrm{d} \theta} \text{ for a parameter } \theta")
        text.append("dθ := dL/dθ for a parameter θ")
    return Math(r", \quad ".join(tex), (",  ".join(text),))


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


def _backward_section(d, kernel_text=None):
    steps = [s for s in d.steps if s.kind in ("state", "let", "block")]
    maths = [_step_math(s, d) for s in steps]
    # why a block's adjoint stands for its gate's whole pre-activation: said before the first equation
    # that reads it so, not after the later equations a student would meet it in unexplained
    first = next((j for j, s in enumerate(steps) if any(t.pre is not None for t in s.terms)), len(steps))
    maths[first:first] = [Prose(text) for text in _pre_activation_prose(d)]
    return Section("Backward pass", tuple(
        [Prose("One step, from its last node back to its first, in the reverse of the script's order. An "
               "affine's blocks come after the nodes that read them; a block whose adjoint an earlier equation "
               "needs comes right after the node that reads it."),
         Bullets(_backward_rules(d, kernel_text))] + maths))


# A gate's tanh computed as 2σ(2a) - 1 rounds to 1 sooner than tanh (as measured with NumPy, from
# a = 18.37 and 8.32 in float64 and float32, where tanh rounded correctly does from 19.06 and 9.01), and
# to -1 from -19.06 and -9.01, where tanh rounded correctly does: NumPy's SIMD np.tanh differs from both
# (functions.py). The true derivative there is below 2 eps; the functions' own bounds are their records'.
_TANH_GATES = (" The kernel computes {gates} as 2σ(2a) - 1 of {its} argument a, which reaches 1 sooner than tanh, "
               "past a ≈ 18.4 (float32: 8.3), and -1 where tanh does, past a ≈ -19.1 (float32: -9.0).")


def _backward_rules(d, kernel_text=None):
    """How to read the equations below: the chain rule, the two forms, output form."""
    rules = ["For a node v, dv sums one term for each node u that reads v: du ⊙ ∂u/∂v, where ∂u/∂v is the "
             "derivative of u's own equation with u's other inputs held fixed (an elementwise node's Jacobian "
             "is diagonal, so ∂u/∂v is written as that diagonal, and the product is elementwise, ⊙). A new "
             "state adds what step t+1 carries back.",
             _affine_rule(d),
             "Most equations give that sum first, then the same in the step's stored values, which the kernel "
             "reads. The kernel multiplies the local derivatives first, so it need not form every adjoint: "
             "Kernel lines, below, gives the lines that finish each equation."]
    output_form = _output_form_rule(d)
    if output_form is None:
        return tuple(rules)
    saturation = _saturation_rule(d, kernel_text)
    return tuple(rules + [output_form] + ([saturation] if saturation else []))


def _output_form_rule(d):
    """The rule for the derivatives of the cell's functions, in output form; None where the cell
    calls none."""
    forms, names, functions = [], [], []
    for function in FUNCTIONS:
        example = next((let for let in d.cell.lets if isinstance(let.expr, function.cls)), None)
        if example is not None:
            functions.append(function)
            names.append(function.prose_name)
            forms.append(f"{function.rule.format(a=_placeholder(d.cell))} is {function.form.format(v=example.symbol)} "
                         f"for `{example.symbol} = {names[-1]}({expr_text(_as_written(example.expr.args[0], d), d, written=True)})`")
    if not forms:
        return None
    them = "them" if len(names) > 1 else "it"
    calls = ""
    called = [f"{f.name}'s {f.derivative_calls}" for f in FUNCTIONS  # one inside a let too
              if f.derivative_calls and _uses(d.cell, f.cls)]
    if any(f.spares_calls for f in functions):
        calls = f", and calls no exp or tanh to differentiate {them}" + (f" but {_join(called)}" if called else "")
    elif called:
        calls = f", and calls only {_join(called)}, to differentiate {them}"
    # a call no node names (an SRU's tanh(c)) is kept and differentiated in output form too
    unnamed = _unnamed_call(d)
    kept = (f" `{expr_text(unnamed, d)}`, which no node names, is stored by the forward pass too, and its "
            "derivative reads that stored value." if unnamed is not None else "")
    return (f"Derivatives are in output form, written with the node's own stored value ({'; '.join(forms)}): "
            f"no derivative of {_join(names, 'or')} reads its argument, so the backward pass reads the stored "
            f"outputs alone{calls}.{kept}")


def _saturation_rule(d, kernel_text):
    """Where the cell calls a function that saturates: that output form's derivative is 0 where the
    output rounds to its bound; "" where it calls none."""
    saturating = [f for f in FUNCTIONS if f.saturates and _uses(d.cell, f.cls)]
    if not saturating:
        return ""
    bounds = (f"float64: {', '.join(f.saturates[0].format(a=_placeholder(d.cell)) for f in saturating)}; "
              f"float32: {', '.join(f'{f.prose_name} past {f.saturates[1]}' for f in saturating)}")
    gates = _tanh_through_sigmoid(d, kernel_text)
    through_exp = _TANH_GATES.format(gates=_join([f"`{g}` ({n})" for g, n in gates]),
                                     its="its" if len(gates) == 1 else "their") if gates else ""
    return (f"Output form is exact to rounding in absolute terms, not in relative ones: where a stored "
            f"output rounds to its bound ({bounds}), its derivative comes out 0. The true one there is "
            "below 2 eps, twice the machine epsilon (4.4e-16; float32 2.4e-7): smaller than the rounding "
            f"error of any term of order 1 it is added to.{through_exp}")


def _affine_rule(d):
    """Why an affine's term is a product with the weight's transpose, said with the cell's names: the
    first weight that reads a previous state (the recurrence), else the first weight."""
    prevs = {d.cell.prev(s) for s in d.cell.states}
    pairs = [(a, w, v) for a in d.cell.affines for w, v in zip(a.weights, a.inputs)]
    a, w, v = next((pair for pair in pairs if pair[2] in prevs), pairs[0])
    stacked = _block_names(d)[a.name]
    blocks = f"[{'; '.join(map(str, a.blocks))}]" if len(a.blocks) > 1 else str(a.blocks[0])
    grad = next(g.number for g in d.param_grads if g.name == w)
    return (f"An affine node's term is a matrix product. The derivative of `{a.name}`'s output `{blocks}` with "
            f"respect to `{v}` is the matrix `{w}`, so its term in `d{v}` is `{w}^T·{stacked}`: the transpose "
            f"sums, for each entry of `{v}`, its effect on every entry of the output. Its term in `d{w}` is the "
            f"outer product `{stacked}·{v}^T`, summed over the steps and the sequences in ({grad}).")


def _tanh_through_sigmoid(d, kernel_text):
    """(gate, equation number) for every tanh gate the kernel computes as 2 sigmoid(2a) - 1, read off
    its comments (none without the kernel's text)."""
    numbers = {n for cited, _, _, comment in provenance(kernel_text or "")
               if "tanh(a) = 2 sigmoid(2a) - 1" in comment for n in cited}
    return [(eq.lhs[0], eq.number) for eq in d.forward if eq.number in numbers]


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
    shown = expr_text(_as_written(pre, d), d, written=True)
    text = (f"`{block.target}` enters `{gate}`'s pre-activation `{shown}` alone, with "
            f"coefficient 1, and nothing else reads it: so `{adj}` = dL/d{block.target} is "
            f"`dL/d({shown})` too, which the pre-activation's other inputs read. "
            f"({step.number}) takes `{takes}` for `{step.target}`, the same as "
            f"`{_chain_text(d, [term.local, local.local], local.adjoint)}`")
    if len(uses) > 1:
        text += f"; {_numbers([s.number for s, _ in uses[1:]])} {'reads' if len(uses) == 2 else 'read'} the same `{adj}`"
    likewise = [f"`{a}` for `{expr_text(_as_written(p, d), d, written=True)}` in {_numbers([s.number for s, _ in u])}" for a, (p, _, u) in others]
    return [text + (f". Likewise {'; '.join(likewise)}." if likewise else ".")]


def _chain_text(d, factors, adjoint=None):
    """A chain of local derivatives as text, in the order the chain applies them, each factor's own
    in SymPy's: p_o*o*(1 - o)*do, the pre-activation's coefficient, then the gate's derivative. One
    SymPy product would sort them all together, o*p_o*(1 - o)*do. Their numbers lead, 1 dropped."""
    number, texts = sympy.Integer(1), []
    for factor in factors:
        coefficient, rest = factor.as_coeff_Mul()
        number *= coefficient
        if rest != 1:
            texts.append(_factor_text(d, rest))
    texts += [str(adjoint)] if adjoint is not None else []
    if not texts:
        return expr_text(number, d)
    return ("" if number == 1 else "-" if number == -1 else f"{expr_text(number, d)}*") + "*".join(texts)


def _times_text(expr, adjoint, d):
    """expr*adjoint as text, a sum in parentheses: (1 + u)*da, not 1 + u*da."""
    text = expr_text(expr, d)
    return f"({text})*{adjoint}" if isinstance(expr, sympy.Add) else f"{text}*{adjoint}"


def _step_math(step: Step, d):
    """dv = (the chain-rule sum) = (its output form); once when the two are the same."""
    lhs, lhs_tex = str(step.adjoint), _tex_name(str(step.adjoint))
    if step.kind == "param":  # one step's and row's share; the sum over them comes with the weights'
        lhs, lhs_tex = f"{lhs}(t, j)", f"{lhs_tex}(t, j)"
    chain = [_chain_term(t, step, d) for t in step.terms]
    chain_text = " + ".join(text for text, _ in chain) or "0"
    chain_tex = " + ".join(tex for _, tex in chain) or "0"
    result_text = step_result_text(step, d)
    if chain_text == result_text:
        return Math(f"{lhs_tex} = {chain_tex}", (f"{lhs} = {chain_text}",), step.number)
    if len(chain_text) + len(result_text) <= _ONE_LINE:
        tex = f"{lhs_tex} = {chain_tex} = {_step_tex(step, d)}"
    else:  # the two forms one under the other, as the text form has them: one line would scroll
        tex = f"\\begin{{aligned}} {lhs_tex} &= {chain_tex} \\\\\n&= {_step_tex(step, d)} \\end{{aligned}}"
    return Math(tex, (f"{lhs} = {chain_text}", f"= {result_text}"), step.number)


_ONE_LINE = 80  # characters of an equation's two forms, as text, that one displayed line takes


def _chain_term(term, step, d):
    """One term of a step's chain-rule sum, as (text, TeX), each kind of term in both forms side by
    side: the loss's and the next step's partial derivatives, a matrix term, and an adjoint times
    the local derivative of its consumer (or of the whole pre-activation the term reads)."""
    v, v_tex = step.target, _tex_name(str(step.target))
    if term.consumer == "loss":
        return f"∂l(t)/∂{v}", rf"\frac{{\partial l(t)}}{{\partial {v_tex}}}"
    if term.consumer == "next step":
        return f"∂L(t+1)/∂{v}", rf"\frac{{\partial L(t+1)}}{{\partial {v_tex}}}"
    if isinstance(term.local, MatTerm):
        return expr_text(term.local, d), expr_latex(term.local, d)
    adj_tex = _tex_name(str(term.adjoint))
    if term.pre is not None:
        pre = _as_written(term.pre, d)
        return (f"{term.adjoint} ⊙ ∂({expr_text(pre, d, written=True)})/∂{v}",
                rf"{adj_tex} \odot \frac{{\partial \left({expr_latex(pre, d, written=True)}\right)}}{{\partial {v_tex}}}")
    return (f"{term.adjoint} ⊙ ∂{term.consumer}/∂{v}",
            rf"{adj_tex} \odot \frac{{\partial {_tex_name(term.consumer)}}}{{\partial {v_tex}}}")


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
    """What each carry does over many steps. The gradient that reaches a state from a later loss
    sums paths through the states of the steps between, a factor for each step: along the state
    alone, a direct factor compounds into a product over the steps (a power, for a factor no step
    changes), and paths through gates' pre-activations add to that factor at every step; a path
    through a weight matrix at every step makes a product of matrices. A path that enters another
    state meets the matrices between once, then that state's own factors; one that mixes the kinds
    of step takes a matrix only at the steps that pass one."""
    paragraphs = [_compounding(d, state, step, into.adjoint) for state, step, into in _carries(d)]
    return [p for p in paragraphs if p is not None]


def _compounding(d, state, step, own):
    """The paragraph on how d<state>_prev compounds over many steps (own: its new value's adjoint,
    which the carry reads), or None where no path shows it."""
    parts = _compounding_paths(d, state, step, own)
    head = f"Over many steps, `d{state}_prev` compounds. The gradient that reaches {state}(t) from the loss of a later step τ"
    if len(parts) == 1:
        return Prose(f"{head}: {parts[0]}.")
    if parts:  # one sentence for each kind of path
        return Prose(f"{head} sums paths through the states of the steps between, each a product of one factor "
                     "per step. " + " ".join(f"{p[0].upper()}{p[1:]}." for p in parts))
    return None


def _compounding_paths(d, state, step, own):
    """One clause for each kind of path by which a later loss's gradient reaches the state."""
    direct, through_pre = _own_factors(d, state, step, own)
    moves = _transitions(d, state)
    elementwise, matrices = moves.get(state, (False, []))
    weights, several = _weights_text(d, matrices), len(matrices) > 1
    entered = [s for s in moves if s != state and moves[s][1]]
    crosswise = _crosswise(d, state, step, own)
    both = bool(matrices) and bool(through_pre or len(direct) == 1)  # a GRU's h: z*h_prev, and U_h
    alone = f"along `{state}` alone" if entered or crosswise else ""
    term = _direct_term(d, state, direct[0].local) if both and len(direct) == 1 and not through_pre else None
    path = f"along `{state}` alone"
    if both:
        path = f"through `{term}` at every step" if term else f"along `{state}`'s elementwise paths alone"
    parts = []
    if through_pre:
        parts.append(_through_pre_activations(d, state, direct[0] if len(direct) == 1 else None, through_pre, path))
    elif len(direct) == 1:
        parts.append(_along_the_state(d, state, direct[0].local, path))
    if matrices:
        parts.append(_through_matrices(weights, several, alone, both or entered or crosswise or elementwise))
    if both:
        taken = f"`{term}`" if term else "the elementwise paths"
        parts.append(f"a path that takes {taken} at some steps and {weights} at others picks up "
                     f"{'those matrices' if several else 'the matrix'} only at the latter")
    for other, t in crosswise:
        parts.append(f"through the new `{other}` (times `{expr_text(t.local, d)}`), it joins `{other}`'s carry, "
                     "so over the steps between the two states' factors multiply in turn")
    parts += [_entering(d, other, moves[other][1]) for other in entered]
    if entered:
        parts.append("a path that moves between the states takes the factors of its steps in turn, a matrix "
                     "only at the steps that pass one")
    return parts


def _crosswise(d, state, step, own):
    """(other state, term) for each term of the carry through another state's new value (h_prev
    read by c's new value)."""
    new_of = {str(let.symbol): other for other, let in d.cell.updates.items() if other != state}
    return [(new_of[t.consumer], t) for t in step.terms
            if t.adjoint is not None and t.adjoint != own and t.pre is None and t.consumer in new_of]


def _through_matrices(weights, several, alone, among_others):
    """The clause on the paths through weight matrices at every step; among_others: one kind of
    path among others."""
    which = "those matrices, one or more in turn along each path," if several else "that matrix"
    if among_others:
        lead = f"{alone + ', ' if alone else ''}through {weights} at every step, it is multiplied by {which}"
    else:
        lead = f"through {weights}, it is multiplied at every step by {which}"
    return (f"{lead} and by the local derivatives of the nodes between, a product of matrices over the "
            "steps between, whose size can shrink or grow geometrically with τ - t: the vanishing and "
            "exploding gradients of recurrent networks")


def _own_factors(d, state, step, own):
    """The carry's terms that stay in the state within one step: its direct factors (the new value
    reads the previous one as it is), and its paths through the pre-activations that the new value
    reads (a peephole into a gate of another state's does not stay)."""
    direct = [t for t in step.terms if t.adjoint == own and t.pre is None and not isinstance(t.local, MatTerm)]
    reaching = _read_by_new_value(d, state)
    through_pre = [t for t in step.terms if t.pre is not None and sympy.Symbol(t.consumer, real=True) in reaching]
    return direct, through_pre


def _transitions(d, state):
    """{state s: (elementwise, matrices)} for one step from `state`: whether the new s reads
    `state`_prev through lets alone (a diagonal factor), and the weights, as (weight, the vector it
    reads), of the affines on the paths from `state`_prev to the new s that pass one: a GRU's U_h,
    a GRU's W_n_rh through rh = r*h_prev, an mLSTM's N_h and then W_m through m = a_mx*a_mh."""
    prev = d.cell.prev(state)
    elementwise, matrices = {prev}, {}  # matrices: symbol -> the weights on the paths to it
    for node in d.cell.nodes:
        if isinstance(node, Affine):
            found = []
            for w, v in zip(node.weights, node.inputs):
                if v in elementwise or v in matrices:
                    found += [pair for pair in matrices.get(v, []) + [(w, v)] if pair not in found]
            if found:
                matrices.update({b: found for b in node.blocks})
            continue
        reads = node.expr.free_symbols
        if reads & elementwise:
            elementwise.add(node.symbol)
        found = []
        for v in _ordered(d.cell, reads):
            found += [pair for pair in matrices.get(v, []) if pair not in found]
        if found:
            matrices[node.symbol] = found
    moves = {}
    for s, let in d.cell.updates.items():
        if let.symbol in elementwise or let.symbol in matrices:
            moves[s] = (let.symbol in elementwise, matrices.get(let.symbol, []))
    return moves


def _weights_text(d, matrices):
    """`W_h^T`, or `W_n_rh^T` (through `rh`) for a weight that reads a let of the previous state."""
    prevs = {d.cell.prev(s) for s in d.cell.states}
    return _join([f"`{w}^T`" if v in prevs else f"`{w}^T` (through `{v}`)" for w, v in matrices]) if matrices else ""


def _direct_term(d, state, local):
    """The term of the state's new value that reads its previous value as it is (`z*h_prev` in a
    GRU's h = (1 - z)*n + z*h_prev), as the script writes it; None where no one term does."""
    prev, symbol = d.cell.prev(state), d.cell.updates[state].symbol
    eq = next(eq for eq in d.forward if getattr(eq.node, "symbol", None) == symbol)
    shown = eq.shown if eq.shown is not None else eq.rhs
    terms = [a for a in (shown.args if isinstance(shown, sympy.Add) else (shown,)) if a.has(prev)]
    if len(terms) != 1:
        return None
    # Its coefficient first: a term not linear in prev (tanh of a deep nest) is none, and expanding
    # such a term takes minutes where its nest is a few levels deep.
    coefficient = terms[0].doit() / prev
    if not coefficient.has(prev) and sympy.expand(coefficient - local) == 0:
        return expr_text(terms[0], d, written=True)
    return None


def _entering(d, other, matrices):
    """A path from a state into another one through matrices: it meets them at that step, then, while
    it stays, the other state's own factors (elementwise alone, for an LSTM's c)."""
    several = len(matrices) > 1
    meets = (f"meets {_weights_text(d, matrices)}, one or more in turn, at the one step where it enters" if several
             else f"meets {_weights_text(d, matrices)} once, at the step where it enters")
    meets += " (with the local derivatives of the nodes between)"
    elementwise, own = _transitions(d, other).get(other, (False, []))
    if own:
        return f"a path that enters `{other}` {meets}, and then the factors of `{other}`'s own carry"
    if not elementwise:
        return f"a path that enters `{other}` {meets}"
    step, into = next((step, into) for s, step, into in _carries(d) if s == other)
    direct, through_pre = _own_factors(d, other, step, into.adjoint)
    if through_pre:
        stays = f"the product of `{_own_sum(d, other, direct[0] if len(direct) == 1 else None, through_pre)}` over the steps after"
    elif len(direct) == 1:
        local, g = direct[0].local, expr_text(direct[0].local, d)
        stays = (f"{g} at each step after" if local.is_Number
                 else f"`{g}` at each step after" if local.free_symbols <= _steady(d.cell)
                 else f"the product of `{g}` over the steps after")
    else:
        stays = "elementwise factors at each step after"
    return f"a path that enters `{other}` and stays there {meets}, and then no matrix, only {stays}"


def _along_the_state(d, state, local, path):
    """The carry's one direct factor, compounded over the steps between; path: which paths these are
    (along `c` alone; through `z*h_prev` at every step, where a matrix is another path)."""
    g = expr_text(local, d)
    grows = (f"over steps where |{g}| < 1 it shrinks, where |{g}| = 1 it passes unchanged in size, and where "
             f"|{g}| > 1, if {g} can get there, it grows geometrically")
    if _in_unit_interval(d, local):  # a gate, or one minus a gate: it can only fade
        grows = f"{g} lies in (0, 1), so it fades as fast as {g} is below 1, and hardly at all where {g} is near 1"
    elif isinstance(_value(d, local), _ZERO_OR_ONE):  # [u > 0]: all or nothing
        grows = (f"{g} is 0 or 1, so the gradient passes unchanged while {g} is 1 at every step between, and is cut "
                 f"at the first step where it is 0")
    start = f"{path}, it is multiplied by `{g}`"
    if local.is_Number:  # a fixed leak: its power, exactly
        fate = ("it fades geometrically" if abs(local) < 1 else "it grows geometrically" if abs(local) > 1
                else "it passes unchanged in size")
        return f"{path}, it is multiplied by {g}^(τ - t): {fate}"
    if local.free_symbols <= _steady(d.cell):  # a parameter, or a let of them: no step of its own
        return f"{start}, the same at every step, τ - t times: {grows}"
    at = f"{g}" if g.replace("_", "").isalnum() else f"({g})"
    product = f"the product {at}(t+1) {at}(t+2) ... {at}(τ)" if len(g) <= 12 else "the product of its values at steps t+1 to τ"
    return f"{start} of every step between, {product}: {grows}"


def _own_sum(d, state, direct, through_pre):
    """The factor a carry through pre-activations multiplies by at every step, in the stored values:
    f + p_i*g*i*(1 - i) + ..., each path's coefficient times what the equations between multiply
    the new value's adjoint by to give the pre-activation's (∂c/∂a_i would be no local derivative:
    c's own equation does not read a_i)."""
    own = d.step_for(d.cell.updates[state].symbol).adjoint
    paths = [_chain_text(d, [t.local, *path]) for t in through_pre for path in _paths_between(d, t.adjoint, own)]
    return summed(([_factor_text(d, direct.local)] if direct else []) + paths)


def _paths_between(d, adjoint, own, depth=0):
    """The elementwise paths by which step t's equations give `adjoint` from `own`, each as its local
    derivatives in the order the chain applies them (da_i from dc: [i*(1 - i), g]); none where none
    leads back to own."""
    if adjoint == own:
        return [[]]
    step = next((s for s in d.steps if s.adjoint == adjoint), None)
    if step is None or depth > 100:
        return []
    return [[t.local, *path] for t in step.terms if t.adjoint is not None and not isinstance(t.local, MatTerm)
            for path in _paths_between(d, t.adjoint, own, depth + 1)]


def _through_pre_activations(d, state, direct, through_pre, path):
    """A carry that also reaches the state through gates' pre-activations (a peephole): per step,
    the paths add, so what compounds is their sum, not each factor alone."""
    total = _own_sum(d, state, direct, through_pre)
    pres = _join([f"`{expr_text(_as_written(t.pre, d), d, written=True)}`" for t in through_pre])
    several = len(through_pre) > 1
    first = expr_text(direct.local, d) if direct else ""
    text = (f"{path}, it is multiplied at every step between by `{total}`: "
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


# The functions' values whatever their arguments, for what a carry's factor does over many steps.
_POSITIVE = tuple(f.cls for f in FUNCTIONS if f.positive)
_UNIT_INTERVAL = tuple(f.cls for f in FUNCTIONS if f.unit_interval)
_ZERO_OR_ONE = tuple(f.slope.cls for f in FUNCTIONS if f.slope and f.slope.zero_or_one)


def _positive_valued(d, expr, depth=0):
    """Whether expr is above 0 whatever the inputs: a function's output that is (softplus, exp,
    sigmoid: their records' positive), a positive number, a product or sum of such values, or a
    let whose value is one."""
    if depth > 10:
        return False
    expr = _value(d, expr)
    if expr.is_Number:
        return expr > 0
    if isinstance(expr, _POSITIVE):
        return True
    if isinstance(expr, (sympy.Mul, sympy.Add)):
        return all(_positive_valued(d, a, depth + 1) for a in expr.args)
    return False


def _in_unit_interval(d, expr, depth=0):
    """Whether expr lies in (0, 1) whatever the inputs: a function's output that does (a sigmoid:
    its record's unit_interval), one minus such a value, a product of such values, or a let whose
    value is one of these."""
    if depth > 10:
        return False
    expr = _value(d, expr)
    if isinstance(expr, _UNIT_INTERVAL):
        return True
    if isinstance(expr, exp):  # exp(-softplus(a)) = sigmoid(-a)
        return _positive_valued(d, -expr.args[0], depth + 1)
    if isinstance(expr, sympy.Mul):
        return all(_in_unit_interval(d, f, depth + 1) for f in expr.args)
    if isinstance(expr, sympy.Add) and 1 in expr.args:
        return _in_unit_interval(d, sympy.expand(1 - expr), depth + 1)
    return False


def _ended_carries(d):
    """What a step past a sequence's end carries back, state by state: the adjoint that reaches the
    new state, which the identity passes to the previous one (dy + dh_next for dh_prev)."""
    return [("dy + " if s == d.cell.output_state else "") + f"d{s}_next" for s in d.cell.states]


def _ended_zeros(d):
    """The adjoints that the input's and the parameters' gradients read, in the listing's words: the
    affines' blocks and a parameter's per-step share; zero for the rows of a sequence that has ended."""
    numbered = dict(d.numbered())
    return ([f"d{b}" for a in d.cell.affines for b in a.blocks]
            + [numbered[s.number] for s in d.steps if s.kind == "param"])


def _ended_prose(d):
    """The carries of a step past a sequence's end, where the step is the identity."""
    states = list(d.cell.states)
    kept = _join([f"`{s} = {s}_prev`" for s in states])
    passed = _join([f"`d{s}_prev = {carry}`" for s, carry in zip(states, _ended_carries(d))])
    return Prose(f"In a batch of sequences of different lengths (the kernel's `lengths`), sequence j ends "
                 f"after step lengths[j] and keeps its state: for its rows every step t > lengths[j] is the "
                 f"identity, {kept}, and the final state is that of step lengths[j] (the initial state for 0). Its "
                 f"carries are then the adjoints that reach the new state, {passed}, and such a step adds "
                 "nothing to the parameters' and the input's gradients below: the adjoints of its "
                 "pre-activations are zero. Its `dy` there still reaches the kept state, as its output there "
                 "repeats it: for padding that should carry no loss, `dys` is zero there.")


def _gradients_section(d):
    blocks = [Prose("The same parameters serve every step and every row, as if each had its own copy, "
                    "so their gradients are sums over the steps t and the sequences j of the batch of each "
                    "copy's gradient (outer products for the weights); the input's gradient is one product per step and "
                    "row. The kernel computes them all after the backward loop, for all steps at once.")]
    blocks += [_step_math(s, d) for s in d.steps if s.kind in ("param", "input")]
    blocks += [_grad_math(g, d) for g in d.param_grads]
    return Section("Gradients of the input and the parameters", tuple(blocks + [_gradient_shapes(d)]))


def _gradient_shapes(d):
    """The shapes of the backward pass's quantities, read off the affines, to check the equations by:
    an affine's stacked adjoint, its products with the weights' transposes, and the gradients of its
    weights and biases, each the shape of what it is the gradient of."""
    cell = d.cell
    inputs = _join([f"d{x}" for x in cell.inputs])
    sentences = [f"Shapes, for a check: an adjoint has its vector's shape, H entries per sequence and (B, H) for a "
                 f"batch ({inputs}: D, and (B, D))"]
    quoted = next(a for a in cell.affines if set(a.inputs) & set(cell.inputs))  # the one line quoted from the kernel
    for eq in d.forward:
        a = eq.node
        if not isinstance(a, Affine):
            continue
        k = _stacked_rows(a)
        stacked = _block_names(d)[a.name]
        da = stacked if len(a.blocks) == 1 else _STACKED_ADJOINT.format(a.name)
        size = {v: "D" if v in cell.inputs else "H" for v in a.inputs}
        products = [f"`{w}^T·{da}` has {size[v]} entries like {v}" for w, v in zip(a.weights, a.inputs)]
        grads = []
        for w, v in zip(a.weights, a.inputs):
            grad = f"d{w} = Σ {da} {v}^T is {k} × {size[v]} like `{w}`"
            if a is quoted and v in cell.inputs:
                flat = f"{_STACKED_ADJOINT.format(a.name)}_flat"
                called = "" if str(v) == "x" else f", the kernel's `x` holds {v}"  # its argument's name in every kernel
                # one block's adjoint keeps its own name above, so the kernel's name for it is new here
                aka = "" if da == _STACKED_ADJOINT.format(a.name) else f" (the kernel's {_STACKED_ADJOINT.format(a.name)})"
                grad += (f" (computed as `{flat}.T @ np.ascontiguousarray(x).reshape(T * B, D)`, where `{flat}` stacks the rows of {da}{aka} of "
                         f"every step and sequence{called}: ({k}, TB) times (TB, D))")
            grads.append(grad)
        grads += [f"d{b} has {k} entries like `{b}`" for b in a.biases]
        named = f"{da} = {stacked}, the kernel's name for the stacked adjoint," if da != stacked else da
        sentences.append(f"In ({eq.number}), {named} has {k} entries ((B, {k}) for a batch); {_join(products)}; {_join(grads)}")
    if cell.params:
        many = len(cell.params) > 1
        sentences.append(f"The elementwise parameters' gradient{'s' if many else ''} {_join([f'd{p}' for p in cell.params])} "
                         f"{'have' if many else 'has'} H entries like {_join([f'`{p}`' for p in cell.params])}")
    return Prose(". ".join(sentences) + ".")


# The kernel's name for an affine's stacked adjoint (the spec reserves it, Cell._affine_names, so no
# name in any cell clashes with it); the document writes it as the kernel does, to be read side by side.
_STACKED_ADJOINT = "dpre_{}"


def _bptt_section(d):
    """The backward pass over a sequence, as one listing that cites the equations by number: what
    the forward pass keeps, the starting values, the loop t = T, ..., 1 and what comes out."""
    numbered, states = dict(d.numbered()), list(d.cell.states)

    def names(steps):
        return ", ".join(numbered[s.number] for s in steps)

    def cited(numbers):
        return _numbers(list(numbers))

    groups = [[s for s in d.steps if s.kind in kinds] for kinds in (("state", "let", "block"), ("carry",), ("param",))]
    (dx,) = [s for s in d.steps if s.kind == "input"]
    prevs, nexts = (", ".join(f"d{s}_{when}" for s in states) for when in ("prev", "next"))
    grads = ", ".join(f"d{g.name}" for g in d.param_grads)
    gradient = f"gradient{'s' if len(states) > 1 else ''}"
    news, olds = ", ".join(states), ", ".join(f"{s}_prev" for s in states)
    lines = [("forward, t = 1, ..., T: ", f"{cited(eq.number for eq in d.forward)}, then {news} = {olds} for the rows j "
              f"with t > lengths[j]; keep {', '.join(_kept(d))}"),
             ("", f"{nexts} = dstate, the gradient of l_final (zero by default)"),
             ("", f"{grads} = 0"),
             ("", "for t = T, ..., 1:"),
             ("    ", "dy = dys[t-1], the gradient of l(t)")]
    lines += [(f"    {cited(s.number for s in steps)}: ", names(steps)) for steps in groups if steps]  # in their order
    # a sequence that has ended: the step is the identity for its rows (the kernel's masked steps)
    lines += [("    ", "for the rows j with t > lengths[j], where the step is the identity:"),
              ("        ", f"{prevs} = {', '.join(_ended_carries(d))}"),
              ("        ", f"{', '.join(_ended_zeros(d))} = 0")]
    lines += [(f"    ({dx.number}): ", f"{numbered[dx.number]} of step t"),
              (f"    {cited(g.number for g in d.param_grads)}: ", f"add step t's terms to {grads}"),
              ("    ", f"{nexts} = {prevs}"),
              ("return ", f"{numbered[dx.number]}, {grads}, and {prevs} of step 1: the initial state's {gradient}")]
    first = min(s.number for s in d.steps if s.kind in ("param", "input"))  # the kernel's, after the loop
    return Section("Backpropagation through time", (
        Prose("The equations above, in the order they run over a sequence of T steps. The forward pass keeps, "
              "of every step, the values that the backward equations read; the loop then takes the steps in "
              "reverse, each vector that of one sequence of the batch."),
        Listing(tuple(line for head, text in lines for line in _listing_wrap(head, text))),
        Prose(f"The kernel runs the same loop but leaves {cited(range(first, d.equations + 1))} until after it, "
              "then computes them for all steps at once from the adjoints it kept."),
    ))


_LISTING_WIDTH = 88  # a listing's columns: the terminal indents it by 4, within its 100


def _listing_wrap(head, text):
    """A listing's line, its head ("    (8) to (17): ") then its text, broken between words past the
    width, the lines after the first indented to the text."""
    return textwrap.wrap(text, _LISTING_WIDTH, initial_indent=head, subsequent_indent=" " * len(head),
                         break_on_hyphens=False, break_long_words=False)


def _kept(d):
    """What the backward equations read of a step, in the cell's order, as the document names it: the
    values their local derivatives read (a call no node names, tanh(c), as itself), and the vectors the
    weights' gradients pair with. Parameters, lets of them alone and calls of them (or of numbers
    alone: tanh(2)) are the same at every step."""
    calls = tuple(SUPPORTED_FUNCTIONS.values())
    symbols, unnamed = set(), set()

    def visit(expr):
        if isinstance(expr, calls):
            unnamed.add(expr)
        elif isinstance(expr, sympy.Symbol):
            symbols.add(expr)
        else:
            for arg in expr.args:
                visit(arg)

    for step in d.steps:
        for term in step.terms:
            if not isinstance(term.local, MatTerm):
                visit(term.local)
    symbols |= {g.vector for g in d.param_grads if g.kind == "weight"}
    steady = _steady(d.cell)
    unnamed = sorted((c for c in unnamed if not c.free_symbols <= steady), key=sympy.default_sort_key)
    return [str(v) for v in _ordered(d.cell, symbols - steady)] + [expr_text(c, d) for c in unnamed]


def _grad_math(g, d):
    name = f"d{g.name}"
    sums_tex, sums_text = r"\sum_{t=1}^{T} \sum_{j=1}^{B}", "Σ_t Σ_j"
    if g.kind == "weight":
        stack, v = _block_names(d, tex=True)[g.affine], _tex_name(str(g.vector))
        return Math(f"{_tex_name(name)} = {sums_tex} {stack}(t, j) \\thinspace {v}(t, j)^{{\\top}}",
                    (f"{name} = {sums_text} {_block_names(d)[g.affine]}(t, j)·{g.vector}(t, j)^T",), g.number)
    if g.kind == "bias":
        return Math(f"{_tex_name(name)} = {sums_tex} {_block_names(d, tex=True)[g.affine]}(t, j)",
                    (f"{name} = {sums_text} {_block_names(d)[g.affine]}(t, j)",), g.number)
    return Math(f"{_tex_name(name)} = {sums_tex} {_tex_name(name)}(t, j)",
                (f"{name} = {sums_text} {name}(t, j)",), g.number)


def _no_line(d, number):
    """The Lines cell of an equation no kernel line cites: a let that nothing the new states depend
    on reads, which the kernel need not compute, says so."""
    eq = next((eq for eq in d.forward if eq.number == number), None)
    if (eq is not None and isinstance(eq.node, Let) and eq.node not in d.cell.updates.values()
            and eq.node.symbol not in d.cell.needed()):
        return "none: nothing the new states depend on reads it"
    return "none"


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


def _check_section(d):
    """How to gradient-check the cell's kernel: the command, the function with the kernel's import,
    what the checks compare, and where the README explains their reports. A cell of derivations/
    has its kernel in lstm_derive.kernels; a script of one's own is named by its file."""
    from ..generate import is_home  # here: generate imports this package

    name, source = d.cell.name, d.cell.source or ""
    if source and is_home(source):
        command, module = f"`lstm-derive check {name}`", f"`from lstm_derive.kernels import {name}`"
        readme = "[Check any kernel](../README.md#check-any-kernel), in the README,"
    else:
        script = PurePath(source).name
        command = (f"`lstm-derive check {shlex.quote(script)}`, run in the script's folder," if script.endswith(".py")
                   else "`lstm-derive check`, given the script that builds it,")
        module = f"`import {name}` (the kernel's folder first on `sys.path`)"
        readme = "Check any kernel, in lstm-derive's README,"
    return Section("Gradient check", (Prose(
        f"{command} gradient-checks this cell's kernel; so does `check_kernel({name})` in Python, after "
        f"`from lstm_derive.gradcheck import check_kernel` and {module}, returning one report per method. "
        f"Both compare every element of every gradient (the parameters', {d.cell.inputs[0]}'s and the initial state's) with "
        "central differences and with the complex step, in float64, and the kernel's results in float32 with "
        f"its float64 ones; {readme} explains the reports: how each is judged and what a failing one names."),))


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
