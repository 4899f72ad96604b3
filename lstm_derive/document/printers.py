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


def _positive_first(terms):
    """A sum's terms with its first positive one leading where SymPy's order puts a negative one
    first: tanh(c) - a_s, not -a_s + tanh(c); the others in their order."""
    lead = next((i for i, t in enumerate(terms) if not t.could_extract_minus_sign()), 0)
    return [terms[lead], *terms[:lead], *terms[lead + 1:]]


class _TextPrinter(StrPrinter):
    """Terms and factors in their stored order; with written False (an expression SymPy derived,
    not one the script writes), a sum led by a positive term (see _positive_first)."""

    def __init__(self, blocks, written=False):
        super().__init__({"order": "none"})
        self.blocks = blocks
        self.written = written

    def _as_ordered_terms(self, expr, order=None):
        terms = super()._as_ordered_terms(expr, order=order)
        return terms if self.written else _positive_first(terms)

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
    script writes it), not sorted again; a derived sum led by a positive term."""

    def __init__(self, blocks, written=False):
        super().__init__({"mul_symbol": r" \odot ", "order": "none"})
        self.blocks = blocks
        self.written = written

    def _as_ordered_terms(self, expr, order=None):
        terms = super()._as_ordered_terms(expr, order=order)
        return terms if self.written else _positive_first(terms)

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


def expr_text(expr, d: Derivation, written=False):
    """expr as text; written: as the script writes it (an equation's shown form), in its order."""
    return _TextPrinter(_block_names(d), written).doprint(expr)


def expr_latex(expr, d: Derivation, written=False):
    return _TexPrinter(_block_names(d, tex=True), written).doprint(expr)


def step_text(step: Step, d: Derivation):
    """One backward step in output form, the way the kernel computes it: ``ds = o*dh + ds_next``."""
    return f"{step.adjoint} = {step_result_text(step, d)}"


def step_result_text(step: Step, d: Derivation):
    """A step's result as the sum of its terms in order, each local derivative first (o*dh), but a
    reciprocal's adjoint over its denominator (dh/n, not 1/n*dh)."""
    printer = _TextPrinter(_block_names(d))
    return summed([_over_denominator(t, printer) or t.text(printer) for t in step.terms])


def _step_tex(step: Step, d):
    """Step.text in TeX: the same terms in the same order, local derivative first, joined to its
    adjoint by \\odot (a number by a space: 2 dh), a reciprocal's adjoint over its denominator
    (\\frac{dh}{n})."""
    printer = _TexPrinter(_block_names(d, tex=True))
    return summed([_over_denominator(t, printer, tex=True)
                   or t.text(printer, times=_tex_times, grouped=r"\left({}\right)") for t in step.terms])


def _tex_times(local):
    return " " if local.is_Number else r" \odot "


def _over_denominator(term, printer, tex=False):
    """A term whose local derivative is a number over vectors (1/n_new, -2/n**2), the adjoint in
    the numerator as a person writes it: dh/n_new, or \\frac{dh}{n_{new}} in TeX; None for
    any other term, whose local derivative reads as the factor it is (c/n**2*dh)."""
    if term.adjoint is None or not isinstance(term.local, (sympy.Mul, sympy.Pow)):
        return None
    numerator, denominator = _split_fraction(term.local)
    if not numerator.is_Number or not denominator.free_symbols:
        return None
    top = printer.doprint(term.adjoint)
    if abs(numerator) != 1:
        top = f"{printer.doprint(abs(numerator))}{' ' if tex else '*'}{top}"
    sign = "-" if numerator < 0 else ""
    if tex:
        return f"{sign}\\frac{{{top}}}{{{printer.doprint(denominator)}}}"
    return f"{sign}{top}/{printer.parenthesize(denominator, PRECEDENCE['Mul'], strict=True)}"


def _split_fraction(local):
    """(numerator, denominator) of a product read off its factors: those of negative powers below,
    with a rational number's denominator; no sum is put over a common denominator."""
    above, below = [], []
    for factor in sympy.Mul.make_args(local):
        if factor.is_Pow and factor.exp.is_negative:
            below.append(1 / factor)
        elif factor.is_Rational and factor.q != 1:
            above.append(sympy.Integer(factor.p))
            below.append(sympy.Integer(factor.q))
        else:
            above.append(factor)
    return sympy.Mul(*above), sympy.Mul(*below)
