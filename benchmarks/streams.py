"""What a stream and the dtypes off BLAS cost, as README's "Use a kernel" states them.

    python benchmarks/streams.py [--cells lstm gru] [--hidden 128 512] [--steps 100] [--rounds 9]
    OPENBLAS_NUM_THREADS=1 python benchmarks/streams.py      # the same on one BLAS thread

Two tables, each from calls run interleaved in one process, in an order drawn afresh each round:
- step_forward: T calls of step_forward (float32, B = 1, D = H), the state carried, against one
  forward() over the same T steps; printed, the median of the paired ratios.
- dtypes: forward() + backward() of lstm at T = 20, B = 8, D = H = 64 in float16 and longdouble,
  against float64; printed, the median of the paired ratios.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def stream_impls(kernel, H, T):
    """One forward() over T steps, and T calls of step_forward(), float32, B = 1."""
    params = kernel.init_params(H, H, seed=0, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((T, 1, H)).astype(np.float32)

    def whole():
        kernel.forward(params, x)

    def steps():
        state = None
        for x_t in x:
            _, state, _ = kernel.step_forward(params, x_t, state)

    return {"forward": bench.Impl("forward", "", "numpy", whole), "steps": bench.Impl("steps", "", "numpy", steps)}


def dtype_impls(kernel, T, B, D, H):
    """forward() + backward() in float64, float16 and longdouble, on one problem rounded to each."""
    impls = {}
    for dtype in (np.float64, np.float16, np.longdouble):
        params, x, state, dys, dstate = bench.make_problem(kernel, T, B, D, H, dtype)

        def call(params=params, x=x, state=state, dys=dys, dstate=dstate):
            _, _, cache = kernel.forward(params, x, state)
            kernel.backward(params, cache, dys, dstate)
        impls[np.dtype(dtype).name] = bench.Impl(np.dtype(dtype).name, "", "numpy", call)
    return impls


def ratios(impls, rounds, base):
    """{name: median of the paired ratios name / base} over interleaved rounds, after a warm-up."""
    bench.interleave(impls, 1, 0)
    times = bench.interleave(impls, rounds, 0, seed=1)
    return {name: bench.paired(times[name], times[base]) for name in impls if name != base}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", choices=["lstm", "gru"], default=["lstm", "gru"])
    ap.add_argument("--hidden", nargs="+", type=bench.at_least(1), default=[128, 512])
    ap.add_argument("--steps", type=bench.at_least(1), default=100)
    ap.add_argument("--rounds", type=bench.at_least(1), default=9)
    ap.add_argument("--dtype-size", type=bench.parse_size, default=bench.parse_size("20,8,64,64"),
                    metavar="T,B,D,H", help="the dtypes' problem (default 20,8,64,64)")
    args = ap.parse_args(argv)
    print(f"step_forward x {args.steps} / forward of {args.steps} steps (float32, B = 1)")
    for cell in args.cells:
        for H in args.hidden:
            r = ratios(stream_impls(bench.load_generated(cell), H, args.steps), args.rounds, "forward")
            print(f"  {cell:<5} H = {H:<5} {r['steps']:6.1f}", flush=True)
    size, shape = args.dtype_size
    print(f"dtype / float64, lstm forward + backward ({size})")
    for name, r in ratios(dtype_impls(bench.load_generated("lstm"), *shape), args.rounds, "float64").items():
        print(f"  {name:<11} {r:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
