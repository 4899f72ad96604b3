"""What lengths cost: one forward + backward with a sequence that ends after its first step, so
that every step masks the rows that have ended, against the same call without lengths.

    python benchmarks/lengths.py [--cells lstm gru] [--sizes 100,2,32,32 S2 S3] [--dtypes float32]
                                 [--rounds 60]

The two calls run interleaved in one process, in an order drawn afresh each round. Printed per
case: the median of the paired ratios (with lengths / without) and the ratio of the fastest calls,
the steadier of the two on a busy machine.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

SIZES = ["100,2,32,32", "S2", "S3"]


def impls(kernel, params, x, state, dys, dstate):
    """The call without lengths, and with row 0 ending after one step (every other row running T)."""
    lengths = np.full(x.shape[1], len(x))
    lengths[0] = 1

    def run(given):
        def call():
            _, _, cache = kernel.forward(params, x, state, lengths=given)
            return kernel.backward(params, cache, dys, dstate)
        return bench.Impl("lengths" if given is not None else "none", "", "numpy", call)

    return {"none": run(None), "lengths": run(lengths)}


def measure(cell, shape, dtype, rounds):
    kernel = bench.load_generated(cell)
    contenders = impls(kernel, *bench.make_problem(kernel, *shape, dtype))
    bench.interleave(contenders, 1, 0)  # warm-up
    times = bench.interleave(contenders, rounds, 0, seed=1)  # not the warm-up's order again
    return bench.paired(times["lengths"], times["none"]), min(times["lengths"]) / min(times["none"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", choices=["lstm", "gru"], default=["lstm", "gru"])
    ap.add_argument("--sizes", nargs="+", type=bench.parse_size, default=[bench.parse_size(s) for s in SIZES])
    ap.add_argument("--dtypes", nargs="+", choices=list(bench.DTYPES), default=["float32"])
    ap.add_argument("--rounds", type=bench.at_least(1), default=60)
    args = ap.parse_args(argv)
    single = [size for size, (_, B, _, _) in args.sizes if B < 2]
    if single:  # its one row would end after one step, and the call with lengths run one step alone
        ap.error(f"--sizes {single[0]}: B must be at least 2 (one row ends after one step, the others run T)")
    print("forward + backward with lengths / without: the median of the paired ratios, and that of the minima")
    print(f"{'cell':<6}{'size':<14}{'dtype':<9}{'median ratio':>13}{'of mins':>9}")
    for cell in args.cells:
        for size, shape in args.sizes:
            for dtype_name in args.dtypes:
                median, of_mins = measure(cell, shape, bench.DTYPES[dtype_name], args.rounds)
                print(f"{cell:<6}{size:<14}{dtype_name:<9}{median:>13.2f}{of_mins:>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
