"""Peak memory of one forward + backward call, against the least a BPTT must keep.

tracemalloc sees every NumPy array buffer (NumPy reports its allocations to it), so
the peak of traced memory during a call, minus what was traced before it, is the
call's peak memory growth: the cache, the temporaries of both passes and the
gradients it returns (dx alone is T*B*D numbers). Arrays made before the call
(parameters, x, upstream gradients) do not count. PyTorch's allocations are not
seen, so PyTorch has no memory figure.

The yardstick is the minimum activation storage, T*B*H*k numbers: k is the number of
per-step (B, H) values that the backward pass reads and that only the forward pass
computed. x is not counted (the caller holds it). Values that are cheap to recompute
(tanh(c) from c) are counted as kept, because recomputing them costs a transcendental
per element in the backward pass and none of these implementations does it. The
outputs ys are the stored h, not a second copy.

With these k, the ratio can get near (k + D/H) / k: the pre-activation gradients that
the weight-gradient GEMMs read can be written over the gate values, which are dead once
their step's backward is done.
"""
import gc
import tracemalloc

import numpy as np

# k and what it counts, per cell. h_prev is read by the recurrent weight gradient
# (dW_h = sum da h_prev^T) in every cell.
ACTIVATIONS = {
    "lstm": (7, "i, f, g, o (sigmoid/tanh slopes and the products in c), "
                "c_prev (df = c_prev dc), tanh(c) (do = tanh(c) dh and its slope), h_prev"),
    "gru": (5, "r, z, n (slopes and products), a_hn = U_hn h_prev + b_hn (dr = a_hn da_n), "
               "h_prev (dz = (h_prev - n) dh, and dU_h)"),
    "lstm_seed": (6, "g, i, f, o; s (s_prev for df, and s for do = s dh: one sequence of T+1); "
                     "h_prev"),
}


def min_activation_bytes(cell, T, B, H, dtype):
    k, _ = ACTIVATIONS[cell]
    return T * B * H * k * np.dtype(dtype).itemsize


def peak_growth(fn):
    """Runs fn() once under tracemalloc: (peak growth, growth still held after it), in bytes."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    del result
    return peak - base, current - base


def measure(forward_only, forward_backward):
    """Peak growth of forward + backward, what forward returns (the cache), and what
    forward + backward returns (the gradients), in bytes; both arguments are callables."""
    _, cache_bytes = peak_growth(forward_only)
    peak, output_bytes = peak_growth(forward_backward)
    return {"peak_bytes": peak, "cache_bytes": cache_bytes, "output_bytes": output_bytes}
