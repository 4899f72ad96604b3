"""The cell language: a recurrent cell's forward equations, written once.

A cell is a short list of nodes over vectors:

- ``input``: the per-step input x_t (size D);
- ``state``: a recurrent state; the symbol it returns is the previous value, named
  ``<name>_prev``; ``update`` gives its new value, named ``<name>``;
- ``param``: an elementwise parameter vector (size H), e.g. a peephole;
- ``affine``: ``W_x x + W_h h_prev + ... + b``, split into named blocks of size H;
- ``let``: a named elementwise expression (a SymPy expression of size-H symbols).

Every symbol stands for one component of a vector, so elementwise expressions are scalar
SymPy expressions. Only affine nodes mix components, and their backward is structural.
"""

from __future__ import annotations

import builtins
import copy
import difflib
import itertools
import keyword
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import sympy

from .functions import SUPPORTED_FUNCTIONS, _Elementwise
from .functions import *  # noqa: F403 -- the functions (sigmoid, ...), which a script may import from here too

__all__ = ["Cell", "SpecError", *SUPPORTED_FUNCTIONS, "SUPPORTED_FUNCTIONS"]


class SpecError(ValueError):
    """A derivation script describes a cell the engine cannot accept."""


# What an elementwise expression may contain besides the cell's symbols and finite numbers.
SUPPORTED_OPERATIONS = ", ".join(SUPPORTED_FUNCTIONS) + ", +, -, *, / and integer powers"
LONG = 40  # operations in one let's expression beyond which Cell.long() warns (the packaged cells: at most 10)
MAX_THROUGH_RELU = "(relu(a) is max(a, 0), and max(u, v) is v + relu(u - v))"  # the hint for max, min, if/else
# What the language writes in place of what it lacks, by the name a script calls it (NumPy's, math's, SymPy's):
# the refusals name it, so that a mistaken function is met with what to write, not only with what the language has.
COMPARED_INSTEAD = ("comparisons are not in the cell language, nor a mask or step made of one: (v > 0)*v is relu(v), "
                    "max(u, v) is v + relu(u - v), a clip to [lo, hi] is lo + relu(v - lo) - relu(v - hi), and a gate "
                    "that opens where v > 0 is sigmoid(v) (a mask [v > 0] has slope zero, so v would learn nothing "
                    "through it)")
ROOT_INSTEAD = ("sqrt(v**2) is |v|, relu(v) + relu(-v), and where a root only bounds a value, as in v/sqrt(1 + v**2), "
                "a bounded form serves: v/(1 + relu(v) + relu(-v)) or tanh(v)")
NO_ROOT = f"the cell language has no root, nor any power but an integer one (v**2, 1/(1 + v**2)): {ROOT_INSTEAD}"
LOG_INSTEAD = "the cell language has no logarithm: log(sigmoid(v)) is -softplus(-v), and log(1 + exp(v)) is softplus(v)"
INSTEAD = {
    "sqrt": NO_ROOT, "cbrt": NO_ROOT, "log": LOG_INSTEAD, "log1p": LOG_INSTEAD,
    "abs": "|v| is relu(v) + relu(-v)", "fabs": "|v| is relu(v) + relu(-v)",
    "clip": "clip(v, lo, hi) is lo + relu(v - lo) - relu(v - hi)", "minimum": "min(u, v) is u - relu(u - v)",
    "where": COMPARED_INSTEAD, "heaviside": COMPARED_INSTEAD,
}
# Why a list of vectors is no value: the hint for a list (tuple, set) where an expression goes.
ONE_SYMBOL = ("a cell's vector is one symbol that stands for each of its H components alike, so an expression "
              "combines the vectors themselves, elementwise (tanh(a)*a, not tanh(a)*[a, a]); several values are "
              "several nodes, each named with its own cell.let")
DECLARED = set()  # every symbol a cell has declared: hints.py's guard refuses NumPy's functions of them

# SymPy's names for what a division by zero or an overflow makes, in words.
_INFINITIES = {sympy.zoo: "complex infinity (a division by zero?)", sympy.oo: "infinity",
               -sympy.oo: "-infinity", sympy.nan: "nan"}

# An affine's bias is called b unless named: a script that never wrote 'b' may still clash with it.
_DEFAULT_BIAS_HINT = " (an affine's bias is 'b' unless bias=... names it)"

# Names the emitted kernels use for themselves (arguments, locals, module-level names); a node
# may not take them, and no name the kernel derives from a node's name may be one of them.
# "x" is the kernel's name for the input array, so only the input may be called x; "dy" is the
# loss's gradient for the output at one step, which a node named y would take as its adjoint.
KERNEL_NAMES = frozenset(
    "np numpy POSITIVE_STATES params state dstate cache grads ys dys dy final x dx x_t dy_t "
    "T B D H t new_state dstate_prev CELL INPUT STATES OUTPUT PARAMS forward backward "
    "step_forward step_backward param_shapes init_params span t0 t1 zero one two minus_one lengths ended masked T_all "
    "unrun L l".split()
) | set(SUPPORTED_FUNCTIONS) | {cls.__name__ for cls in _Elementwise.__subclasses__()}  # and their helpers
_WHY = {"dy": "the loss's gradient for the output at one step", "x": "the kernel's input array",
        "dx": "the gradient of the input", "L": "the loss, as in dL/dh", "l": "a step's loss, l(t)"}

# A kernel's function whose local shadows a builtin it calls breaks; refuse them all.
BUILTIN_NAMES = frozenset(n for n in dir(builtins) if not n.startswith("_"))

# A kernel file <cell>.py must not shadow a module wherever it is copied.
MODULE_NAMES = frozenset(getattr(sys, "stdlib_module_names", ())) | {"numpy", "sympy", "lstm_derive"}


@dataclass
class Declared:
    """Where a node was written, for error messages that point at the script."""

    file: str
    line: int
    script: str | None = None  # where the line is a helper module's: the cell script's call of it
    script_line: int | None = None

    def __str__(self):
        called = f" (called from {self.script}:{self.script_line})" if self.script else ""
        return f"{self.file}:{self.line}{called}"


class Blocks(list):
    """The block symbols cell.affine returns, a list to unpack (a_i, a_f = cell.affine(...)). Used
    as a vector itself (tanh(a) for a one-block affine, 0.5*a), it says so: as a plain list it would
    fail deep in SymPy, or repeat itself (2*a)."""

    def __init__(self, symbols, affine):
        super().__init__(symbols)
        self.affine = affine

    def refuse(self, *_):
        names = ", ".join(map(str, self))
        unpack = f"({self._held_as() or names},)" if len(self) == 1 else names
        raise TypeError(f"cell.affine('{self.affine}', ...) returns the list of its blocks [{names}], not a "
                        f"vector: unpack it, {unpack} = cell.affine('{self.affine}', ...)")

    def _held_as(self):
        """The script's variable that holds this list (a = cell.affine("W", ...) names its block aW0),
        which, unpacked, the script's lines go on reading; or None."""
        frame = _caller_frame()
        held = {**frame.f_globals, **frame.f_locals} if frame is not None else {}
        return next((k for k, v in held.items() if v is self and not k.startswith("_")), None)

    def __add__(self, other):  # lists of blocks still concatenate
        return list(self) + list(other) if isinstance(other, list) else self.refuse()

    def __radd__(self, other):
        return list(other) + list(self) if isinstance(other, list) else self.refuse()

    _sympy_ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = refuse
    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = __neg__ = __pos__ = __abs__ = refuse


class Note(str):
    """A note's text, and where the script wrote it: a citation of an unknown name is refused there."""

    def __new__(cls, text, where):
        note = super().__new__(cls, text)
        note.where = where
        return note

    def __getnewargs__(self):  # copies and pickles make it again with its place
        return str(self), self.where


# A note's {name} cites name's equation; {{ and }} are braces themselves.
CITATION = re.compile(r"\{\{|\}\}|\{(\w+)\}")


