"""The GEMMs of a recurrent kernel, alone: the machine's GEMM throughput and a replay.

A kernel of this project does, per weight matrix W (k*H rows):

  input weight W (k*H, D), named *_x:
      forward   one GEMM   (T*B, D) @ W^T            -> (T*B, k*H)
      backward  one GEMM   dA^T (k*H, T*B) @ x       -> dW
                one GEMM   dA (T*B, k*H) @ W         -> dx
  recurrent weight W (k*H, H), every other matrix:
      forward   T GEMMs    (B, H) @ W^T              -> (B, k*H)
      backward  T GEMMs    (B, k*H) @ W              -> dh_prev
                one GEMM   dA^T (k*H, T*B) @ h_prev  -> dW

`replay` runs exactly these on buffers of the right shapes, nothing else; its time
over the kernel's time is the share of the kernel's time that its GEMMs need.
"""
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
