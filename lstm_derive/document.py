"""Printing a derivation: as terminal text and as a Markdown document with TeX math.

Both read the same :class:`~lstm_derive.derive.Derivation` value the kernels come from, so
the explanation cannot drift from the code.
"""

from __future__ import annotations

from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from .derive import Derivation, MatTerm, Step

__all__ = ["derivation_text", "derivation_markdown", "expr_text", "expr_latex"]


class _TextPrinter(StrPrinter):
    def __init__(self, blocks):
        super().__init__({"order": "none"})
        self.blocks = blocks

    def _print_MatTerm(self, expr):
        return f"{expr.weight}^T·{self.blocks[expr.affine]}"


class _TexPrinter(LatexPrinter):
    def __init__(self, blocks):
        super().__init__({"mul_symbol": None})
        self.blocks = blocks

    def _print_Symbol(self, expr, style="plain"):
        return _tex_name(expr.name)

    def _print_MatTerm(self, expr):
        return f"{_tex_name(expr.weight)}^{{\\top}} {self.blocks[expr.affine]}"


def _tex_name(name):
    """h_prev -> h_{\\text{prev}}, da_i -> da_{i}, W_x -> W_{x}."""
    head, _, tail = name.partition("_")
    if not tail:
        return head
    if len(tail) > 1 and tail.isalpha():
        return f"{head}_{{\\text{{{tail}}}}}"
    return f"{head}_{{{tail.replace('_', ',')}}}"


def _block_names(d, tex=False):
    """An affine's adjoint, as the stacked adjoints of its blocks: [da_i; da_f; ...]."""
    names = {}
    for a in d.cell.affines:
        parts = [f"d{b}" for b in a.blocks]
        if tex:
            inner = " \\\\ ".join(_tex_name(p) for p in parts)
            names[a.name] = inner if len(parts) == 1 else f"\\begin{{bmatrix}} {inner} \\end{{bmatrix}}"
        else:
            names[a.name] = parts[0] if len(parts) == 1 else f"[{'; '.join(parts)}]"
    return names


def expr_text(expr, d: Derivation):
    return _TextPrinter(_block_names(d)).doprint(expr)


def expr_latex(expr, d: Derivation):
    return _TexPrinter(_block_names(d, tex=True)).doprint(expr)


def _affine_text(eq):
    a = eq.node
    terms = [f"{w}·{v}" for w, v in zip(a.weights, a.inputs)] + list(a.biases)
    lhs = str(a.blocks[0]) if len(a.blocks) == 1 else f"[{'; '.join(map(str, a.blocks))}]"
    return f"{lhs} = {' + '.join(terms)}"


def _chain_text(step: Step, d):
    parts = []
    for term in step.terms:
        if term.consumer == "loss":
            parts.append("dy")
        elif term.consumer == "next step":
            parts.append(str(term.adjoint))
        elif isinstance(term.local, MatTerm):
            parts.append(expr_text(term.local, d))
        else:
            parts.append(f"d{term.consumer}·∂{term.consumer}/∂{step.target}")
    return " + ".join(parts) or "0"


def _role(step: Step, d):
    if step.kind == "carry":
        return "  (carried to step t-1)"
    if step.kind == "input":
        return "  (for all steps at once, after the loop)"
    if step.kind == "param":
        return "  (summed over t and batch)"
    return ""


def derivation_text(d: Derivation) -> str:
    """The forward equations, then the backward pass one named node at a time."""
    cell = d.cell
    states = ", ".join(f"{s}_prev" for s in cell.states)
    lines = [f"{cell.title or cell.name}  [{cell.name}]", "",
             f"Forward pass, one step ({cell.inputs[0]} is the input x_t; {states} are the states of step t-1):"]
    for eq in d.forward:
        text = _affine_text(eq) if eq.rhs is None else f"{eq.lhs[0]} = {expr_text(eq.rhs, d)}"
        lines.append(f"  ({eq.number}) {text}")
    lines += [
        "",
        f"Loss: L = Σ_t l(t), and L(t) = Σ_(u≥t) l(u), so dL(t)/d{cell.output_state}(t) = dl(t)/d{cell.output_state}(t)"
        f" + dL(t+1)/d{cell.output_state}(t).",
        f"dv means dL(t)/dv; dy = dl(t)/d{cell.output_state}(t); d*_next are the gradients carried back from step t+1.",
        "",
        "Backward pass, one step, last node first: each adjoint is the sum over the node's consumers.",
    ]
    for step in d.steps:
        head = f"  ({step.number}) {step.adjoint} = "
        chain = _chain_text(step, d)
        result = step.text(_TextPrinter(_block_names(d)))
        lines.append(head + chain + _role(step, d))
        if result != chain:
            lines.append(" " * len(head) + "= " + result)
    lines += ["", "Parameter gradients, summed over time t and the batch:"]
    blocks = _block_names(d)
    for g in d.param_grads:
        lines.append(f"  ({g.number}) {_grad_text(g, blocks)}")
    return "\n".join(lines)


def _grad_text(g, blocks):
    if g.kind == "weight":
        return f"d{g.name} = Σ_t {blocks[g.affine]}(t) {g.vector}(t)^T"
    if g.kind == "bias":
        return f"d{g.name} = Σ_t {blocks[g.affine]}(t)"
    return f"d{g.name} = Σ_t d{g.name}(t)"


def derivation_markdown(d: Derivation, source: str) -> str:
    """The derivation document, derivations/<cell>.md."""
    cell = d.cell
    out = [
        f"<!-- Generated by lstm-derive from {source}. Do not edit by hand: edit the script and run"
        " `lstm-derive generate`. -->",
        f"# {cell.title or cell.name}",
        "",
        f"Cell `{cell.name}`, written in [`{source.split('/')[-1]}`]({source.split('/')[-1]}); its kernel is"
        f" `lstm_derive/kernels/{cell.name}.py`. The numbers in parentheses are the ones the kernel's"
        " comments cite.",
        "",
        "## Forward pass",
        "",
    ]
    for eq in d.forward:
        out += _math_block(_forward_tex(eq, d), eq.number)
    out += ["## Backward pass", ""]
    for step in d.steps:
        out += _math_block(f"{_tex_name(str(step.adjoint))} = {expr_latex(step.result, d)}", step.number)
    out += ["## Parameter gradients", ""]
    blocks = _block_names(d, tex=True)
    for g in d.param_grads:
        out += _math_block(_grad_tex(g, blocks), g.number)
    return "\n".join(out).rstrip() + "\n"


def _math_block(tex, number):
    return ["$$", f"{tex} \\tag{{{number}}}", "$$", ""]


def _forward_tex(eq, d):
    if eq.rhs is not None:
        return f"{_tex_name(str(eq.lhs[0]))} = {expr_latex(eq.rhs, d)}"
    a = eq.node
    terms = [f"{_tex_name(w)} {_tex_name(str(v))}" for w, v in zip(a.weights, a.inputs)]
    terms += [_tex_name(b) for b in a.biases]
    lhs = " \\\\ ".join(_tex_name(str(b)) for b in a.blocks)
    if len(a.blocks) > 1:
        lhs = f"\\begin{{bmatrix}} {lhs} \\end{{bmatrix}}"
    return f"{lhs} = {' + '.join(terms)}"


def _grad_tex(g, blocks):
    name = _tex_name(f"d{g.name}")
    if g.kind == "weight":
        return f"{name} = \\sum_t {blocks[g.affine]} {_tex_name(str(g.vector))}^{{\\top}}"
    if g.kind == "bias":
        return f"{name} = \\sum_t {blocks[g.affine]}"
    return f"{name} = \\sum_t {name}(t)"