@dataclass
class Affine:
    """W_1 v_1 + W_2 v_2 + ... + b, split into blocks of size H."""

    name: str
    inputs: list  # vector symbols
    blocks: list  # pre-activation symbols, one per block
    weights: list  # weight names, one per input
    biases: list  # bias names (0, 1 or one per input)
    where: Declared


@dataclass
class Let:
    """A named elementwise node: symbol = expr."""

    symbol: sympy.Symbol
    expr: sympy.Expr
    where: Declared


@dataclass
class Cell:
    name: str
    title: str = ""
    output: str | None = None
    source: str | None = None
    inputs: list = field(default_factory=list)
    states: list = field(default_factory=list)  # state names, in declaration order
    positive_states: list = field(default_factory=list)  # those the checks start above zero
    params: list = field(default_factory=list)  # elementwise parameter symbols
    nodes: list = field(default_factory=list)  # Affine and Let, in declaration order
    updates: dict = field(default_factory=dict)  # state name -> Let giving its new value
    notes: list = field(default_factory=list)  # remarks for the derivation document
    _sizes: dict = field(default_factory=dict)  # symbol -> "D" or "H"
    _where: dict = field(default_factory=dict)  # name -> Declared

    def __setattr__(self, name, value):
        if name == "output":  # Cell(..., output="c") or cell.output = "c": an error names that line
            object.__setattr__(self, "_output_where", self._caller())
        object.__setattr__(self, name, value)

    def __post_init__(self):
        where = self._caller()
        self.name = _check_cell_name(self.name, where)
        self.title = _check_title(self.title, where)
        if self.source is None:
            self.source = where.file
        from . import hints  # here, not above: hints reads this module; importing it refuses NumPy's functions of cells

        script = _caller_frame()
        if script is not None and script.f_globals.get("__name__") == "__main__":  # python my_cell.py
            hints.hint_uncaught_errors()

    # -- declarations -----------------------------------------------------------------

    def input(self, name):
        """The per-step input x_t, a vector of size D."""
        where = self._caller()
        if self.inputs:
            raise SpecError(f"{where}: a cell has one input; '{self.inputs[0]}' is declared "
                            f"at {self._where[str(self.inputs[0])]}")
        name = _check_identifier(name, "input name", where, allowed={"x"})
        return self._declare(name, "D", where)

    def state(self, name, *, positive=False):
        """A recurrent state; returns its previous value, the symbol ``<name>_prev``.

        ``positive=True`` says the cell needs its value above zero (a normaliser it divides by,
        as an sLSTM's n): the gradient checks then start it at positive values, where an initial
        value drawn around zero could put a step at a pole."""
        where = self._caller()
        name = _check_identifier(name, "state name", where)
        if name.endswith("_prev") and name != "_prev":  # h_prev's state would be h_prev_prev, and its weight W_h_prev
            raise SpecError(f"{where}: state '{name}': name the state itself, cell.state('{name[:-5]}'), which "
                            f"returns its previous value, {name}")
        if name in self.states:
            raise SpecError(f"{where}: state '{name}' is declared twice (first at "
                            f"{self._where[name + '_prev']}); give each state its own name")
        if not isinstance(positive, bool):
            raise SpecError(f"{where}: state '{name}': positive= takes True or False, got {positive!r}")
        symbol = self._declare(f"{name}_prev", "H", where)
        self.states.append(name)
        if positive:
            self.positive_states.append(name)
        return symbol

    def param(self, name):
        """An elementwise parameter vector of size H (a peephole, a scale, ...)."""
        where = self._caller()
        symbol = self._declare(_check_identifier(name, "parameter name", where), "H", where)
        self.params.append(symbol)
        return symbol

    def affine(self, name, inputs, blocks=1, bias="b"):
        """``W_v1 v1 + W_v2 v2 + ... + bias``, split into blocks of size H.

        ``blocks`` is the list of the pre-activation names (or their count);
        ``bias`` is a name (one bias vector), None (or False, as PyTorch writes it), or a list of
        names: one per input, each a bias vector of its own that the affine adds with the others
        (PyTorch keeps one per input), or one name, which is one bias whatever the number of inputs,
        as the name alone is.
        Weight ``name_v`` multiplies input ``v``. Returns the block symbols.
        """
        where = self._caller()
        name = _check_identifier(name, "affine name", where)
        _check_affine_name_free(name, where, self.affines)
        self._check_affine_inputs(name, inputs, where)
        block_names = self._block_names(name, blocks, where)
        weights = [f"{name}_{_base_name(v)}" for v in inputs]
        biases = _bias_names(name, bias, len(inputs), where)
        self._check_affine_parameters(name, block_names, weights, biases, where)
        for p in weights + biases:
            self._claim(p, where)
        symbols = [self._declare(b, "H", where) for b in block_names]
        self.nodes.append(Affine(name, list(inputs), symbols, weights, biases, where))
        return Blocks(symbols, name)

    def let(self, name, expr):
        """A named elementwise node ``name = expr``; returns its symbol."""
        where = self._caller()
        name = _check_identifier(name, "name", where)
        expr = self._expression(name, expr, where)
        self._check_elementwise(name, expr, where)
        symbol = self._declare(name, "H", where)
        node = Let(symbol, expr, where)
        self.nodes.append(node)
        return symbol

    def update(self, **new_values):
        """The states' values after this step: ``update(c=c_new, h=o*tanh(c_new))``."""
        where = self._caller()
        for state, value in new_values.items():
            state = str.__str__(state)  # a keyword argument's name: a str, perhaps of a subclass
            if state not in self.states:
                raise SpecError(f"{where}: {self._not_a_state(state, value)}")
            if state in self.updates:
                raise SpecError(f"{where}: state '{state}' is updated twice (first at "
                                f"{self.updates[state].where}); give it one new value")
            let = self._let_of(value)
            if let is not None:
                self._check_update_let(state, let, where)
            else:
                if state in self._where:
                    raise SpecError(f"{where}: the new value of state '{state}' would be named '{state}', but "
                                    f"that name is already used at {self._where[state]}; pass that node "
                                    f"(cell.update({state}={state})) or rename it")
                symbol = self.let(state, value)
                let = self._let_of(symbol)
            self.updates[state] = let

    def note(self, text):
        """A remark for the document's "Where people go wrong"; ``{ds}`` cites ds's equation, and
        ``{{`` and ``}}`` write a brace. A name in backticks must be the cell's (the document
        refuses one it lacks); another cell's or library's names go without them."""
        self.notes.append(Note(str(text), self._caller()))

    # -- queries ----------------------------------------------------------------------

    @property
    def output_state(self):
        return self.output or self.states[0]

    @property
    def lets(self):
        return [n for n in self.nodes if isinstance(n, Let)]

    @property
    def affines(self):
        return [n for n in self.nodes if isinstance(n, Affine)]

    @property
    def blocks(self):
        """Every affine's blocks, in declaration order."""
        return [b for a in self.affines for b in a.blocks]

    def output_form(self):
        """Each function application a let defines -> the let's symbol: the derivation reads
        sigmoid(a_i) as i, so that derivatives come out in the stored outputs."""
        return {let.expr: let.symbol for let in self.lets if isinstance(let.expr, sympy.Function)}

    def readers(self, symbol):
        """The lets whose expressions read symbol."""
        return [let for let in self.lets if let.expr.has(symbol)]

    def prev(self, state):
        return sympy.Symbol(f"{state}_prev", real=True)

    def read_in_step(self):
        """Every symbol some node of the step reads (a state whose _prev is not among them carries
        nothing from step to step: an SRU's h)."""
        return {v for let in self.lets for v in let.expr.free_symbols} | {v for a in self.affines for v in a.inputs}

    def divided_states(self, at_zero=False):
        """The states whose previous value a denominator reads, directly or through lets (h =
        tanh(a)/n with n = n_prev + i): near zero a step is near a pole. With at_zero, those read by
        a denominator that is zero where every state is (zero_poles())."""
        if at_zero:
            return self.zeros_divided_by("state")
        reads = self._states_read()
        found = {s for let in self.lets for base in _denominators(let.expr) for s in _read_by(base, reads)}
        return [s for s in self.states if s in found]

    def zero_poles(self):
        """(let, denominator, states it reads) for each denominator that is zero where every state is
        zero (h = tanh(a)/n_prev, or c/n with n = f*n_prev): from zeros, the kernel's initial state
        for None, the first step divides by zero."""
        return self._zero_denominators({self.prev(s): s for s in self.states})

    def parameter_poles(self):
        """(let, denominator, names of the parameters it reads) for each denominator that is zero where its
        parameters are, and not where the states are (zero_poles()): (tanh(a) - h_prev)/tau. init_params
        draws every parameter around zero, and so do the checks."""
        state_poles = {(id(let), base) for let, base, _ in self.zero_poles()}
        return [(let, base, names) for let, base, names in self._zero_denominators({p: p.name for p in self.params})
                if (id(let), base) not in state_poles]

    def _zero_denominators(self, named):
        """(let, denominator, the names it reads) for each denominator that is zero where the symbols of
        named (symbol -> name: previous values, or parameters) are, read directly or through lets; the
        names in named's order."""
        at_zero, reads = dict.fromkeys(named, sympy.S.Zero), self._read_through_lets(named)
        poles = []
        for let in self.lets:
            poles += [(let, base, [n for n in named.values() if n in _read_by(base, reads)])
                      for base in _denominators(let.expr) if base.xreplace(at_zero) == 0]
            at_zero[let.symbol] = let.expr.xreplace(at_zero)
        return poles

    def poles_of(self, kind):
        """zero_poles() for kind "state", parameter_poles() for "parameter": (let, denominator, the names of
        that kind whose zero makes it zero), which the kernel's docstring and the document each say alike
        of both kinds."""
        return {"state": self.zero_poles, "parameter": self.parameter_poles}[kind]()

    def zeros_divided_by(self, kind):
        """The states or parameters (kind) whose zero makes a denominator zero, in declaration order."""
        found = {n for _, _, names in self.poles_of(kind) for n in names}
        declared = self.states if kind == "state" else [p.name for p in self.params]
        return [n for n in declared if n in found]

    def _states_read(self):
        """Each let's and each previous value's symbol -> the states whose previous value it reads,
        directly or through lets."""
        return self._read_through_lets({self.prev(s): s for s in self.states})

    def _read_through_lets(self, named):
        """Each symbol of named (symbol -> name) and each let's symbol -> the names of named's symbols it
        reads, directly or through lets."""
        reads = {symbol: {name} for symbol, name in named.items()}
        for let in self.lets:
            reads[let.symbol] = _read_by(let.expr, reads)
        return reads

    def parameter_names(self):
        names = []
        for a in self.affines:
            names += a.weights + a.biases
        return names + [p.name for p in self.params]

    def validate(self):
        """Checks that need the whole cell; raises SpecError naming the script.

        Every name is checked again here, whichever way it got into the cell, because each one
        becomes a Python identifier (or part of one) in the emitted kernel."""
        where = self.source or "<unknown>"
        _check_source(self.source)
        self.name = _check_cell_name(self.name, where)
        self.title = _check_title(self.title, where)
        set_at = self._output_where if self.output is not None else where
        if self.output is not None:
            if not isinstance(self.output, str):
                raise SpecError(f"{set_at}: output {self.output!r} is not a state's name; set output to one of: "
                                f"{', '.join(map(str, self.states))}{self._output_hint(str(self.output))}")
            object.__setattr__(self, "output", str.__str__(self.output))  # not a new setting: where it was set stays
        if not self.inputs:
            raise SpecError(f"{where}: cell '{self.name}' has no input; declare one with cell.input('x')")
        if len(self.inputs) > 1:
            raise SpecError(f"{where}: cell '{self.name}' has {len(self.inputs)} inputs; a cell has one")
        if not self.states:
            raise SpecError(f"{where}: cell '{self.name}' has no state; declare one with cell.state('h')")
        self._check_graph()
        for s in self.states:
            if s not in self.updates:
                raise SpecError(f"{self._declared(s + '_prev')}: state '{s}' is declared but never updated; "
                                f"give its new value with cell.update({s}=...)")
        for s in self.updates:
            if type(s) is not str or s not in self.states:
                raise SpecError(f"{self.updates[s].where}: {self._not_a_state(s)}")
        if not isinstance(self.output_state, str) or self.output_state not in self.states:
            raise SpecError(f"{set_at}: output {self.output_state!r} is not a state; set output to one of: "
                            f"{', '.join(self.states)}{self._output_hint(str(self.output_state))}")
        x = self.inputs[0]
        if not any(x in a.inputs for a in self.affines):
            raise SpecError(f"{self._declared(str(x))}: input '{x}' feeds no affine node, so the cell ignores "
                            f"it; pass it to one, e.g. cell.affine('W', [{x}, ...])")
        self._check_kernel_names()
        return self

    def _output_hint(self, name):
        """Which state output= likely means, where it names another node: what a step returns is a state."""
        if name.endswith("_prev") and name.removesuffix("_prev") in self.states:
            return f" ('{name}' is the previous value of state '{name.removesuffix('_prev')}')"
        given = next((s for s, let in self.updates.items() if str(let.symbol) == name), None)
        if given is not None:
            return f" ('{name}' is the new value of state '{given}': output='{given}')"
        if self._role(name) == "a let":
            return (f" (what a step returns is a state: to return the let '{name}', give a state of its own its "
                    f"value, cell.update(out={name}) for cell.state('out'), and set output='out'; nothing need read "
                    "out_prev)")
        return ""

    def with_let(self, name, expr, before):
        """A copy of the cell with the let ``name = expr`` before its node number ``before``, expr read
        by name from there on (the derivation names an inline gate so); None if the name, or one
        the kernel would make of it, is taken."""
        if name in self._where:
            return None
        where, symbol = self.nodes[before].where, sympy.Symbol(name, real=True)
        named = copy.copy(self)
        named.nodes = self.nodes[:before] + [Let(symbol, expr, where)] + [
            Let(n.symbol, n.expr.xreplace({expr: symbol}), n.where) if isinstance(n, Let) else n
            for n in self.nodes[before:]]
        lets = {n.symbol: n for n in named.nodes if isinstance(n, Let)}
        named.updates = {state: lets[let.symbol] for state, let in self.updates.items()}
        named._sizes = {**self._sizes, symbol: "H"}
        named._where = {**self._where, name: where}
        try:
            named._check_kernel_names()
        except SpecError:
            return None
        return named

    def warnings(self):
        """Warnings ("where: what") about the cell, once validate() has found it valid: the parts
        nothing reads (unread()), expressions so long that their derivation grows out of hand
        (long()), and denominators that the kernel's default initial state makes zero (poles()) or
        zero parameters do (parameter_pole_warnings())."""
        self.validate()
        return self.unread() + self.long() + self.poles() + self.parameter_pole_warnings()

    def poles(self):
        """A warning for each denominator that is zero where every state is: the checks pass, as they
        start no state at zero, but forward(params, x) starts every state there and gives nan."""
        return [f"{let.where}: '{let.symbol}' divides by {base}, which is zero where {_states_are(states)} "
                f"zero: from the default initial state (None: zeros) the kernel's forward divides by zero at the "
                f"first step, and its gradients, and perhaps its outputs, are inf or "
                f"nan, though the checks, which start no state at zero, pass; pass forward an initial state with "
                f"{' and '.join(states)} nonzero{self._positive_hint(states)}"
                for let, base, states in self.zero_poles()]

    def parameter_pole_warnings(self):
        """A warning for each denominator that is zero where its parameters are: the checks and init_params
        draw them uniform around zero, so that steps come near the pole, where the checks may fail."""
        warnings = []
        for let, base, params in self.parameter_poles():
            names = " and ".join(map(str, params))
            p = params[0]
            warnings.append(
                f"{let.where}: '{let.symbol}' divides by {base}, which is zero where {names} "
                f"{'is' if len(params) == 1 else 'are'} zero: init_params draws every parameter uniform around "
                f"zero, and so do the checks, so their steps come near this pole, where '{let.symbol}' and its "
                f"gradients grow without bound (the checks may fail); a parameter that must keep away from zero (a "
                f"time constant) is written through what never reaches it: 1 + {p}**2, exp({p}) or softplus({p}) "
                f"where {p} is")
        return warnings

    def _positive_hint(self, states):
        """What positive=True does for the states of a pole at zero, which it does not remove."""
        declared = [s for s in states if s in self.positive_states]
        if declared:  # the checks start it above zero, the kernel's None does not
            return (f" (positive=True on {' and '.join(declared)} starts the checks above zero, not the kernel's "
                    "forward)")
        declare = ", ".join(f"cell.state('{s}', positive=True)" for s in states)
        stay = "stay" if len(states) > 1 else "stays"
        return f" (and where {' and '.join(states)} {stay} above zero, {declare} starts the checks there too)"

    def long(self):
        """A warning for each let whose expression has more than LONG operations: the derivative of
        an unnamed nest repeats its inner parts, so its derivation, document and kernel grow about
        twofold with each level (8 levels of sigmoid and softplus: 2000 operations, minutes)."""
        return [f"{let.where}: '{let.symbol}' is one expression of {n} operations: name its parts with cell.let "
                "(each named node is one step of the derivation, and the derivative of an unnamed nest repeats "
                "its inner parts, so the derivation and its kernel grow fast with it)"
                for let in self.lets if (n := sympy.count_ops(let.expr)) > LONG]

    def needed(self):
        """The symbols the new states depend on: read by an update, or by what an update reads, and
        so on. A let outside it is computed for nothing (a kernel need not compute it), even where
        another let reads it."""
        blocks = {b: a for a in self.affines for b in a.blocks}
        lets = {let.symbol: let for let in self.lets}
        read, todo = set(), [sym for let in self.updates.values() for sym in let.expr.free_symbols]
        while todo:
            sym = todo.pop()
            if sym in read:
                continue
            read.add(sym)
            if sym in lets:
                todo += lets[sym].expr.free_symbols
            elif sym in blocks:
                todo += blocks[sym].inputs
        return read

    def unread(self):
        """Warnings ("where: what") for the parts of a valid cell that nothing the new states depend
        on reads: such a let is computed for nothing, such a parameter gets a zero gradient; and for
        a let that reads nothing, its terms cancelled."""
        read = self.needed()
        warnings = [f"{let.where}: '{let.symbol}' is computed but nothing the new states depend on reads it"
                    for let in self.lets if let.symbol not in read and let not in self.updates.values()]
        warnings += [f"{let.where}: '{let.symbol}' is the constant {let.expr} whatever the inputs: its expression's "
                     "terms cancel as the cell is built (SymPy's arithmetic), so the kernel computes that constant"
                     for let in self.lets if not let.expr.free_symbols]
        for a in self.affines:
            unread = [str(b) for b in a.blocks if b not in read]
            if unread:
                whose, its = ((f"blocks {', '.join(unread)}", "their") if len(unread) > 1 else
                              (f"block {unread[0]}", "its"))
                warnings.append(f"{a.where}: nothing the new states depend on reads {whose} of affine '{a.name}': "
                                f"{its} rows of {', '.join(a.weights + a.biases)} get a zero gradient")
        warnings += [f"{self._declared(str(p))}: parameter '{p}' is never read: its gradient is zero"
                     for p in self.params if p not in read]
        warnings += [f"{let.where}: state '{s}' never changes: its new value is {s}_prev"
                     for s, let in self.updates.items() if let.expr == self.prev(s)]
        warnings += [f"{self._declared(f'{s}_prev')}: no equation reads {s}_prev, so '{s}' carries nothing from "
                     f"step to step; " + ("right for a state that is only the output, as an SRU's h"
                                          if s == self.output_state else self._not_the_output(s))
                     for s in self.states if self.prev(s) not in read]
        return warnings

    def _not_the_output(self, state):
        """Why an unread state that is not the output is likely a mistake: such a state is what an
        SRU's h is, and the output left to its default is easily the other state."""
        which = "which output= names" if self.output else "the first state declared, as output= is not given"
        return (f"it reaches only the final state's loss; if '{state}' is what each step returns, say so with "
                f"Cell(..., output='{state}') (the output now is '{self.output_state}', {which})")

    # -- whole-cell checks ------------------------------------------------------------

    def _check_graph(self):
        """Every name valid, every node built only from vectors declared before it."""
        defined = self._declared_vectors()
        varying = self._varying()
        self._check_nodes(defined, varying)
        self._check_updates(varying)

    def _declared_vectors(self):
        """The input, the previous states and the parameters, each name checked: symbol -> its size."""
        x = self.inputs[0]
        _check_identifier(getattr(x, "name", x), "input name", self._declared(str(x)), allowed={"x"})
        defined = {x: "D"}
        seen_states = set()
        for s in self.states:
            where = self._declared(f"{s}_prev")
            _check_identifier(s, "state name", where)
            if type(s) is not str:
                raise SpecError(f"{where}: the state name {s!r} is a {type(s).__name__}, not a str")
            if s in seen_states:
                raise SpecError(f"{where}: state '{s}' is declared twice; give each state its own name")
            seen_states.add(s)
            defined[self.prev(s)] = "H"
        for p in self.params:
            _check_identifier(getattr(p, "name", p), "parameter name", self._declared(str(p)))
            defined[p] = "H"
        return defined

    def _check_nodes(self, defined, varying):
        """Each node's names valid and its own, and it reads only what is declared before it (defined,
        which grows by its symbols)."""
        names, affines = {}, []
        for node in self.nodes:
            if isinstance(node, Affine):
                _check_affine_name_free(node.name, node.where, affines)
                affines.append(node)
                made = [node.name] + list(node.weights) + list(node.biases) + [str(b) for b in node.blocks]
                for n in made:
                    _check_identifier(n, "name", node.where)
                if not node.inputs:
                    raise SpecError(f"{node.where}: affine '{node.name}' has no inputs; give it a list of vectors")
                if not node.blocks:
                    raise SpecError(f"{node.where}: affine '{node.name}' needs at least one block")
                for v in node.inputs:
                    if v not in defined:
                        raise SpecError(f"{node.where}: an input of affine '{node.name}' is '{v}', which is not "
                                        "declared before it; declare it before using it")
                    self._check_affine_input(node.name, v, node.where, varying)
                symbols = node.blocks
                made = made[1:]
            elif isinstance(node, Let):
                _check_identifier(str(node.symbol), "name", node.where)
                self._check_elementwise(str(node.symbol), node.expr, node.where, defined)
                symbols, made = [node.symbol], [str(node.symbol)]
            else:
                raise SpecError(f"{self.source}: {node!r} is not a node of the cell language")
            for n in made:
                if type(n) is not str:  # a subclass could print itself differently in the kernel
                    raise SpecError(f"{node.where}: the name {n!r} is a {type(n).__name__}, not a str")
                if n in names:
                    raise SpecError(f"{node.where}: the name '{n}' is already used at {names[n]}")
                names[n] = node.where
            for symbol in symbols:
                if symbol in defined:
                    raise SpecError(f"{node.where}: '{symbol}' is defined twice")
                defined[symbol] = "H"

    def _check_updates(self, varying):
        """Each state's new value a node of its own that varies with the step, and no other let named
        like a state."""
        lets = set(map(id, self.lets))
        owner = {}
        for s, let in self.updates.items():
            if id(let) not in lets:
                raise SpecError(f"{self.source}: the new value of state '{s}' is not a node of the cell")
            if id(let) in owner:
                raise SpecError(f"{let.where}: '{let.symbol}' is the new value of both state '{owner[id(let)]}' "
                                f"and state '{s}'; give '{s}' its own node, e.g. cell.let('{s}', {let.symbol})")
            owner[id(let)] = s
        for s, let in self.updates.items():
            if let.symbol not in varying:
                raise SpecError(f"{let.where}: the new value of state '{s}' is {let.expr}, the same at every step "
                                "(it reads no input, state or affine node); make it depend on one, or drop the state "
                                "and use a constant or a cell.param")
        for let in self.lets:
            name = str(let.symbol)
            if name in self.states and self.updates.get(name) is not let:
                raise SpecError(f"{let.where}: '{name}' has the name of state '{name}' but is not its new "
                                f"value; rename it, or pass it as cell.update({name}={name})")

    def _not_a_state(self, name, value=None):
        text = f"update of '{name}', which is not a declared state (states: {', '.join(self.states) or 'none'}); "
        meant = self._state_meant(name) if isinstance(value, sympy.Symbol) and str(value) == name else None
        if meant and self._role(name) == "a let":
            return text + (f"'{name}' is the let given as the value, declared at {self._where[name]}: a keyword of "
                           f"cell.update names the state that takes the value, so write {meant}=..., the let "
                           f"'{name}' its value")
        if name.endswith("_prev") and name.removesuffix("_prev") in self.states:
            s = name.removesuffix("_prev")
            return text + f"'{name}' is the previous value of state '{s}': give the new one with cell.update({s}=...)"
        close = difflib.get_close_matches(name, [s for s in self.states if s not in self.updates], n=1)
        if name in self._where:  # cell.state of a taken name is refused there: offering it would mislead
            role = self._role(name)
            fix = (f"did you mean {close[0]}?" if close else
                   f"to make it a state, declare cell.state('{name}') before that line" if role == "a let" else
                   "a state needs a name of its own")
            return text + f"'{name}' is {role}, declared at {self._where[name]}; {fix}"
        return text + (f"did you mean {close[0]}? or " if close else "") + f"declare it with cell.state('{name}')"

    def _state_meant(self, name):
        """The state not yet updated whose new value a let of this name likely is (c for c_new), or None."""
        free = [s for s in self.states if s not in self.updates]
        extended = max((s for s in free if name.startswith(s)), key=len, default=None)
        return extended or next(iter(difflib.get_close_matches(name, free, n=1)), None)

    def _check_kernel_names(self):
        """No two nodes may make the same name in the kernel, nor one the kernel uses itself."""
        owners = {}  # kernel name -> (owner, Declared)
        for kernel_name, owner, where in self._kernel_names():
            problem = _reserved(kernel_name, owner)
            if problem is None and kernel_name in owners and not _same_owner(owners[kernel_name][0], owner):
                # blame the later one
                (other, other_where), (owner, where) = sorted([owners[kernel_name], (owner, where)],
                                                              key=lambda made: (made[1].file, made[1].line))
                problem = f"also made by {other} (declared at {other_where})"
            if problem:
                raise _kernel_name_taken(kernel_name, owner, where, problem)
            owners.setdefault(kernel_name, (owner, where))

    def _kernel_names(self):
        """(identifier, owner, where) for every identifier the emitted kernel derives from a name.

        The emitter's naming scheme:
        - a state s has s_prev, s_seq, ds_next, ds_prev, ds_prev_zero, ds_passing and, for its new
          value, s and ds;
        - an affine A has pre_A, pre_A_seq, dpre_A, dpre_A_seq, dpre_A_flat, dpre_A_blocks, dpre_A_by,
          bias_A, scale_A, and for a run of its adjacent blocks u, ..., v the views of those columns,
          pre_A_u_..._v, dpre_A_u_..._v (and their _seq) and dpre_A_by_u_..._v (see column_view);
        - a weight or bias P has P and dP (a weight also P_scaled and P_input);
        - a block or a let v has v, v_seq, v_span (a gate the backward pass saves for a span, or a
          let's values there), dv, dv_seq (a block also pre_v, bias_v and dv_tmp; a let dv_kept);
        - a local derivative of let v by an input or a block u is dv_du (over a span dv_du_span);
        - a param p has p, dp and dp_kept;
        - tanh(u) and sigmoid(u) that no let names are tanh_u, sigmoid_u (or tanh<k>, sigmoid<k>
          for a compound u), u also in output form (s for sigmoid(a) when a let s = sigmoid(a))."""
        yield from self._call_names()
        yield from self._vector_names()
        state_of = {id(let): s for s, let in self.updates.items()}
        for node in self.nodes:
            yield from self._affine_names(node) if isinstance(node, Affine) else self._let_names(node, state_of)

    def _call_names(self):
        """The names of the calls no let names (tanh_c, sigmoid0) and of their storage."""
        named = {let.expr for let in self.lets}
        output_form = self.output_form()
        # xreplace, not subs: for the cell language's calls subs finds just the calls themselves, at ten times the cost
        forms = [let.expr for let in self.lets] + [let.expr.xreplace(output_form) for let in self.lets]
        calls = [c for expr in forms for c in sympy.preorder_traversal(expr) if type(c) in SUPPORTED_FUNCTIONS.values()]
        unnamed = sorted(set(calls) - named, key=sympy.default_sort_key)
        for call in unnamed:
            func, arg = type(call).__name__, call.args[0]
            owner, where = f"the unnamed {func}({arg})", self._declared_in(call)
            bases = [f"{func}_{arg}"] if isinstance(arg, sympy.Symbol) else [f"{func}{j}" for j in range(len(unnamed))]
            for base in bases:
                yield base, owner, where
                yield f"{base}_seq", owner, where

    def _vector_names(self):
        """The names made from the input, the states and the parameters."""
        x = self.inputs[0]
        yield str(x), f"input '{x}'", self._declared(str(x))
        for s in self.states:
            owner, where = f"state '{s}'", self._declared(f"{s}_prev")
            for n in (f"{s}_prev", f"{s}_seq", f"d{s}_next", f"d{s}_prev", f"d{s}_prev_zero", f"d{s}_passing"):
                yield n, owner, where
        for p in self.params:
            for n in (str(p), f"d{p}", f"d{p}_kept"):
                yield n, f"parameter '{p}'", self._declared(str(p))

    def _affine_names(self, node):
        """The names made from an affine, its weights, biases and blocks."""
        owner = f"affine '{node.name}'"
        for n in ("pre_{}", "pre_{}_seq", "dpre_{}", "dpre_{}_seq", "dpre_{}_flat", "dpre_{}_blocks", "dpre_{}_by",
                  "bias_{}", "scale_{}"):
            yield n.format(node.name), owner, node.where
        for j0, j1 in itertools.combinations(range(len(node.blocks) + 1), 2):
            for buffer in (f"pre_{node.name}", f"dpre_{node.name}"):
                view = column_view(buffer, node.blocks[j0:j1])
                yield view, owner, node.where
                yield f"{view}_seq", owner, node.where
            yield column_view(f"dpre_{node.name}_by", node.blocks[j0:j1]), owner, node.where
        for p in list(node.weights) + list(node.biases):
            yield p, f"parameter '{p}'", node.where
            yield f"d{p}", f"parameter '{p}'", node.where
        for p in node.weights:
            yield f"{p}_scaled", f"parameter '{p}'", node.where
            yield f"{p}_input", f"parameter '{p}'", node.where
        for b in node.blocks:
            for n in (f"{b}", f"{b}_seq", f"{b}_span", f"pre_{b}", f"bias_{b}", f"d{b}", f"d{b}_seq", f"d{b}_tmp"):
                yield n, f"block '{b}'", node.where

    def _let_names(self, node, state_of):
        """The names made from a let (state_of: id of a state's new value -> the state)."""
        v = str(node.symbol)
        s = state_of.get(id(node))
        owner = f"state '{s}'" if s == v else f"'{v}'"
        for n in (v, f"{v}_seq", f"d{v}", f"d{v}_seq", f"{v}_span", f"d{v}_kept"):
            yield n, owner, node.where
        # a block's adjoint may reach v through a gate's pre-activation (dc_new_da_g), not only
        # through v's own inputs
        for u in sorted(node.expr.free_symbols | set(self.blocks), key=str):
            yield f"d{v}_d{u}", owner, node.where
            yield f"d{v}_d{u}_span", owner, node.where

    # -- helpers ----------------------------------------------------------------------

    def _declare(self, name, size, where=None):
        where = where or self._caller()
        name = _check_identifier(name, "name", where, allowed={"x"} if size == "D" else ())
        self._claim(name, where)
        symbol = sympy.Symbol(name, real=True)
        self._sizes[symbol] = size
        DECLARED.add(symbol)
        if size == "D":
            self.inputs.append(symbol)
        return symbol

    def _claim(self, name, where):
        if name in self._where:
            raise SpecError(f"{where}: the name '{name}' is already used at {self._where[name]}"
                            f"{self._parameter_role(name)}; give each node its own name")
        self._where[name] = where

    def _role(self, name):
        """What a taken name names, in the words of the cell language."""
        for a in self.affines:
            if name in map(str, a.blocks):
                return f"a block of affine '{a.name}'"
            if name in a.weights + a.biases:
                return f"a parameter of affine '{a.name}'"
        kinds = [(self.inputs, "the input"), (self.params, "a parameter"), ([n.symbol for n in self.lets], "a let")]
        return next((kind for symbols, kind in kinds if name in map(str, symbols)), "a node")

    def _parameter_role(self, name):
        """', by the bias of affine 'W' ...' where an affine made the name: its line need not show it."""
        for a in self.affines:
            if name in a.biases:
                return f", by the bias of affine '{a.name}'{_DEFAULT_BIAS_HINT}"
            if name in a.weights:
                return f", by a weight of affine '{a.name}'"
        return ""

    def _declared(self, name):
        return self._where.get(name, Declared(self.source or "<unknown>", 0))

    def _declared_in(self, expr):
        for node in self.lets:
            if node.expr.has(expr):
                return node.where
        return Declared(self.source or "<unknown>", 0)

    def _check_affine_inputs(self, name, inputs, where):
        if isinstance(inputs, (sympy.Basic, str)) or not isinstance(inputs, (list, tuple)):
            raise SpecError(f"{where}: affine '{name}' takes a list of vectors, got {inputs!r}; "
                            f"write cell.affine('{name}', [x, h_prev], ...)")
        if not inputs:
            raise SpecError(f"{where}: affine '{name}' has no inputs; give it a list of vectors, "
                            f"e.g. cell.affine('{name}', [x, h_prev])")
        for v in inputs:
            self._check_known(v, where, f"an input of affine '{name}'")
            self._check_affine_input(name, v, where, self._varying())
        repeated = sorted({str(v) for v in inputs if list(inputs).count(v) > 1})
        if repeated:
            raise SpecError(f"{where}: affine '{name}' lists '{repeated[0]}' twice; list each vector once")

    def _check_affine_parameters(self, name, block_names, weights, biases, where):
        """No block named as one of the affine's parameters, and no parameter's name used before."""
        for b in block_names:
            if b in weights + biases:
                role = f"its own bias{_DEFAULT_BIAS_HINT}" if b in biases else "one of its own weights"
                raise SpecError(f"{where}: affine '{name}' names a block '{b}', the name of {role}")
        for p in weights + biases:
            _check_identifier(p, "parameter name", where)
            if p in self._where:
                hint = "; choose another with bias=..." if p in biases else ""
                raise SpecError(f"{where}: affine '{name}' makes the parameter '{p}', a name already used at "
                                f"{self._where[p]}{hint}")

    def _block_names(self, name, blocks, where):
        if isinstance(blocks, bool) or not isinstance(blocks, (int, list, tuple)):
            raise SpecError(f"{where}: affine '{name}': blocks is {blocks!r}; give a count or a list of names")
        names = [f"a{name}{k}" for k in range(blocks)] if isinstance(blocks, int) else list(blocks)
        if not names:
            raise SpecError(f"{where}: affine '{name}' needs at least one block")
        return [_check_identifier(b, "block name", where) for b in names]

    def _varying(self):
        """The vectors that change with the step, so have a row per batch element: the input, the
        previous states, the blocks, and every let that reads one of them. Constants and lets of
        parameters only are the same at every step."""
        varying = set(self.inputs) | {self.prev(s) for s in self.states}
        for node in self.nodes:
            if isinstance(node, Affine):
                varying |= set(node.blocks)
            elif node.expr.free_symbols & varying:
                varying.add(node.symbol)
        return varying

    def _check_affine_input(self, name, v, where, varying):
        """An affine multiplies a matrix of rows, one per batch element: the input, a previous
        state or a let of them; a block must be named by a let first."""
        role = f"affine '{name}'"
        if any(v in a.blocks for a in self.affines):
            raise SpecError(f"{where}: {role} reads the block '{v}' directly; name it first, e.g. "
                            f"v = cell.let('v', {v}), and pass v")
        if v in self.params:
            raise SpecError(f"{where}: {role} reads the parameter '{v}', which is the same at every step, so "
                            f"its product is a constant; use the affine's bias instead")
        if v not in varying:
            raise SpecError(f"{where}: {role} reads '{v}', which is the same at every step (it reads no input, "
                            "state or affine node); use the affine's bias instead")

    def _let_of(self, value):
        if not isinstance(value, sympy.Symbol):  # a NumPy array would compare elementwise, and no truth value
            return None
        for node in self.lets:
            if node.symbol == value:
                return node
        return None

    def _check_update_let(self, state, let, where):
        name = str(let.symbol)
        for other, given in self.updates.items():
            if given is let:
                raise SpecError(f"{where}: '{name}' is already the new value of state '{other}'; give "
                                f"'{state}' its own node: cell.let('{state}', {name}), then cell.update({state}={state})")
        if name in self.states and name != state:
            raise SpecError(f"{where}: '{name}' has the name of state '{name}' and cannot be the new value of "
                            f"state '{state}'; rename it")

    def _expression(self, name, expr, where):
        if isinstance(expr, str):
            raise SpecError(f"{where}: '{name}' is given the string {expr!r}; build a SymPy expression from "
                            "the symbols the cell returned (cell.input/state/param/affine/let)")
        if expr is None:
            raise SpecError(f"{where}: '{name}' is None, not an expression: a function that ends without `return` "
                            "gives None, and so do cell.update and cell.note")
        if isinstance(expr, (sympy.MatrixBase, sympy.MatrixExpr)):  # else refused as a function without a rule
            raise SpecError(f"{where}: '{name}' is a SymPy matrix, not an expression: {ONE_SYMBOL}; a matrix "
                            "multiplies only in an affine node, cell.affine('W', [x, h_prev], blocks=[...])")
        if isinstance(expr, (list, tuple, set, dict)) and not isinstance(expr, Blocks):  # Blocks says to unpack itself
            raise SpecError(f"{where}: '{name}' is a {type(expr).__name__}, {expr!r}, not an expression: {ONE_SYMBOL}")
        if type(expr).__module__ == "numpy" and getattr(expr, "ndim", 0) > 0:  # a symbol times np.ones(3), say
            raise SpecError(f"{where}: '{name}' is a NumPy array of shape {expr.shape}, not an expression: "
                            f"{ONE_SYMBOL}")
        try:
            expr = sympy.sympify(expr, strict=True)
        except (sympy.SympifyError, TypeError, ValueError) as error:
            raise SpecError(f"{where}: '{name}' is {expr!r}, not an expression: {error}") from None
        if is_comparison(type(expr)):  # cell.update(h=a > 0): a comparison, no number
            raise SpecError(f"{where}: '{name}' is {expr}, a comparison, not an elementwise expression: "
                            f"{COMPARED_INSTEAD}")
        if not isinstance(expr, sympy.Expr):
            raise SpecError(f"{where}: '{name}' is {expr} ({type(expr).__name__}), not an elementwise "
                            f"expression; build it from {SUPPORTED_OPERATIONS}")
        return expr

    def _check_known(self, symbol, where, role):
        if isinstance(symbol, sympy.Symbol) and symbol in self._sizes:
            return
        if isinstance(symbol, sympy.Symbol):
            raise SpecError(f"{where}: {role} is the unknown symbol '{symbol}'; {self._unknown_hint(symbol)}")
        if isinstance(symbol, sympy.Expr):
            raise SpecError(f"{where}: {role} is the expression {symbol}; name it first with cell.let(...)")
        raise SpecError(f"{where}: {role} is {symbol!r}, not a declared vector")

    def _unknown_hint(self, symbol):
        where = self._where.get(str(symbol))
        if where is not None and symbol in self._sizes:
            return (f"it is declared only at {where}, after this node; a node can use only nodes declared "
                    "before it (for a value from the previous step, use a state)")
        if where is not None:
            return (f"a vector named '{symbol}' is declared at {where}, but this symbol is not the one the "
                    "cell returned; use the returned symbol")
        return "declare it (cell.input/state/param/affine/let) before using it"

    def _check_elementwise(self, name, expr, where, sizes=None):
        sizes = self._sizes if sizes is None else sizes
        if not isinstance(expr, sympy.Expr):
            raise SpecError(f"{where}: '{name}' is {expr!r}, not an elementwise expression")
        _check_operations(name, expr, where)
        for symbol in sorted(expr.free_symbols, key=str):
            if symbol not in sizes:
                if str(symbol) == str(name):
                    raise SpecError(f"{where}: '{name}' is defined in terms of itself (a cycle); a node can use "
                                    "only nodes declared before it; for a value from the previous step, use "
                                    "a state")
                raise SpecError(f"{where}: '{name}' uses the unknown symbol '{symbol}'; {self._unknown_hint(symbol)}")
            if sizes[symbol] != "H":
                raise SpecError(f"{where}: '{name}' uses '{symbol}', a vector of size D, in an "
                                f"elementwise expression of size-H vectors; the input enters a cell only through "
                                f"affine nodes, e.g. cell.affine('W', [{symbol}, ...]) (adding {symbol} itself, a "
                                "residual connection, is not in the cell language)")

    def _caller(self):
        frame = _caller_frame()
        if frame is None:
            return Declared("<unknown>", 0)
        script = getattr(self, "source", None)  # unset while __init__ runs
        if script and frame.f_code.co_filename != script:  # a helper module's line: the script's call too
            outer = frame.f_back
            while outer is not None and outer.f_code.co_filename != script:
                outer = outer.f_back
            if outer is not None:
                return Declared(_beside(frame.f_code.co_filename, script), frame.f_lineno, script, outer.f_lineno)
        return Declared(frame.f_code.co_filename, frame.f_lineno)


