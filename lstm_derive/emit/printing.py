"""The code printer and the text helpers that every part of the emission shares: expressions as
NumPy code (``_CodePrinter``; ``_into``, the lines that evaluate one into an existing array), lines,
tuples and assignments as text, column ranges, and what a piece of code names (``_mentions``), with
the lines no other line reads dropped (``_read_only``)."""

from __future__ import annotations

import re

import sympy
from sympy.printing.precedence import precedence
from sympy.printing.str import StrPrinter

from ..functions import FUNCTIONS


# The loops' numbers that are arrays of x's dtype, made once (_number_arrays): a Python number
# in a ufunc's arguments costs a conversion at every call (about 1 us, at B = 1 the most).
_NUMBER_ARRAYS = {0: "zero", 1: "one", 2: "two"}


_MADE_ONCE = {**_NUMBER_ARRAYS, -1: "minus_one"}  # and _sigmoid_into's -1, which no expression prints

# The names of other numbers, by value; any other is num_ and its digits (num_0_2 for 0.2).
_NUMBER_WORDS = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
                 1 / 2: "half", 1 / 3: "third", 1 / 4: "quarter"}


class _Numbers:
    """The names of the numbers the loops read besides those of _MADE_ONCE, given as the code
    printer meets them, each the name of its value unless a node of the cell has it (taken)."""

    def __init__(self, taken):
        self.taken = set(taken)
        self.named = {}  # value -> (name, the number as Python writes it)

    def name(self, number):
        """The name of a positive sympy number."""
        value = float(number)
        if value not in self.named:
            name = _NUMBER_WORDS.get(value) or "num_" + re.sub(r"\W", "_", repr(value).replace("e-", "e_minus_"))
            while name in self.taken or name in {n for n, _ in self.named.values()}:
                name += "_value"
            literal = f"{number.p}/{number.q}" if number.is_Rational and not number.is_Integer else repr(value)
            self.named[value] = (name, str(int(value)) if number.is_Integer else literal)
        return self.named[value][0]

    def made_once(self):
        """(name, the number as Python writes it) for every number named, in the order of their values."""
        return [self.named[value] for value in sorted(self.named)]


# The functions NumPy computes (tanh, exp), by name, and the lines that write a function into storage.
_NUMPY = {f.name: f.numpy for f in FUNCTIONS if f.numpy}
_INTO = {f.cls: f.into for f in FUNCTIONS if f.into}


class _CodePrinter(StrPrinter):
    """Prints an elementwise expression as NumPy code; ``names`` maps subexpressions to code.
    With ``arrays`` (a kernel's _Numbers), numbers print as the names of the arrays made of them
    once (1 - z as one - z, z/3 as z/three), but not in exponents: x**2 stays NumPy's fast square."""

    def __init__(self, names=None, arrays=False, typed_calls=False):
        super().__init__({"order": "none"})
        self.names = names or {}
        self.arrays = arrays
        self.typed_calls = typed_calls  # a function of numbers alone as a 0-d array of x's dtype

    def _print(self, expr, **kwargs):
        if expr in self.names:
            return self.names[expr]
        if self.arrays and getattr(expr, "is_Integer", False) and expr in _NUMBER_ARRAYS:
            return _NUMBER_ARRAYS[expr]
        if self.arrays and getattr(expr, "is_Number", False) and expr.is_real:
            return f"-{self._print(-expr)}" if expr < 0 else self.arrays.name(expr)
        if self.typed_calls and isinstance(expr, sympy.Function) and not expr.free_symbols:
            # NumPy's tanh(2) is a float64 scalar, which would make a float32 kernel's arrays float64
            return f"np.array({_CodePrinter(self.names).doprint(expr)}, x.dtype)"
        return super()._print(expr, **kwargs)

    def _print_Pow(self, expr, rational=False):
        if self.arrays and expr.exp.is_Number and expr.exp not in (sympy.S.Half, -sympy.S.Half, sympy.S.NegativeOne):
            exp = _CodePrinter().doprint(expr.exp)  # SymPy's sqrt(x), 1/sqrt(x), 1/x aside
            exp = exp if expr.exp.is_Integer and expr.exp > 0 else f"({exp})"
            return f"{self.parenthesize(expr.base, precedence(expr), strict=False)}**{exp}"
        return super()._print_Pow(expr, rational)

    def _print_Function(self, expr):  # NumPy's function (np.tanh), else the module's helper (sigmoid, positive)
        name = type(expr).__name__
        return f"{_NUMPY.get(name, name)}({self._print(expr.args[0])})"

    def _print_Float(self, expr):
        return repr(float(expr))


