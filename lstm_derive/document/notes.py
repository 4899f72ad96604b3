"""The section "Where people go wrong": notes read off the derivation (what each d<state>_next
already holds, the derivatives written in output form, the previous or new state a gradient pairs
with, the order of the stacked blocks), then the cell's own notes, their {names} cited as the
numbers of the equations that compute them."""

from __future__ import annotations

import difflib
import os
import re

import sympy

from ..derive import MatTerm
from ..spec import CITATION, GATE_FUNCTIONS, SUPPORTED_FUNCTIONS, Note, SpecError, sigmoid
from .facts import _as_written, _carries, _factor_text, _join, _numbers, _steady
from .model import Bullets, Section
from .printers import expr_text, step_text


def _notes_section(d):
    _check_quoted_names(d)
    notes = _carry_notes(d) + _output_form_notes(d) + _previous_value_notes(d) + _block_order_notes(d)
    notes += [_cite(d, note) for note in d.cell.notes]
    return Section("Where people go wrong", (Bullets(tuple(notes)),))


# A note's `...` quotes the cell's code. A name in it, not part of a dotted one (a module, lstm.py)
# and not the T of ^T, is read as one of the cell's. A span with a hyphenated word is a command
# (`lstm-derive check lstm_seed`), not the cell's code.
_QUOTED = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"(?<![\w.^])[A-Za-z_]\w*(?:\.\w+)*", re.ASCII)
_COMMAND = re.compile(r"[A-Za-z]-[A-Za-z]")


def _check_quoted_names(d):
    """A name in backticks that the cell does not have is refused, naming the note: a renamed let
    or state would leave the note's text naming what is gone, and nothing else reads that text."""
    known = _quotable_names(d)
    for note in d.cell.notes:
        for span in _QUOTED.findall(note):
            if _COMMAND.search(span):
                continue
            for name in _NAME.findall(span):
                if "." not in name and name not in known:
                    raise SpecError(_unknown_name_message(d, note, span, name, known))


def _unknown_name_message(d, note, span, name, known):
    where = note.where if isinstance(note, Note) else d.cell.source
    opening = note if len(note) <= 60 else note[:57] + "..."
    close = difflib.get_close_matches(name, known, n=1)
    guess = f"; did you mean `{close[0]}`?" if close else ""
    within = "" if span == name else f" (in `{span}`)"
    return (f"{where}: the note \"{opening}\" names `{name}`{within}, but the cell has no {name}{guess} "
            "(backticks in a note quote this cell; write a name from elsewhere, another cell's or "
            "another library's, without them)")


def _quotable_names(d):
    """What a note may name in backticks: the cell's own names, their adjoints (d<name>,
    d<state>_next), the rows of a stacked parameter by a block's tag (U_hn, the rows of U_h that
    give a_hn), the functions, and the document's own notation (steps t, sequences j, the sizes,
    the kernel's arguments)."""
    cell = d.cell
    own = {str(v) for v in cell.inputs + cell.blocks} | {str(let.symbol) for let in cell.lets}
    own |= set(cell.states) | {str(cell.prev(s)) for s in cell.states} | set(cell.parameter_names())
    own |= {p + tag for a in cell.affines for p in a.weights + a.biases for tag in _block_tags(a)}
    adjoints = {f"d{name}" for name in own} | {f"d{s}_next" for s in cell.states} | set(d.references())
    notation = {"dy", "dys", "dstate", "lengths", "t", "j", "T", "B", "D", "H"}
    notation |= {f"dpre_{a.name}" for a in cell.affines}
    return own | adjoints | notation | set(SUPPORTED_FUNCTIONS)


def _block_tags(affine):
    """What tells an affine's blocks apart: r, z, n of a_hr, a_hz, a_hn."""
    names = [str(b) for b in affine.blocks]
    if len(names) < 2:
        return []
    common = len(os.path.commonprefix(names))
    return [name[common:] for name in names if name[common:]]


def _cite(d, note):
    """Replaces {ds} in a note by the number of the equation that computes ds, (9), and {{ and }}
    by a brace (derive() has refused a name no equation computes)."""
    refs = d.references()

    def cited(m):
        name = m.group(1)
        return m.group(0)[0] if name is None else f"({refs[name]})" if name in refs else m.group(0)

    return CITATION.sub(cited, note)


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
            listed = (f"with these applied: {'; '.join(held[:-1])}; and {held[-1]}" if any("," in h for h in held)
                      else f"with {_join(held)} applied")  # items with commas of their own take semicolons
            holds = (f"{_count(len(held))} terms: it is `{step_text(carry, d)}`, equation ({carry.number}), "
                     f"computed at step t+1, {listed}")
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
        return (f"`{_factor_text(d, term.local)}*{term.adjoint}`{when}, the path through the pre-activation "
                f"`{expr_text(_as_written(term.pre, d), d, written=True)}` (`{term.adjoint}` holds its activation's derivative)")
    if term.adjoint != own:
        return f"the path through `{term.consumer}`"
    local = expr_text(term.local, d)
    if term.local.free_symbols <= _steady(d.cell):  # a parameter, or a let of them alone: no step of its own
        return f"the factor `{local}`"
    # "holds f(t+1)" would read as its value; it holds dc(t+1) with that factor applied
    return f"the factor `{local}(t+1)`" if isinstance(term.local, sympy.Symbol) else f"the factor `{local}` of step t+1"


def _output_form_notes(d):
    """The steps that differentiate a sigmoid or tanh: in output form, from the stored output."""
    gates = {str(let.symbol): let for let in d.cell.lets if isinstance(let.expr, GATE_FUNCTIONS)}
    stored = {str(let.symbol) for let in d.cell.lets if type(let.expr) in SUPPORTED_FUNCTIONS.values()}
    steps = [s for s in d.steps if any(t.consumer in stored and t.pre is None for t in s.terms)]
    # an example of one term, a gate's (a block two gates read sums two), a step of its own (a
    # parameter's dp(t, j) is summed in another equation), a sigmoid's where there is one
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
    lhs = f"{example.adjoint}(t, j)" if example.kind == "param" else str(example.adjoint)
    text = step_text(example, d).replace(f"{example.adjoint} =", f"{lhs} =", 1)
    return [f"{_numbers([s.number for s in steps])} {verb} in output form, from the stored outputs: "
            f"`{text}`. {'The argument is' if called == 'pre-activation' else 'It reads'} the output `{y}`, not the {called} "
            f"`{expr_text(_as_written(argument, d), d, written=True)}`; `{wrong}` would apply {f} twice."]


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
        reads = _when_read(d, prev, new)
        early = [s for s, w in reads.items() if w == {"prev"}]
        late = [s for s, w in reads.items() if w == {"new"}]
        if early and late:
            notes.append(f"{named(late)} {'pairs' if len(late) == 1 else 'pair'} a gate's adjoint with the new "
                         f"`{new}`(t), {named(early)} with `{prev}` = {new}(t-1): each the value its gate "
                         f"read. Each is an elementwise product per (t, j), summed over t and j into the "
                         f"parameter's gradient, not an outer product like a weight's.")
    return notes


def _when_read(d, prev, new):
    """{a parameter's step: the values of one state its terms read, of "prev" and "new"}."""
    reads = {}
    for step in d.steps:
        if step.kind != "param":
            continue
        for t in step.terms:
            for v, when in ((prev, "prev"), (new, "new")):
                if t.local.has(v):
                    reads.setdefault(step, set()).add(when)
    return reads


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