def _states_are(states):
    return f"the state {states[0]} is" if len(states) == 1 else f"the states {' and '.join(states)} are"


def _denominators(expr):
    """The bases expr divides by: n for c/n, 1 + a**2 for 1/(1 + a**2)**2; in SymPy's canonical order,
    not atoms()'s set order, so that warnings come in the same order every run."""
    return sorted({p.base for p in expr.atoms(sympy.Pow) if p.exp.is_negative}, key=sympy.default_sort_key)


def _read_by(expr, reads):
    """The names expr reads, directly or through lets (reads: Cell._read_through_lets)."""
    return {s for v in expr.free_symbols for s in reads.get(v, ())}


def column_view(buffer, blocks):
    """The name of a view of the columns of an affine's buffer that hold the given adjacent blocks:
    pre_W_a_xr_a_xz for those of a_xr and a_xz in pre_W."""
    return "_".join([buffer, *map(str, blocks)])


def _base_name(symbol):
    """Weight names use the state's own name: W_h multiplies h_prev."""
    name = str(symbol)
    return name[: -len("_prev")] if name.endswith("_prev") else name


def _check_identifier(name, role, where, allowed=()):
    """The name as a plain str, if it can be a Python identifier in the kernel; else SpecError."""
    if not isinstance(name, str):
        raise SpecError(f"{where}: {role} {name!r} is not a string; give a name such as 'h'")
    name = str.__str__(name)  # a plain str: a subclass could format itself differently
    if not (name.isascii() and name.isidentifier()):
        raise SpecError(f"{where}: {role} {name!r} is not a valid Python identifier; use ASCII letters, "
                        "digits and underscores, not starting with a digit")
    if keyword.iskeyword(name):
        raise SpecError(f"{where}: {role} '{name}' is a Python keyword; rename it")
    if name.startswith("_"):
        raise SpecError(f"{where}: {role} '{name}' starts with an underscore, which the kernel keeps for "
                        "itself; rename it")
    if name in KERNEL_NAMES and name not in allowed:
        why = f" ({_WHY[name]})" if name in _WHY else ""
        raise SpecError(f"{where}: {role} '{name}' is reserved: it is one of the kernel's own names{why}, "
                        f"which are {', '.join(sorted(KERNEL_NAMES, key=lambda n: (n.lower(), n)))}; rename it")
    if name in BUILTIN_NAMES:
        raise SpecError(f"{where}: {role} '{name}' is a Python builtin, which the kernel would shadow; rename it")
    return name


