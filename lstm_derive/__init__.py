"""lstm-derive: a recurrent cell's forward equations in, its derivation and proven NumPy kernels out.

The names below are loaded on first use, so that importing a generated kernel
(`from lstm_derive.kernels import lstm`) or the checker needs NumPy alone, not SymPy.
"""

import importlib
import importlib.util
import os
import sys
import types

# Listed here, not read off functions.py's table, which would import SymPy (a test checks the two agree).
_NAMES = {"Cell": "spec", "SpecError": "spec", "sigmoid": "spec", "tanh": "spec", "relu": "spec", "softplus": "spec", "exp": "spec",
          "derive": "derive", "Derivation": "derive"}


def __getattr__(name):
    if name not in _NAMES:
        if not name.startswith("_") and importlib.util.find_spec(f".{name}", __name__) is None:
            _hint_after_traceback()  # `from lstm_derive import Sigmoid`, before any Cell installs it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def _hint_after_traceback():
    """A script run as a program that imports a name the package lacks ends with the import that
    gives it (see hints.hint_uncaught_errors)."""
    from .hints import hint_uncaught_errors
    hint_uncaught_errors()


SCRIPT_MODULE = "lstm_derive.script"  # the module name a script runs under when the command line loads it


def explain(cell, file=None):
    """Prints the cell's forward equations and its backward pass, one named node at a time, after
    a warning for each part of the cell that nothing reads. A mistake in the cell that only the
    whole cell shows (a name that clashes) ends the script with one line on stderr and status 2,
    as the command line says it. In a script the command line loads (explain(cell) written outside
    `if __name__ == "__main__":`), it prints nothing: `lstm-derive show` prints the derivation."""
    if sys._getframe(1).f_globals.get("__name__") == SCRIPT_MODULE:
        return
    from .derive import derive
    from .document import derivation_text
    from .emit import emit_kernel
    from .spec import SpecError
    from .terminal import printable

    def warn(warning):  # on stderr, as the command line has them, unless a file is given
        print(printable(f"warning: {warning}", file or sys.stderr), file=file or sys.stderr, flush=True)

    try:
        d = derive(cell, warn)
    except SpecError as error:
        print(f"lstm-derive: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        text = derivation_text(d, emit_kernel(d))  # the kernel: for its lines' table
        print(printable(text, file or sys.stdout), file=file, flush=True)  # in ASCII where a code page lacks ∂, ⊙, σ
    except BrokenPipeError:  # python derivations/lstm.py | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit


class _Package(types.ModuleType):
    """The package, whose name `derive` stays the function when the submodule of that name is first
    imported (the import system then sets the package's attribute to the submodule)."""

    def __setattr__(self, name, value):
        if name == "derive" and isinstance(value, types.ModuleType):
            value = value.derive
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__():
    return sorted(__all__ + ["__version__"])


__all__ = [*_NAMES, "explain"]
__version__ = "0.1.0"