def _lines(*lines):
    return "".join(line + "\n" if line else "\n" for line in lines)


def _unpack(names, source):
    names = [str(n) for n in names]
    return f"{', '.join(names)} = {source}"


def _unpack_tuple(names, source):
    """a, b = f() -- or (a,) = f() for one."""
    if len(names) == 1:
        return f"({names[0]},) = {source}"
    return _unpack(names, source)


def _wrapped(head, items, tail, width=100, bare=False):
    """head + items joined by ", " + tail, as one line if it fits in width, else wrapped: after
    head and aligned with it, or (bare: an assignment, one line without the brackets if it
    fits) on the lines below head, four spaces in."""
    one = head + ", ".join(items) + tail
    if len(one) <= width:
        return [head[:-1].rstrip() + " " + ", ".join(items) if bare else one]
    if bare:
        indent = " " * (len(head) - len(head.lstrip()) + 4)
        lines, pad = [head, indent], indent
    else:
        lines, pad = [head], " " * len(head)
    for item in items:
        if lines[-1] not in (head, pad) and len(lines[-1]) + len(item) + 2 > width:
            lines[-1] += ","
            lines.append(pad)
        lines[-1] += ("" if lines[-1] in (head, pad) else ", ") + item
    return lines[:-1] + [lines[-1] + tail]


def _assign_tuple(names, values):
    """a, b = c, d -- or a = c for one."""
    return f"{', '.join(map(str, names))} = {', '.join(map(str, values))}"


def _str_tuple(names):
    return _tuple(f'"{n}"' for n in names)


def _tuple(items):
    items = list(items)
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _number_arrays(loop, numbers):
    """The line that makes the numbers the loop's lines name (one, two; those of the kernel's
    _Numbers) arrays of x's dtype."""
    code = "\n".join(line.split("#")[0] for line in loop)  # code alone: "one" in a comment is no number
    made = [(name, n) for n, name in _MADE_ONCE.items()] + numbers.made_once()
    made = [(name, n) for name, n in made if _mentions(code, name)]
    if not made:
        return []
    why = "made once: a Python number is converted at every call"
    names, arrays = ", ".join(n for n, _ in made), [f"np.array({v}, x.dtype)" for _, v in made]
    if len(made) <= 2:
        return [f"{names} = {', '.join(arrays)}  # {why}"]
    return [f"# {why}", *_wrapped(f"{names} = (", arrays, ")", bare=True)]


def _aux_printer(k, arrays=False):
    """Prints the calls the backward pass reads by their names: tanh(c) as tanh_c; with arrays,
    numbers as the names of k's (_Numbers)."""
    return _CodePrinter({call: str(name) for call, name in k.aux.items()}, k.numbers if arrays else None)