def _check_cell_name(name, where):
    # a cell's name is its kernel's module name, no identifier inside it: the kernel's own names are
    # free, but not the kernels package's CELLS, which a module of that name would replace
    name = _check_identifier(name, "cell name", where, allowed=KERNEL_NAMES)
    if name == "CELLS":
        raise SpecError(f"{where}: cell name 'CELLS' is the kernels package's list of its cells; rename the cell")
    if name in MODULE_NAMES:
        raise SpecError(f"{where}: cell name '{name}' is the name of a Python module; the kernel file "
                        f"{name}.py would shadow it wherever it is copied; rename the cell")
    return name


def _unsafe_character(text, extra=""):
    """The first character that must not go into a generated comment or docstring, or None."""
    for c in text:
        if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp") or c in extra:
            return c
    return None


def _check_title(title, where):
    """A title goes into the kernel's docstring and the document's heading: one line of text."""
    if title is None:
        return ""
    if not isinstance(title, str):
        raise SpecError(f"{where}: title {title!r} is not a string")
    title = str.__str__(title)
    bad = _unsafe_character(title, "\\")
    if bad is not None:
        raise SpecError(f"{where}: title {title!r} contains {bad!r}; a title is one line of text without "
                        "control characters or backslashes")
    if '"""' in title:
        raise SpecError(f"{where}: title {title!r} contains three double quotes, which would end the "
                        "kernel's docstring; use single quotes")
    return title


