"""lstm-derive: a recurrent cell's forward equations in, its derivation and proven NumPy kernels out."""

from .derive import Derivation, derive
from .spec import Cell, SpecError, sigmoid, tanh


def explain(cell, file=None):
    """Prints the cell's forward equations and its backward pass, one named node at a time."""
    from .document import derivation_text

    print(derivation_text(derive(cell)), file=file)


__all__ = ["Cell", "SpecError", "sigmoid", "tanh", "derive", "Derivation", "explain"]
__version__ = "0.1.0"