def _into(target, expr, printer):
    """Lines that evaluate expr into the existing array target, the last operation with out=."""
    code = printer.doprint
    number, rest = expr.as_coeff_Add() if isinstance(expr, sympy.Add) else (0, expr)
    if number != 0 and not isinstance(rest, sympy.Add):  # 1 - i: one call, not a fill and a subtraction
        if rest.could_extract_minus_sign():
            return [f"np.subtract({code(number)}, {code(-rest)}, out={target})"]
        return [f"np.add({code(rest)}, {code(number)}, out={target})"]
    if isinstance(expr, sympy.Add) and len(expr.args) == 2 and all(
            isinstance(t, (sympy.Symbol, sympy.Function)) or isinstance(-t, (sympy.Symbol, sympy.Function))
            for t in expr.args):
        minus = [t for t in expr.args if t.could_extract_minus_sign()]
        if len(minus) == 1:  # relu1 - relu0: one call, not a negation and an addition
            plus = next(t for t in expr.args if t is not minus[0])
            return [f"np.subtract({code(plus)}, {code(-minus[0])}, out={target})"]
    if isinstance(expr, sympy.Add):
        terms = list(expr.args)  # a product first, with out=: n + z*(h_prev - n) needs no copy of n
        products = [t for t in terms if isinstance(t, sympy.Mul) and not t.could_extract_minus_sign()]
        if isinstance(terms[0], sympy.Symbol) and products:
            terms.remove(products[0])
            terms.insert(0, products[0])
        first, *rest = terms
        lines = _into(target, first, printer)
        if rest and lines == [f"{_whole(target)} = {code(first)}"]:  # a_i + relu0: one call, not a fill and an addition
            lines = [_sum_of_two_into(target, first, rest.pop(0), code)]
        for term in rest:
            if term.could_extract_minus_sign():
                lines.append(f"{target} -= {code(-term)}")
            else:
                lines.append(f"{target} += {code(term)}")
        return lines
    if isinstance(expr, sympy.Mul):
        return [_product_into(target, expr, printer)]
    if isinstance(expr, sympy.Pow) and expr.exp.is_negative:  # 1/n: no reciprocal made to be copied in
        return [_product_into(target, expr, printer)]
    if type(expr) in _INTO:
        return [_INTO[type(expr)].format(a=code(expr.args[0]), out=target, zero=code(sympy.S.Zero))]
    if isinstance(expr, sympy.Pow) and expr.exp == 2:  # no temporary to copy in
        return [f"np.square({code(expr.base)}, out={target})"]
    return [f"{_whole(target)} = {code(expr)}"]


def _sum_of_two_into(target, first, second, code):
    """first + second into target with one call, a number last (z + one, as 1 + z is written above)."""
    if second.could_extract_minus_sign():
        return f"np.subtract({code(first)}, {code(-second)}, out={target})"
    if first.is_Number:
        first, second = second, first
    return f"np.add({code(first)}, {code(second)}, out={target})"


def _product_into(target, expr, printer):
    """A product or quotient evaluated into target with one call: c/n as np.divide(c, n), which
    rounds once, not as c times a reciprocal formed first (SymPy holds c/n as c*n**-1). Only the
    denominators written as such: exact=True keeps a*exp(-b) a product, where as_numer_denom()
    gives a/exp(b), which overflows where exp(-b) does not."""
    numerator, denominator = sympy.fraction(expr, exact=True)
    if denominator != 1:
        return f"np.divide({printer.doprint(numerator)}, {printer.doprint(denominator)}, out={target})"
    head, *rest = expr.as_ordered_factors()
    return f"np.multiply({printer.doprint(head)}, {printer.doprint(sympy.Mul(*rest))}, out={target})"


def _whole(target):
    """The assignment target that fills an existing array: a[...] for a name, a slice as it is."""
    return target if target.endswith("]") else f"{target}[...]"


def _col_range(j0, j1):
    """The columns of blocks j0 to j1 - 1 of a (B, k * H) array: ":H", "H:3 * H"."""
    def at(j):
        return "" if j == 0 else "H" if j == 1 else f"{j} * H"
    return f"{at(j0)}:{at(j1)}"


def _mentions(code, name):
    """How many times code names name as a variable: a whole word (h, not h_prev), neither an
    attribute (np.dot, for a let named dot) nor a keyword (out=, for one named out)."""
    return len(re.findall(_variable(name), code))


def _variable(name):
    """The pattern of name as a variable in code (see _mentions)."""
    return rf"(?<![\w.]){name}(?!\w|=(?!=))"


def _read_only(lines, optional):
    """lines without those of `optional` that bind a name no other line reads, until none is left
    (a number formed for a vector of parameters alone that backward() does not form)."""
    while True:
        text = "\n".join(lines)
        unread = [line for line in lines if line in optional
                  and _mentions(text, line.split(" = ")[0].strip()) == 1]
        if not unread:
            return lines
        lines = [line for line in lines if line not in unread]


def _numbers(numbers):
    return ", ".join(f"({n})" for n in numbers)
