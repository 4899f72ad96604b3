"""Facts the sections share: the kernel's provenance comments (``provenance``, ``kernel_lines``)
and the lines each cited line stands for (``_line_spans``); lists of names and of equation numbers
as prose (``_join``, ``_numbers``); and what more than one section reads off a derivation: the
values that are the same at every step (``_steady``), a pre-activation as the script writes it
(``_as_written``), each state's carry (``_carries``) and a factor's text (``_factor_text``)."""

from __future__ import annotations

import functools
import re

import sympy

from .printers import expr_text


# What Python reads as a string, a comment or a top-level def, in the order written: a string is
# consumed whole, so that a # or a def inside one is no comment and no function (a kernel is Python
# 3.10's: no f-string holds a quote of its own kind). tokenize finds the same comments at many times
# the cost (it took half the time of writing a document).
_LEXEMES = re.compile(r"""
    '{3}(?:\\.|[^\\])*?'{3} | "{3}(?:\\.|[^\\])*?"{3}  # over lines; a backslash escapes what follows
  | '(?:\\.|[^\\'\n])*' | "(?:\\.|[^\\"\n])*"
  | (?P<comment>\#[^\r\n]*)
  | ^def[ \t]+(?P<function>\w+)
""", re.VERBOSE | re.MULTILINE | re.DOTALL)


@functools.lru_cache(maxsize=8)  # the sections of one document read the same kernel's comments several times
def provenance(kernel_text):
    """(numbers cited, function, line, comment) for every provenance comment of a kernel, a tuple.

    A provenance comment starts with the numbers it cites: ``# (9) dL/ds`` or
    ``# (2), (3), (4), (5) all gates ...``, and may cite factors it reads from a product later
    (``, times (12), (11) from da_xn``) and, at its end, equations whose adjoints it passes on
    (``, through (13)``). Only real comments count, not docstrings.
    """
    out, function, line, read = [], None, 1, 0
    for lexeme in _LEXEMES.finditer(kernel_text):
        if lexeme.group("function"):
            function = lexeme.group("function")
        comment = lexeme.group("comment")
        cited = re.match(r"# \(\d+\)(, \(\d+\))*", comment) if comment else None
        if cited:
            line += kernel_text.count("\n", read, lexeme.start())
            read = lexeme.start()
            numbers = tuple(int(n) for n in re.findall(r"\d+", cited.group(0)))
            # "# (19) ∂a_n/∂a_hn, times (12), (11) from da_xn": the line holds those factors too
            times = re.search(r", times (\(\d+\)(?:, \(\d+\))*) from ", comment)
            numbers += tuple(int(n) for n in re.findall(r"\d+", times.group(1))) if times else ()
            # "# (14), (15) dL/da_i, da_f, through (13)": it passes (13)'s adjoint on (di = dc)
            through = re.search(r", through (\(\d+\)(?:, \(\d+\))*)$", comment)
            numbers += tuple(int(n) for n in re.findall(r"\d+", through.group(1))) if through else ()
            out.append((numbers, function, line, comment))
    return tuple(out)


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


def _numbers(numbers):
    """(14) to (17) for a run of consecutive numbers, else (3), (7) and (9)."""
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"({numbers[0]}) to ({numbers[-1]})"
    return _join([f"({n})" for n in numbers])


def _join(items, word="and"):
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} " + items[-1]


def _steady(cell):
    """The parameters and the lets of them alone: the same at every step."""
    steady = set(cell.params)
    for let in cell.lets:
        if let.expr.free_symbols <= steady:
            steady.add(let.symbol)
    return steady


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


def _factor_text(d, expr):
    text = expr_text(expr, d)
    return f"({text})" if isinstance(expr, sympy.Add) else text
