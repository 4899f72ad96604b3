"""Printing a derivation: a Markdown document, terminal text and LaTeX, all from one model.

:func:`sections` turns a :class:`~lstm_derive.derive.Derivation` (and the text of the kernel
emitted from it) into a list of sections made of a few kinds of block: prose, numbered
equations, a dataflow graph, bullet notes, a listing, a table. Each section has one builder in
``builders``; each output form has one small renderer. All three forms read the same value the
kernels come from, so the explanation cannot drift from the code.

Markdown is written for GitHub: display math in ``$$`` blocks, each ``\\\\`` at the end of a
line, equation numbers as ``\\qquad (n)`` (GitHub's MathJax does not number ``\\tag``), no
inline math, and the dataflow graph as a ``mermaid`` block.

The package: ``printers`` prints expressions as text and TeX, ``model`` holds the kinds of block,
``builders`` the builder of every section but the notes, which ``notes`` holds, ``facts`` what
several of them read (the kernel's provenance comments among it), and ``render`` the three
renderers; this module names the public functions.
"""

from __future__ import annotations

from .builders import sections
from .facts import kernel_lines, provenance
from .printers import expr_latex, expr_text, step_text
from .render import derivation_latex, derivation_markdown, derivation_text

__all__ = ["derivation_text", "derivation_markdown", "derivation_latex", "sections", "kernel_lines",
           "provenance", "step_text", "expr_text", "expr_latex"]
