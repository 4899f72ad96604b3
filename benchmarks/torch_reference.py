"""PyTorch CPU nn.LSTM / nn.GRU with a kernel's weights: forward + backward, and its gradients.

nn.LSTM has two biases (bias_ih, bias_hh) where the lstm kernel has one b: bias_ih = b,
bias_hh = 0, and dL/db is bias_ih's gradient. nn.GRU's layout is the gru kernel's:
weight_ih = W_x, bias_ih = b_x, weight_hh = U_h, bias_hh = b_h, gates r, z, n.

One call computes every gradient the NumPy kernels compute: of all weights and biases,
of x and of the initial state, from upstream gradients on ys and the final state.
"""
import os

import numpy as np

try:
    import torch
except ImportError:  # the benchmarks say so and skip PyTorch
    torch = None

CELLS = ("lstm", "gru")


def available():
    return torch is not None


def version():
    return torch.__version__ if torch is not None else None


def set_threads(n=None):
    """Intra-op threads: n, else what NumPy's OpenBLAS runs with, OPENBLAS_NUM_THREADS before
    OMP_NUM_THREADS (so that both libraries run with the same count), capped at the cores this
    process may use as OpenBLAS caps it, else those cores; returns the count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    given = [os.environ.get(v, "") for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")]
    given = next((int(g) for g in given if g.isdigit() and int(g) > 0), None)
    # OpenBLAS runs no more threads than the cores it may use
    n = n or (min(given, cores) if given else cores)
    torch.set_num_threads(n)
    return torch.get_num_threads()


def _module(cell, params, dtype):
    D, H = params["W_x"].shape[1], params["W_x"].shape[0] // (4 if cell == "lstm" else 3)
    cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    m = cls(D, H, num_layers=1, bias=True, batch_first=False).to(dtype)
    with torch.no_grad():
        if cell == "lstm":
            m.weight_ih_l0.copy_(torch.from_numpy(params["W_x"]))
            m.weight_hh_l0.copy_(torch.from_numpy(params["W_h"]))
            m.bias_ih_l0.copy_(torch.from_numpy(params["b"]))
            m.bias_hh_l0.zero_()
        else:
            m.weight_ih_l0.copy_(torch.from_numpy(params["W_x"]))
            m.bias_ih_l0.copy_(torch.from_numpy(params["b_x"]))
            m.weight_hh_l0.copy_(torch.from_numpy(params["U_h"]))
            m.bias_hh_l0.copy_(torch.from_numpy(params["b_h"]))
    return m


class Reference:
    """nn.LSTM or nn.GRU set up for one problem; run() is one forward + backward."""

    def __init__(self, cell, params, x, state, dys, dstate):
        if cell not in CELLS:
            raise ValueError(f"no PyTorch reference for cell {cell!r}")
        self.cell = cell
        dtype = {np.float32: torch.float32, np.float64: torch.float64}[x.dtype.type]
        self.module = _module(cell, params, dtype)
        self.x = torch.from_numpy(x).requires_grad_()
        self.state = [torch.from_numpy(s[np.newaxis]).requires_grad_() for s in state]
        self.dys = torch.from_numpy(dys)
        self.dstate = [torch.from_numpy(d[np.newaxis]) for d in dstate]
        self.weights = list(self.module.parameters())

    def run(self):
        init = tuple(self.state) if self.cell == "lstm" else self.state[0]
        ys, final = self.module(self.x, init)
        final = list(final) if self.cell == "lstm" else [final]
        return torch.autograd.grad([ys] + final, [self.x] + self.state + self.weights,
                                   [self.dys] + self.dstate)

    def gradients(self):
        """(grads in the kernel's layout, dx, initial-state gradients) as NumPy arrays."""
        out = [g.detach().numpy() for g in self.run()]
        n = len(self.state)
        dx, dstate0, dw = out[0], tuple(d[0] for d in out[1:1 + n]), out[1 + n:]
        names = [name for name, _ in self.module.named_parameters()]
        dw = dict(zip(names, dw))
        if self.cell == "lstm":
            grads = {"W_x": dw["weight_ih_l0"], "W_h": dw["weight_hh_l0"], "b": dw["bias_ih_l0"]}
        else:
            grads = {"W_x": dw["weight_ih_l0"], "b_x": dw["bias_ih_l0"],
                     "U_h": dw["weight_hh_l0"], "b_h": dw["bias_hh_l0"]}
        return grads, dx, dstate0
