"""The GEMMs of a recurrent kernel, alone: the machine's GEMM throughput and a replay.

A kernel of this project does, per weight matrix W (k*H rows):

  input weight W (k*H, D), named *_x:
      forward   one GEMM   (T*B, D) @ W^T            -> (T*B, k*H)
      backward  one GEMM   dA^T (k*H, T*B) @ x       -> dW
                one GEMM   dA (T*B, k*H) @ W         -> dx
  recurrent weight W (k*H, H), every other matrix:
      forward   T GEMMs    (B, H) @ W^T              -> (B, k*H), W^T the transposed view
      backward  T GEMMs    (B, k*H) @ W              -> dh_prev
                one GEMM   dA^T (k*H, T*B) @ h_prev  -> dW

`replay` runs exactly these on buffers of the right shapes, nothing else; its time
over the kernel's time is the share of the kernel's time that its GEMMs need.

    python benchmarks/gemms.py [--rounds N]   # the forward step's GEMM: W^T's view, a contiguous copy

`layouts` shows why the kernels keep the view: BLAS reads a contiguous copy of W^T faster, but
NumPy's transposing copy costs more than a step's GEMM, so it pays off only over many steps of a
large batch, and step_forward() would make it at every step.
"""
import argparse
import sys
import time

import numpy as np


def weight_roles(kernel, D, H):
    """(input weights, recurrent weights): names and row counts of the 2-D parameters."""
    inputs, recurrent = [], []
    for name, shape in kernel.param_shapes(D, H).items():
        if len(shape) != 2:
            continue
        (inputs if name.endswith("_x") else recurrent).append((name, shape[0]))
    return inputs, recurrent


def replay(kernel, T, B, D, H, dtype, seed=0):
    """A callable running the kernel's GEMMs once, and their floating-point operation count."""
    rng = np.random.default_rng(seed)
    inputs, recurrent = weight_roles(kernel, D, H)

    def rand(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x = rand(T * B, D)
    h = rand(T, B, H)
    work = []   # (a, b, out) triples
    flops = 0
    for _, rows in inputs:
        W, dA = rand(rows, D), rand(T * B, rows)
        work.append((x, W.T, np.empty((T * B, rows), dtype)))          # input part
        work.append((dA.T, x, np.empty((rows, D), dtype)))              # dW
        work.append((dA, W, np.empty((T * B, D), dtype)))               # dx
        flops += 3 * 2 * T * B * D * rows
    steps = []
    for _, rows in recurrent:
        W, dA = rand(rows, H), rand(T, B, rows)
        pre, dh = np.empty((B, rows), dtype), np.empty((B, H), dtype)
        steps.append((h, W, dA, pre, dh))
        work.append((dA.reshape(T * B, rows).T, h.reshape(T * B, H), np.empty((rows, H), dtype)))
        flops += 3 * 2 * T * B * H * rows

    def run():
        for a, b, out in work:
            np.matmul(a, b, out=out)
        for h_, W, dA, pre, dh in steps:  # np.dot per step, as the kernels call it (less dispatch than matmul)
            WT = W.T
            for t in range(T):
                np.dot(h_[t], WT, out=pre)
            for t in reversed(range(T)):
                np.dot(dA[t], W, out=dh)

    return run, flops


def throughput(dtype, n=1024, repeat=5):
    """GFLOP/s of an n x n by n x n matrix product: (best, median) over `repeat` runs."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    times.sort()
    flops = 2.0 * n ** 3
    return {"n": n, "best_gflops": flops / times[0] / 1e9,
            "median_gflops": flops / times[len(times) // 2] / 1e9}


def layouts(B, H, rows, dtype, rounds=200, seed=0):
    """The forward step's GEMM (B, H) @ W^T for W (rows, H): (median us with the transposed view,
    median us with a contiguous copy of W^T, median of the paired ratios contiguous / view, median
    us of making that copy)."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((B, H)).astype(dtype)
    W = rng.standard_normal((rows, H)).astype(dtype)
    WT, out = np.ascontiguousarray(W.T), np.empty((B, rows), dtype)
    calls = {"view": lambda: np.dot(h, W.T, out=out), "contiguous": lambda: np.dot(h, WT, out=out),
             "copy": lambda: np.ascontiguousarray(W.T)}
    times = {name: [] for name in calls}
    for _ in range(rounds):  # interleaved, in an order drawn afresh each round: none always follows another
        for name in rng.permutation(list(calls)):
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t0)
    view, contiguous, copy = (np.array(times[name]) for name in calls)
    return (1e6 * np.median(view), 1e6 * np.median(contiguous), float(np.median(contiguous / view)),
            1e6 * np.median(copy))


def main(argv=None):
    ap = argparse.ArgumentParser(description="The forward step's GEMM with W^T's view and with a contiguous copy, and the copy's cost.")
    ap.add_argument("--rounds", type=int, default=200, help="timed calls of each GEMM (default: 200)")
    args = ap.parse_args(argv)
    if args.rounds < 1:  # bench, which has the argparse types, imports this module
        ap.error(f"--rounds: expected a number of at least 1, got {args.rounds}")
    sizes = {"S1": (1, 32), "seed": (1, 100), "S2": (32, 128), "S3": (64, 256), "S4": (64, 512)}
    print(f"{'size':<6}{'dtype':<9}{'W rows':>8}{'view us':>10}{'contig us':>11}{'contig/view':>13}{'copy us':>10}")
    for dtype in (np.float32, np.float64):
        for name, (B, H) in sizes.items():
            for k in (3, 4):  # gru's and lstm's gate counts
                view, contiguous, ratio, copy = layouts(B, H, k * H, dtype, args.rounds)
                print(f"{name:<6}{np.dtype(dtype).name:<9}{k:>6}*H{view:>10.1f}{contiguous:>11.1f}{ratio:>13.3f}{copy:>10.1f}")


if __name__ == "__main__":
    sys.exit(main())
