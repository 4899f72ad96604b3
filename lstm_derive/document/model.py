"""The document model: a ``Section`` is a title and a tuple of blocks of a few kinds (prose, a
displayed equation, bullet notes, the dataflow graph, two steps of the recurrence unrolled, a
listing, a table), each of which every renderer prints in its own form."""

from __future__ import annotations

from dataclasses import dataclass


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
class Listing:
    """Lines of pseudo-code, ASCII, printed as they are (their indentation too): a code block in
    Markdown, verbatim in LaTeX, indented in the terminal."""

    lines: tuple


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