def _check_source(source):
    """The script's file and directory names go into the kernel's header comment and docstring."""
    if source is None:
        return
    path = Path(source)
    for part in (path.name, path.parent.name):
        bad = _unsafe_character(part, '\\"')
        if bad is not None:
            raise SpecError(f"{source!r}: the script's path contains {bad!r} in {part!r}, which the "
                            "generated kernel's header would carry; rename or move the script")


def _check_operations(name, expr, where):
    """Only what the kernel can compute and differentiate: the functions of SUPPORTED_FUNCTIONS,
    + - * / and integer powers."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (sympy.Integer, sympy.Rational, sympy.Float)):
            _check_finite(name, node, where)
        elif isinstance(node, sympy.Pow):
            _check_power(name, node, where)
        elif not (isinstance(node, (sympy.Symbol, sympy.Add, sympy.Mul)) or type(node) in SUPPORTED_FUNCTIONS.values()):
            _refuse_operation(name, node, where)


def _check_finite(name, number, where):
    try:
        finite = all(abs(float(v)) < float("inf") for v in ([number.p, number.q] if number.is_Rational else [number]))
    except (OverflowError, TypeError, ValueError):
        finite = False
    if not finite:
        text = str(number) if len(str(number)) <= 24 else str(number)[:20] + "..."
        raise SpecError(f"{where}: '{name}' contains the number {text}, which is not a finite float64; "
                        "write a smaller number")


def _check_power(name, power, where):
    if power.base.has(sympy.Abs):  # (v*v)**0.5 is Abs(v)**1.0: the Abs below is the fault to name
        return
    if power.exp.is_Float and float(power.exp).is_integer():  # a**2.0: the float is the only fault
        raise SpecError(f"{where}: '{name}' contains {power.base}**{float(power.exp)}, a power with a float "
                        f"exponent; write it as an integer: {power.base}**{int(power.exp)}")
    if not power.exp.is_Integer:
        exponent = float(power.exp) if power.exp.is_Float else power.exp  # 0.5, not SymPy's 0.500000000000000
        root = (f" (so a square root cannot be written, nor a norm or a standard deviation; {ROOT_INSTEAD})"
                if (power.exp.is_Rational or power.exp.is_Float) and float(power.exp) == 0.5 else "")
        raise SpecError(f"{where}: '{name}' contains {power}, a power with exponent {exponent}; only "
                        f"integer powers are supported{root}; write '{name}' with {SUPPORTED_OPERATIONS}")


def _refuse_operation(name, node, where):
    """Raises the SpecError for a node that is none of the cell language's, saying what to write."""
    what = type(node).__name__
    if what in SUPPORTED_FUNCTIONS:  # sympy.exp, sympy.Function('relu'): the name, not the function
        raise SpecError(f"{where}: '{name}' uses {what}, but not lstm_derive's {what}: write "
                        f"from lstm_derive import {what}, the one whose derivative the kernels know")
    if isinstance(node, sympy.core.function.AppliedUndef):
        raise SpecError(f"{where}: '{name}' uses {what}, a function the cell language does not know; its "
                        f"expressions are elementwise, one component of size-H vectors at a time, with "
                        f"{SUPPORTED_OPERATIONS}: an operation across the H components (a mean, a norm, layer "
                        "normalisation) cannot be written")
    if not node.args and node.is_number:
        constant = _INFINITIES.get(node, str(node))
        spelled = f"sympy.{node}" if hasattr(sympy, str(node)) else constant  # pi, E, EulerGamma
        number = (f"write it as a number, float({spelled}) = {float(node)!r}" if node.is_real and node.is_finite
                  else "write a finite real number instead")
        raise SpecError(f"{where}: '{name}' contains the constant {constant}, which the kernel cannot compute; "
                        f"{number}")
    hint = f" {MAX_THROUGH_RELU}" if what in ("Max", "Min", "Heaviside", "Piecewise") else ""
    if what in ("Max", "Min"):  # np.clip's form, max(lo, min(v, hi)), is the likely call
        hint += f" (and {INSTEAD['minimum'] + ', ' if what == 'Min' else ''}{INSTEAD['clip']})"
    if is_comparison(type(node)):  # sigmoid(a > 0): SymPy keeps the comparison as an argument
        hint = f" ({COMPARED_INSTEAD})"
    if what == "log":
        hint = f" ({LOG_INSTEAD})"
    if what in ("Sum", "Product"):  # over an index: what a mean or a norm would need
        hint = (" (each expression is one component of its vectors at a time, so nothing across the H components, "
                "a sum, a mean, a norm, layer normalisation, can be written)")
    if what == "Abs":  # never written as such: SymPy makes it of a square root of a square
        hint = (" (SymPy writes sqrt(v**2), (v*v)**0.5 and abs(v) as Abs(v); |v| is relu(v) + relu(-v), "
                "its slope 0 at the kink, as relu's)")
    raise SpecError(f"{where}: '{name}' uses {what}, which has no derivative rule here; the supported functions "
                    f"are {', '.join(SUPPORTED_FUNCTIONS)} (with +, -, *, / and integer powers); rewrite '{name}' "
                    f"with them{hint}")


