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

    python benchmarks/memory.py [--cells lstm gru lstm_seed] [--sizes S1 S2 ...] [--dtypes float64]

prints these figures for the generated kernels and their NumPy references (bench.py prints
them among its timings).
"""
import argparse
import gc
import itertools
import sys
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


def against_floor(measured, floor):
    """measure()'s figures with the peak over the minimum activations, and the least that ratio can
    be: the cache holds at least the minimum activations while the gradients are returned."""
    return dict(measured, ratio=measured["peak_bytes"] / floor, bound=(floor + measured["output_bytes"]) / floor)


def main(argv=None):
    import bench  # it imports this module to measure

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=COLUMNS)
    ap.add_argument("--cells", nargs="+", choices=list(ACTIVATIONS), default=["lstm", "gru"])
    ap.add_argument("--sizes", nargs="+", type=bench.parse_size, default=[bench.parse_size("S2")], metavar="SIZE",
                    help=f"{', '.join(bench.SIZES)} (as bench.py's), or T,B,D,H (default: S2)")
    ap.add_argument("--dtypes", nargs="+", choices=list(bench.DTYPES), default=["float64"], help="(default: float64)")
    args = ap.parse_args(argv)
    gc.freeze()  # what is alive now lives to the end: no collection walks through it before each call
    try:
        print_table(bench, args.cells, args.sizes, args.dtypes)
    finally:
        gc.unfreeze()
    return 0


def print_table(bench, cells, sizes, dtypes):
    """One row per cell, size, dtype and NumPy implementation: the columns COLUMNS names."""
    print(f"{'cell':<10}{'size':<10}{'dtype':<9}{'implementation':<20}{'peak KiB':>10}{'cache KiB':>10}"
          f"{'returned KiB':>13}{'min KiB':>10}{'k':>3}{'peak/min':>9}{'bound':>7}")
    for cell, (size, (T, B, D, H)), dtype_name in itertools.product(cells, sizes, dtypes):
        dtype, kernel = bench.DTYPES[dtype_name], bench.load_generated(cell)
        floor = min_activation_bytes(cell, T, B, H, dtype)
        for impl in bench.numpy_impls(cell, kernel, bench.make_problem(kernel, T, B, D, H, dtype)).values():
            m = against_floor(impl.memory(), floor)
            print(f"{cell:<10}{size:<10}{dtype_name:<9}{impl.label:<20}{m['peak_bytes'] / 2**10:>10.1f}"
                  f"{m['cache_bytes'] / 2**10:>10.1f}{m['output_bytes'] / 2**10:>13.1f}{floor / 2**10:>10.1f}"
                  f"{ACTIVATIONS[cell][0]:>3}{m['ratio']:>9.2f}{m['bound']:>7.2f}", flush=True)

COLUMNS = """Columns: peak, the peak memory growth of one forward + backward call; cache, what forward
returns and backward reads; returned, the gradients backward returns; min, the minimum activation
storage T*B*H*k numbers (k per cell, below); peak/min, the first over the last; bound, the least
peak/min can be, with nothing held but the minimum activations and the returned gradients.
k: """ + "; ".join(f"{cell} {k}" for cell, (k, _) in ACTIVATIONS.items())


if __name__ == "__main__":
    sys.exit(main())
