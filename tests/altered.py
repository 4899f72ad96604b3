"""Packaged kernels with a part replaced: the hand-written kernels a researcher checks, right or
wrong in a chosen way, for showing what the checker makes of them."""

import numpy as np

NUMERIC = ("central", "complex")  # the methods that judge a formula: float32 judges its run against float64's


class Wrapped:
    """A packaged kernel with its backward() (or forward()) replaced."""

    def __init__(self, kernel, backward=None, forward=None):
        self.k = kernel
        for name in ("CELL", "INPUT", "STATES", "OUTPUT", "PARAMS", "init_params", "forward", "backward"):
            setattr(self, name, getattr(kernel, name))
        self.backward = backward or self.backward
        self.forward = forward or self.forward


def wrong_bias(kernel, factor=1.01, largest=False):
    """A kernel whose first (or largest) bias gradient is off by a factor, 1% by default: small
    enough to need a real check."""
    def backward(params, cache, dys, dstate=None):
        grads, dx, dstate0 = kernel.backward(params, cache, dys, dstate)
        grads["b"] = grads["b"].copy()
        grads["b"][np.argmax(np.abs(grads["b"])) if largest else 0] *= factor
        return grads, dx, dstate0

    return Wrapped(kernel, backward)


def float32_only(kernel, change_forward=None, change_backward=None):
    """The kernel with its results changed in float32 runs alone."""
    def forward(params, x, state=None, lengths=None):
        ys, final, cache = kernel.forward(params, x, state, lengths=lengths)
        return change_forward(ys, final, cache) if change_forward and x.dtype == np.float32 else (ys, final, cache)

    def backward(params, cache, dys, dstate=None):
        out = kernel.backward(params, cache, dys, dstate)
        return change_backward(*out) if change_backward and dys.dtype == np.float32 else out

    return Wrapped(kernel, backward, forward)