def is_comparison(kind):
    """Whether a SymPy class is one of comparisons (a > 0) or of their logic ((a > 0) & (b > 0))."""
    return issubclass(kind, (sympy.core.relational.Relational, sympy.logic.boolalg.BooleanFunction))


def _reserved(kernel_name, owner):
    """Why no node may make kernel_name (a keyword, a name the kernel uses itself, a builtin), or None."""
    if keyword.iskeyword(kernel_name):
        return "a Python keyword"
    if kernel_name in KERNEL_NAMES and not (kernel_name == "x" and owner.startswith("input")):
        return "one of the kernel's own names" + (f" ({_WHY[kernel_name]})" if kernel_name in _WHY else "")
    if kernel_name in BUILTIN_NAMES:
        return "a Python builtin the kernel would shadow"
    return None


def _kernel_name_taken(kernel_name, owner, where, problem):
    fix = "rename it"
    if owner.startswith("the unnamed"):
        call = owner.removeprefix("the unnamed ")
        fix = f"name it, e.g. cell.let('v', {call}), or rename the other"
    return SpecError(f"{where}: {owner} makes the kernel name '{kernel_name}', which is {problem}; {fix}")


def _bias_names(affine, bias, inputs, where):
    """The bias names an affine's bias= gives, checked: none, one, or one for each of its inputs."""
    if bias is None or bias is False:
        biases = []
    elif isinstance(bias, str):
        biases = [bias]
    elif isinstance(bias, (list, tuple)):
        biases = list(bias)
    else:
        raise SpecError(f"{where}: affine '{affine}': bias is {bias!r}; give a name, None, "
                        "or one name per input")
    if len(biases) not in (0, 1, inputs):
        raise SpecError(f"{where}: affine '{affine}' has {inputs} inputs and {len(biases)} biases; "
                        f"give one bias, none (bias=None) or one per input")
    return [_check_identifier(b, "bias name", where) for b in biases]


