"""lstm-derive: a recurrent cell's forward equations in, its derivation and proven NumPy kernels out."""

import sys

from .derive import Derivation, derive
from .spec import Cell, SpecError, sigmoid, tanh


def explain(cell, file=None):
    """Prints the cell's forward equations and its backward pass, one named node at a time, after
    a warning for each part of the cell that nothing reads."""
    from .document import derivation_text
    from .emit import emit_kernel

    d = derive(cell)
    for warning in cell.unread():  # on stderr, as the command line has them, unless a file is given
        print(f"warning: {warning}", file=file or sys.stderr)
    print(derivation_text(d, emit_kernel(d)), file=file)  # the kernel: for its lines' table


__all__ = ["Cell", "SpecError", "sigmoid", "tanh", "derive", "Derivation", "explain"]
__version__ = "0.1.0"
