"""The printers of expressions: a derivation's SymPy expressions as the terminal's Unicode text
(``_TextPrinter``; ``expr_text``, and ``step_text`` for a backward step) and as TeX
(``_TexPrinter``; ``expr_latex`` and ``_step_tex``), a name with its subscripts in TeX
(``_tex_name``), and an affine's adjoint as the stacked adjoints of its blocks (``_block_names``)."""

from __future__ import annotations

import sympy
from sympy.printing.latex import LatexPrinter, greek_letters_set
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from ..derive import Derivation, Step, summed
from ..functions import FUNCTIONS

# The text forms of the derivatives read off a function's output ([y > 0] for relu's), by class.
_SLOPE_TEXTS = {f.slope.cls: f.slope.text for f in FUNCTIONS if f.slope}


class _TextPrinter(StrPrinter):
    def __init__(self, blocks):
        super().__init__({"order": "none"})
        self.blocks = blocks

    def _print_MatTerm(self, expr):
        return f"{expr.weight}^T·{self.blocks[expr.affine]}"

    def _print_Float(self, expr):  # 0.5, as the script writes it, not SymPy's 0.500000000000000
        return repr(float(expr))

    def _print_Function(self, expr):
        if type(expr) not in _SLOPE_TEXTS:
            return super()._print_Function(expr)
        # bracketed if a sum, as the minus in 1 - exp(-y) needs (a slope reads an output: a name or a call)
        return _SLOPE_TEXTS[type(expr)].format(self.parenthesize(expr.args[0], PRECEDENCE["Mul"], strict=False))


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
    an adjoint's d before a longer name (drh -> d\\mathrm{rh}); a Greek letter's name as the letter,
    but sigma."""
    if head == "sigma":  # σ is the sigmoid's: a node named sigma would read as the function, σ = σ(a_s)
        return r"\mathrm{sigma}"
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
        parts = [f"d{b.name}" for b in a.blocks]  # a Symbol's name: what str() prints, without a printer made for it
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
    """Step.text in TeX: the same terms in the same order, local derivative first, joined to its
    adjoint by \\odot (a number by a space: 2 dh)."""
    printer = _TexPrinter(_block_names(d, tex=True))
    return summed([t.text(printer, times=_tex_times, grouped=r"\left({}\right)") for t in step.terms])


def _tex_times(local):
    return " " if local.is_Number else r" \odot "