def _check_affine_name_free(name, where, affines):
    """A second affine of one name would make weights of the same names as the first's (W_x twice) or
    beside them (W_v by W_h): neither is the one matrix the script likely means to share."""
    first = next((a for a in affines if a.name == name), None)
    if first is not None:
        raise SpecError(f"{where}: affine '{name}' is already declared at {first.where}; an affine's weights "
                        f"are its own (weight {name}_v multiplies input v), so two affines cannot share one "
                        "matrix: tied weights are not in the cell language. Give this affine another name; "
                        "where one product serves both uses, read its blocks in both")


def _same_owner(one, other):
    """Unnamed calls share the kernel's numbered names (tanh0, tanh1, ...) among themselves."""
    return one == other or one.startswith("the unnamed") and other.startswith("the unnamed")


def _beside(helper, script):
    """A helper module's path spelt as the script's is where it lies beside it (the import found it
    by an absolute path): _gates.py:5 (called from three.py:7), not /home/.../_gates.py:5."""
    try:
        if Path(helper).resolve().parent == Path(script).resolve().parent:
            return str(Path(script).parent / Path(helper).name)
    except (OSError, ValueError):  # "<string>", or a path that cannot be resolved
        pass
    return helper


_OWN_FILES = (__file__, str(Path(__file__).with_name("hints.py")))  # the cell language's, and its guard's
# NumPy before 1.25 calls a function's __array_function__ (hints.py's guard) from Python code of this file name
_NUMPY_DISPATCH = "<__array_function__ internals>"


def _caller_frame():
    """The frame of the script line that called into this module (or hints.py's guard), or None."""
    frame = sys._getframe(1)
    # dataclass-made methods (__init__) have the file name "<string>"; so has a script run by
    # exec(), whose code is a <module>, not a method
    while frame is not None and (frame.f_code.co_filename in (*_OWN_FILES, _NUMPY_DISPATCH) or (
            frame.f_code.co_filename == "<string>" and frame.f_code.co_name.startswith("__"))):
        frame = frame.f_back
    return frame
