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

import keyword
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sympy

__all__ = ["Cell", "SpecError", "sigmoid", "tanh", "SUPPORTED_FUNCTIONS"]


class SpecError(ValueError):
    """A derivation script describes a cell the engine cannot accept."""


class sigmoid(sympy.Function):
    """The logistic function 1/(1+exp(-a)), with its derivative in output form y(1-y)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _latex(self, printer):
        return r"\sigma\left(%s\right)" % printer._print(self.args[0])


tanh = sympy.tanh

# sympy.tanh differentiates to 1 - tanh(a)**2: already output form.
SUPPORTED_FUNCTIONS = {"sigmoid": sigmoid, "tanh": tanh}

# Names the emitted kernels use for themselves; a node may not take them.
RESERVED_NAMES = frozenset(
    "np numpy params cache state dstate grads dys ys x_t dx T B D H t sigmoid".split()
)


@dataclass
class Declared:
    """Where a node was written, for error messages that point at the script."""

    file: str
    line: int

    def __str__(self):
        return f"{self.file}:{self.line}"


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
    params: list = field(default_factory=list)  # elementwise parameter symbols
    nodes: list = field(default_factory=list)  # Affine and Let, in declaration order
    updates: dict = field(default_factory=dict)  # state name -> Let giving its new value
    _sizes: dict = field(default_factory=dict)  # symbol -> "D" or "H"
    _where: dict = field(default_factory=dict)  # name -> Declared

    def __post_init__(self):
        _check_identifier(self.name, "cell name", self._caller())
        if self.source is None:
            self.source = self._caller().file

    # -- declarations -----------------------------------------------------------------

    def input(self, name):
        """The per-step input x_t, a vector of size D."""
        if self.inputs:
            raise SpecError(f"{self._caller()}: a cell has one input; '{self.inputs[0]}' is declared")
        return self._declare(name, "D")

    def state(self, name):
        """A recurrent state; returns its previous value, the symbol ``<name>_prev``."""
        where = self._caller()
        _check_identifier(name, "state name", where)
        if name in self.states:
            raise SpecError(f"{where}: state '{name}' is declared twice")
        symbol = self._declare(f"{name}_prev", "H")
        self.states.append(name)
        return symbol

    def param(self, name):
        """An elementwise parameter vector of size H (a peephole, a scale, ...)."""
        symbol = self._declare(name, "H")
        self.params.append(symbol)
        return symbol

    def affine(self, name, inputs, blocks=1, bias="b"):
        """``W_v1 v1 + W_v2 v2 + ... + bias``, split into blocks of size H.

        ``blocks`` is the list of the pre-activation names (or their count);
        ``bias`` is a name, None, or one name per input (PyTorch keeps one per input).
        Weight ``name_v`` multiplies input ``v``. Returns the block symbols.
        """
        where = self._caller()
        _check_identifier(name, "affine name", where)
        if not inputs:
            raise SpecError(f"{where}: affine '{name}' has no inputs; give it a list of vectors")
        for v in inputs:
            self._check_known(v, where, f"an input of affine '{name}'")
        block_names = [f"a{name}{k}" for k in range(blocks)] if isinstance(blocks, int) else list(blocks)
        if not block_names:
            raise SpecError(f"{where}: affine '{name}' needs at least one block")
        weights = [f"{name}_{_base_name(v)}" for v in inputs]
        biases = [] if bias is None else [bias] if isinstance(bias, str) else list(bias)
        if len(biases) not in (0, 1, len(inputs)):
            raise SpecError(f"{where}: affine '{name}' has {len(inputs)} inputs and {len(biases)} biases")
        for p in weights + biases:
            _check_identifier(p, "parameter name", where)
            self._claim(p, where)
        symbols = [self._declare(b, "H", where) for b in block_names]
        self.nodes.append(Affine(name, list(inputs), symbols, weights, biases, where))
        return symbols

    def let(self, name, expr):
        """A named elementwise node ``name = expr``; returns its symbol."""
        where = self._caller()
        expr = sympy.sympify(expr)
        self._check_elementwise(name, expr, where)
        symbol = self._declare(name, "H", where)
        node = Let(symbol, expr, where)
        self.nodes.append(node)
        return symbol

    def update(self, **new_values):
        """The states' values after this step: ``update(c=c_new, h=o*tanh(c_new))``."""
        where = self._caller()
        for state, value in new_values.items():
            if state not in self.states:
                raise SpecError(f"{where}: update of '{state}', which is not a declared state "
                                f"(states: {', '.join(self.states) or 'none'}); declare it with cell.state('{state}')")
            if state in self.updates:
                raise SpecError(f"{where}: state '{state}' is updated twice")
            let = self._let_of(value)
            if let is None:
                symbol = self.let(state, value)
                let = self._let_of(symbol)
            self.updates[state] = let

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

    def size(self, symbol):
        return self._sizes[symbol]

    def is_input(self, symbol):
        return self._sizes.get(symbol) == "D"

    def prev(self, state):
        return sympy.Symbol(f"{state}_prev", real=True)

    def parameter_names(self):
        names = []
        for a in self.affines:
            names += a.weights + a.biases
        return names + [p.name for p in self.params]

    def validate(self):
        """Checks that need the whole cell; raises SpecError naming the script."""
        where = self.source
        if not self.inputs:
            raise SpecError(f"{where}: cell '{self.name}' has no input; declare one with cell.input('x')")
        if not self.states:
            raise SpecError(f"{where}: cell '{self.name}' has no state; declare one with cell.state('h')")
        missing = [s for s in self.states if s not in self.updates]
        if missing:
            raise SpecError(f"{where}: state '{missing[0]}' is declared but never updated; "
                            f"give its new value with cell.update({missing[0]}=...)")
        if self.output_state not in self.states:
            raise SpecError(f"{where}: output '{self.output_state}' is not a state")
        x = self.inputs[0]
        if not any(x in a.inputs for a in self.affines):
            raise SpecError(f"{where}: input '{x}' feeds no affine node, so the cell ignores it")
        return self

    # -- helpers ----------------------------------------------------------------------

    def _declare(self, name, size, where=None):
        where = where or self._caller()
        _check_identifier(name, "name", where)
        self._claim(name, where)
        symbol = sympy.Symbol(name, real=True)
        self._sizes[symbol] = size
        if size == "D":
            self.inputs.append(symbol)
        return symbol

    def _claim(self, name, where):
        if name in self._where:
            raise SpecError(f"{where}: the name '{name}' is already used at {self._where[name]}")
        self._where[name] = where

    def _let_of(self, value):
        for node in self.lets:
            if node.symbol == value:
                return node
        return None

    def _check_known(self, symbol, where, role):
        if isinstance(symbol, sympy.Symbol) and symbol in self._sizes:
            return
        if isinstance(symbol, sympy.Symbol):
            raise SpecError(f"{where}: {role} is the unknown symbol '{symbol}'; declare it before using it")
        if isinstance(symbol, sympy.Expr):
            raise SpecError(f"{where}: {role} is the expression {symbol}; name it first with cell.let(...)")
        raise SpecError(f"{where}: {role} is {symbol!r}, not a declared vector")

    def _check_elementwise(self, name, expr, where):
        for symbol in sorted(expr.free_symbols, key=str):
            if symbol not in self._sizes:
                raise SpecError(f"{where}: '{name}' uses the unknown symbol '{symbol}'; "
                                "declare it (cell.input/state/param/affine/let) before using it")
            if self._sizes[symbol] != "H":
                raise SpecError(f"{where}: '{name}' uses '{symbol}', a vector of size D, in an "
                                "elementwise expression of size-H vectors; pass it through an affine node")
        for f in expr.atoms(sympy.Function):
            if type(f) not in SUPPORTED_FUNCTIONS.values():
                raise SpecError(f"{where}: '{name}' uses {type(f).__name__}, which has no derivative rule here; "
                                f"supported functions: {', '.join(SUPPORTED_FUNCTIONS)}")
        bad = expr.atoms(sympy.Derivative, sympy.Integral, sympy.Piecewise)
        if bad:
            raise SpecError(f"{where}: '{name}' contains {bad.pop()}, which an elementwise node cannot hold")

    @staticmethod
    def _caller():
        frame = sys._getframe(1)
        here = __file__
        # dataclass-made methods have the file name "<string>"
        while frame is not None and frame.f_code.co_filename in (here, "<string>"):
            frame = frame.f_back
        if frame is None:
            return Declared("<unknown>", 0)
        return Declared(frame.f_code.co_filename, frame.f_lineno)


def _base_name(symbol):
    """Weight names use the state's own name: W_h multiplies h_prev."""
    name = str(symbol)
    return name[: -len("_prev")] if name.endswith("_prev") else name


def _check_identifier(name, role, where):
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        raise SpecError(f"{where}: {role} {name!r} is not a valid Python identifier")
    if keyword.iskeyword(name) or name in RESERVED_NAMES or name.startswith("_"):
        raise SpecError(f"{where}: {role} '{name}' is reserved (a Python keyword, a leading underscore, "
                        f"or one of the kernel's own names: {', '.join(sorted(RESERVED_NAMES))})")
