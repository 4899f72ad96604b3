"""A kernel written by hand, to check with lstm-derive: an Elman RNN, h = tanh(W_x x + W_h h_prev + b).

    lstm-derive check examples/handwritten_rnn.py --problems 12
    python examples/handwritten_rnn.py                          # the same check

This is the whole interface the checker needs, and a model for a cell of one's own written
directly in NumPy: forward() and backward() at the top of the module, init_params(), STATES and
PARAMS. Arrays are time-major, x (T, B, D); every state is (B, H).
"""

import numpy as np

STATES = ("h",)  # the recurrent states, in the order forward() takes and returns them
PARAMS = ("W_x", "W_h", "b")  # every parameter forward() reads


def init_params(D, H, *, seed=0, scale=None, dtype=np.float64):
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(H) if scale is None else scale
    shapes = {"W_x": (H, D), "W_h": (H, H), "b": (H,)}
    return {name: rng.uniform(-scale, scale, shape).astype(dtype) for name, shape in shapes.items()}


def forward(params, x, state=None):
    """Returns ys (T, B, H), the final state (h,) and what backward() reads."""
    W_x, W_h, b = (params[name] for name in PARAMS)
    T, B, _ = x.shape
    h = np.zeros((T + 1, B, W_h.shape[0]), x.dtype)  # h[0] is the initial state; x's dtype, not float64
    if state is not None:
        h[0] = state[0]
    a = x @ W_x.T + b  # the input part of every step at once
    for t in range(T):
        h[t + 1] = np.tanh(a[t] + h[t] @ W_h.T)
    return h[1:], (h[T].copy(),), (x, h)


def backward(params, cache, dys, dstate=None):
    """Returns the gradients of the parameters (a dict), of x, and of the initial state (dh0,)."""
    W_x, W_h = params["W_x"], params["W_h"]
    x, h = cache
    dh = np.zeros_like(h[0]) if dstate is None else dstate[0].copy()
    da = np.empty_like(h[1:])
    for t in reversed(range(len(x))):
        dh = dh + dys[t]  # this step's loss, and every later step's through h
        da[t] = (1 - h[t + 1] ** 2) * dh  # tanh' = 1 - h**2, read off the output
        dh = da[t] @ W_h  # on to h_prev
    grads = {"W_x": np.einsum("tbi,tbj->ij", da, x), "W_h": np.einsum("tbi,tbj->ij", da, h[:-1]),
             "b": da.sum(axis=(0, 1))}
    return grads, da @ W_x, (dh,)


if __name__ == "__main__":  # run as a script, it is checked as the docstring's command checks it
    import sys

    from lstm_derive import cli

    sys.exit(cli.main(["check", __file__, "--problems", "12"]))
