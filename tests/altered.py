"""Packaged kernels with a part replaced: the hand-written kernels a researcher checks, right or
wrong in a chosen way, for showing what the checker makes of them."""

NUMERIC = ("central", "complex")  # the methods that judge a formula: float32 judges its run against float64's


class Wrapped:
    """A packaged kernel with its backward() (or forward()) replaced."""

    def __init__(self, kernel, backward=None, forward=None):
        self.k = kernel
        for name in ("CELL", "INPUT", "STATES", "OUTPUT", "PARAMS", "init_params", "forward", "backward"):
            setattr(self, name, getattr(kernel, name))
        self.backward = backward or self.backward
        self.forward = forward or self.forward
