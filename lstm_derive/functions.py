"""The functions of the cell language, each with its facts in one place: its SymPy class (its
LaTeX, and its derivative in output form, read off the function's own value) and its record in
FUNCTIONS, from which spec.py, the emitter and the document take what they need of it. A new
function is a class here (unless SymPy's serves, as tanh's does) and a record."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import sympy


class _Elementwise(sympy.Function):
    """A function of one component of a size-H vector. ``_tex`` is its LaTeX, ``%s`` for the
    argument; fdiff gives its derivative in output form, read off the function's own value."""

    nargs = 1
    _tex = None

    def __new__(cls, *args, **options):
        if len(args) == 1 and not isinstance(args[0], (sympy.Basic, numbers.Number)):
            from .spec import Blocks  # imported here: spec.py imports this module
            if isinstance(args[0], Blocks):  # cell.affine's list of blocks: it says how to unpack it
                args[0].refuse()
            raise TypeError(f"{cls.__name__}() takes one expression of the cell's vectors (or a number), "
                            f"got {type(args[0]).__name__}")
        return super().__new__(cls, *args, **options)

    def _latex(self, printer, exp=None):
        text = self._tex % printer._print(self.args[0])
        return text if exp is None else r"%s^{%s}" % (text, exp)  # sigmoid(a)**2


class sigmoid(_Elementwise):
    """The logistic function 1/(1+exp(-a)), with its derivative in output form y(1-y)."""

    _tex = r"\sigma\left(%s\right)"

    def fdiff(self, argindex=1):
        return self * (1 - self)


tanh = sympy.tanh  # differentiates to 1 - tanh(a)**2: already output form


class positive(_Elementwise):
    """1 where its argument is above 0, else 0: relu's derivative, read off relu's output."""

    _tex = r"[%s > 0]"
    read_off_output = True  # a kernel forms it where it is read, from the stored output

    def fdiff(self, argindex=1):
        return sympy.S.Zero  # a step: flat wherever it has a derivative


class relu(_Elementwise):
    """max(a, 0), with its derivative in output form [y > 0] (0 at a = 0, as every framework)."""

    _tex = r"\operatorname{relu}\left(%s\right)"

    @classmethod
    def eval(cls, a):
        if a.is_number and a.is_real:
            return sympy.Max(a, 0)

    def fdiff(self, argindex=1):
        return positive(self)


class exp(_Elementwise):
    """e**a, its own derivative. Not sympy.exp, which merges exp(a)*exp(b) into exp(a + b) and
    would fold a product the script wrote into one the derivation cannot name."""

    _tex = r"\exp\left(%s\right)"

    def fdiff(self, argindex=1):
        return self


class softplus_slope(_Elementwise):
    """1 - exp(-y): softplus's derivative sigmoid(a), read off softplus's output y."""

    _tex = r"\left(1 - \exp\left(-%s\right)\right)"
    read_off_output = True

    def fdiff(self, argindex=1):
        return 1 - self


class softplus(_Elementwise):
    """log(1 + exp(a)), with its derivative in output form 1 - exp(-y)."""

    _tex = r"\operatorname{softplus}\left(%s\right)"

    def fdiff(self, argindex=1):
        return softplus_slope(self)


@dataclass(frozen=True)
class Slope:
    """A function's derivative read off its output where it needs a class of its own (relu's
    [y > 0]); the class is marked read_off_output, so that a kernel forms it where it is read."""

    cls: type
    text: str  # its terminal text, {} for its argument (bracketed if a sum)
    helper: tuple  # the kernel's helper of its name: the source lines, in a kernel that calls it
    zero_or_one: bool = False  # it takes no other values: a gradient through it passes whole or is cut


@dataclass(frozen=True)
class Function:
    """A function of the cell language: its class, and what the rest of the package says of it.
    In the documents' words, {a} is its argument and {v} its stored output; in the kernels' code,
    {a} is its argument's code, {out} the array it is written into and {zero} the code of 0 (an
    array of x's dtype where the loop has one)."""

    cls: type  # its SymPy class, of the name a script calls it by
    rule: str  # its derivative and that in output form, as the backward section gives them
    form: str  # the output form in its stored output {v}
    symbol: str | None = None  # its name in the documents' words, if not its own
    definition: str | None = None  # what it computes, in the forward section's words, if they say it
    # Differentiated from its argument it would call exp or tanh; read off its output it calls nothing.
    spares_calls: bool = False
    derivative_calls: str | None = None  # what its output form calls, if anything
    # Where its stored output rounds to its bound, so that its derivative comes out 0: in float64's
    # words, and float32's bound (see FUNCTIONS).
    saturates: tuple[str, str] | None = None
    positive: bool = False  # its output is above 0 whatever its argument (the carries' prose)
    unit_interval: bool = False  # and below 1
    numpy: str | None = None  # the NumPy function a kernel calls for it; None: a helper of its name
    helper: tuple = ()  # that helper's source lines, in a kernel that calls it
    into: str | None = None  # the line that writes it into an existing array; None: out[...] = its code
    slope: Slope | None = None  # its derivative's class, if it needs one
    # A gate's function: named when written inline (g for tanh(a_g)), its derivative read in output
    # form, activated with its affine's other gates. A new function is one only with the emitter's
    # code to activate it (emit/plan.py's _gates, and the kinds emit/forward.py knows).
    gate: bool = False

    @property
    def name(self):
        return self.cls.__name__

    @property
    def prose_name(self):
        return self.symbol or self.name


