"""Core speed benchmark: one forward + backward, generated kernels vs references.

    python benchmarks/bench_core.py [--repeat N] [--json out.json]

(a) T=100, B=1, D=50, H=100, float64: generated lstm_seed vs the seed's per-step
    algorithm (benchmarks/seed_lstm.py, the way nicodjimenez/lstm computes it).
(b) T=50, B=32, D=H=128, float64 and float32: generated lstm vs the hand-written
    batched LSTM (benchmarks/handwritten_lstm.py).

The contenders run interleaved in one process, so drifts in machine load hit
both alike. Before timing, each pair must agree on every gradient: a faster
kernel that computes something else would be no result.
"""
import argparse
import functools
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))   # the project root, unless lstm_derive is installed

import handwritten_lstm  # noqa: E402
import seed_lstm  # noqa: E402

# agreement demanded before timing, relative to each array's largest entry
AGREE = {np.float64: 1e-9, np.float32: 1e-3}


@functools.lru_cache(maxsize=None)
def load_generated(cell):
    name = "lstm_derive.kernels." + cell
    try:
        return importlib.import_module(name)
    except ImportError as err:
        print(f"SKIP: cannot import {name} ({err}); generate the kernel first.")
        return None


def make_inputs(T, B, D, H, dtype, states=2, seed=0):
    rng = np.random.default_rng(seed)
    params = handwritten_lstm.init_params(D, H, seed=seed, dtype=dtype)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(states))
    dys = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(states))
    return params, x, state, dys, dstate


def kernel_step(kernel, params, x, state, dys, dstate):
    """One forward + backward through the kernel interface."""
    def run():
        _, _, cache = kernel.forward(params, x, state)
        return kernel.backward(params, cache, dys, dstate)
    return run


def seed_step(params, x, state, dys, dstate):
    """One forward + backward of the seed's own algorithm, in its own layout.

    The layout conversion happens here, once, so only the algorithm is timed.
    """
    D = x.shape[2]
    p = seed_lstm.to_seed_params(params, D)
    xs, diff_hs = list(x[:, 0]), list(dys[:, 0])
    h0, s0 = state[0][0], state[1][0]
    dh_T, ds_T = dstate[0][0], dstate[1][0]
    lstm = seed_lstm.SeedLstm()

    def run():
        states = lstm.forward(p, xs, s0=s0, h0=h0)
        return lstm.backward(p, states, diff_hs, dh_T, ds_T)
    return run


def assert_same_gradients(kernel, reference, problem, tol):
    """Every output of backward agrees, each array relative to its largest entry."""
    got_grads, got_dx, got_d0 = kernel_step(kernel, *problem)()
    ref_grads, ref_dx, ref_d0 = kernel_step(reference, *problem)()
    pairs = [(k, got_grads[k], ref_grads[k]) for k in ref_grads]
    pairs += [("dx", got_dx, ref_dx)]
    pairs += [("d" + s + "0", a, b) for s, a, b in zip(reference.STATES, got_d0, ref_d0)]
    for name, got, ref in pairs:
        err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
        assert err < tol, f"{kernel.CELL}: {name} differs from the reference (rel {err:.2e})"


def time_interleaved(runs, repeat, warmup=3):
    """Milliseconds per call for each named callable, alternating their order."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeat):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(1e3 * (time.perf_counter() - t0))
    return {name: {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts)}
            for name, ts in times.items()}


def case_seed(repeat):
    """(a) generated lstm_seed vs the seed's per-step algorithm."""
    kernel = load_generated("lstm_seed")
    if kernel is None:
        return None
    T, B, D, H = 100, 1, 50, 100
    problem = make_inputs(T, B, D, H, np.float64)
    assert_same_gradients(kernel, seed_lstm, problem, AGREE[np.float64])
    runs = {"generated lstm_seed": kernel_step(kernel, *problem),
            "seed per-step": seed_step(*problem)}
    return summarize("a", (T, B, D, H), np.float64, time_interleaved(runs, repeat))


def case_batched(dtype, repeat):
    """(b) generated lstm vs the hand-written batched LSTM."""
    kernel = load_generated("lstm")
    if kernel is None:
        return None
    T, B, D, H = 50, 32, 128, 128
    problem = make_inputs(T, B, D, H, dtype)
    assert_same_gradients(kernel, handwritten_lstm, problem, AGREE[dtype])
    runs = {"generated lstm": kernel_step(kernel, *problem),
            "handwritten": kernel_step(handwritten_lstm, *problem)}
    return summarize("b", (T, B, D, H), dtype, time_interleaved(runs, repeat))


def summarize(label, shape, dtype, results):
    generated, reference = list(results)
    ratio = results[generated]["median_ms"] / results[reference]["median_ms"]
    return {"case": label, "T_B_D_H": list(shape), "dtype": np.dtype(dtype).name,
            "results": results, "generated_over_reference": ratio}


def print_table(cases):
    if not cases:
        print("Nothing to time.")
        return
    print(f"{'case':<34} {'implementation':<20} {'median ms':>10} {'min-max ms':>14}")
    for c in cases:
        title = "({}) T,B,D,H={} {}".format(
            c["case"], ",".join(map(str, c["T_B_D_H"])), c["dtype"])
        for name, r in c["results"].items():
            spread = f"{r['min_ms']:.2f}-{r['max_ms']:.2f}"
            print(f"{title:<34} {name:<20} {r['median_ms']:>10.2f} {spread:>14}")
            title = ""
        ratio = c["generated_over_reference"]
        verdict = f"{1 / ratio:.2f}x faster" if ratio < 1 else f"{ratio:.2f}x slower"
        print(f"{'':<34} time generated/reference = {ratio:.3f} (generated {verdict})")


def machine():
    return {"python": platform.python_version(), "numpy": np.__version__,
            "cpus": os.cpu_count(), "platform": platform.platform()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="timed runs per implementation")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    cases = [case_seed(args.repeat),
             case_batched(np.float64, args.repeat),
             case_batched(np.float32, args.repeat)]
    cases = [c for c in cases if c is not None]
    print_table(cases)
    if args.json:
        report = {"machine": machine(), "repeat": args.repeat, "cases": cases}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