# In the order the refusals name them, the documents define them and the kernels define their helpers.
# saturates, in float64 and float32 (tests/test_functions.py measures them): σ(a), computed as
# 1/(1 + exp(-a)), = 1 from a = 36.7 and 16.6 (rounded correctly, from 37.4 and 17.3); tanh(a) rounded
# correctly = ±1 from |a| = 19.06 and 9.01, where NumPy's SIMD np.tanh (x86-64 with AVX2, NumPy 2.4)
# gives ±1 from 18.99 and 10.0: in float32 not float32's rounding but that code's. There the
# output-form derivative is 0, where the true one is below eps/2 (σ) or eps (tanh). (A gate's tanh
# computed as 2σ(2a) - 1: document/builders.py.)
FUNCTIONS = (
    Function(
        sigmoid, symbol="σ", definition="σ (sigmoid) is the logistic function 1/(1 + exp(-{a}))",
        rule="σ'({a}) = σ({a})(1 - σ({a}))", form="{v}(1 - {v})", spares_calls=True,
        saturates=("σ({a}) to 1 past {a} ≈ 37", "17"), positive=True, unit_interval=True,
        helper=(
            "def sigmoid(a):",
            '    """1 / (1 + exp(-a)), exact to rounding even where it is tiny; complex-analytic for |Re a| < 709.',
            "",
            "    exp(-a) overflows to inf below a = -709 (float64) or -88 (float32), where 1 / (1 + inf) = 0",
            "    stands for a value below the smallest normal number (in float16, below a = -11.1, for a",
            "    subnormal one below 1.5e-5), and underflows to 0 at the other end, where 1 is right: neither is",
            '    reported."""',
            '    with np.errstate(over="ignore", under="ignore"):',
            "        return 1 / (1 + np.exp(-a))",
        ),
        into="_sigmoid_into({a}, {out}, minus_one)",  # emit/__init__.py's helper: no temporary
        gate=True,
    ),
    Function(
        tanh, rule="tanh'({a}) = 1 - tanh({a})²", form="1 - {v}²", spares_calls=True,
        saturates=("tanh({a}) to ±1 past |{a}| ≈ 19", "9.0, or 10.0 in NumPy's SIMD np.tanh"),
        numpy="np.tanh", into="np.tanh({a}, out={out})",
        gate=True,
    ),
    Function(
        relu, definition="relu({a}) = max({a}, 0), whose derivative is written [{a} > 0]: 1 where {a} > 0, 0 where "
                         "{a} < 0, and 0 at {a} = 0, where it has none, as every framework takes it",
        rule="relu'({a}) = [{a} > 0]", form="[{v} > 0]",
        helper=(
            "def relu(a):",
            '    """max(a, 0). A complex a compares by its real part, as a complex step needs; at Re a = 0 exactly',
            "    by its imaginary part, so a complex step there sees slope 1 where the backward pass's [y > 0] is 0",
            '    (the derivative every framework takes at the kink)."""',
            "    return np.maximum(a, 0)",
        ),
        into="np.maximum({a}, {zero}, out={out})",
        slope=Slope(positive, text="[{} > 0]", zero_or_one=True, helper=(
            "def positive(y):",
            '    """[y > 0], relu\'s derivative read off its output y = relu(a) >= 0: the sign of y\'s real part, in',
            "    y's dtype (a comparison's booleans refuse a minus sign, 1 - bool makes integers, and the sign of a",
            '    complex y would be y/|y|)."""',
            "    return np.sign(y.real).astype(y.dtype, copy=False)",
        )),
    ),
    Function(
        softplus, definition="softplus({a}) = log(1 + exp({a}))",
        rule="softplus'({a}) = 1/(1 + exp(-{a})) = 1 - exp(-softplus({a}))", form="1 - exp(-{v})",
        derivative_calls="1 - exp(-y) of its output y (computed as -expm1(-y))", positive=True,
        helper=(
            "def softplus(a):",
            '    """log(1 + exp(a)), as max(a, 0) + log(1 + exp(-|a|)): no overflow, exact to rounding where it',
            '    is tiny, and complex-analytic off Re a = 0 (|a| is a or -a by the sign of Re a)."""',
            "    right = a.real > 0",
            '    with np.errstate(under="ignore"):  # exp(-|a|) may be below the smallest float: log1p(0) = 0 is right',
            "        return np.where(right, a, 0) + np.log1p(np.exp(np.where(right, -a, a)))",
        ),
        slope=Slope(softplus_slope, text="(1 - exp(-{}))", helper=(
            "def softplus_slope(y):",
            '    """1 - exp(-y), softplus\'s derivative sigmoid(a) read off its output y = softplus(a); exact to',
            '    rounding where y is tiny."""',
            "    return -np.expm1(-y)",
        )),
    ),
    Function(
        exp, rule="exp'({a}) = exp({a})", form="{v}", spares_calls=True, positive=True,
        numpy="np.exp", into="np.exp({a}, out={out})",
    ),
)

# The functions a script may call, by the names it calls them.
SUPPORTED_FUNCTIONS = {f.name: f.cls for f in FUNCTIONS}

GATE_FUNCTIONS = tuple(f.cls for f in FUNCTIONS if f.gate)

# What spec.py re-exports (a script may import the functions from there too).
__all__ = ["FUNCTIONS", "SUPPORTED_FUNCTIONS", "GATE_FUNCTIONS", *SUPPORTED_FUNCTIONS,
           *(cls.__name__ for cls in _Elementwise.__subclasses__())]
