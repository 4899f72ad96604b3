"""Two versions of a kernel, timed against each other in one process: is a change faster?

    python benchmarks/ab.py OLD.py NEW.py [--sizes S1 S3 ...] [--dtypes float32 float64] [--rounds N]

    git show HEAD~1:lstm_derive/kernels/lstm.py > /tmp/lstm_old.py
    python benchmarks/ab.py /tmp/lstm_old.py lstm_derive/kernels/lstm.py --sizes S1 S3

Each file is any module with the kernel interface (a generated kernel, an older one, a
hand-written one). Their gradients must agree before timing; then they run once a round each,
in an order drawn afresh each round, and the ratio NEW / OLD is the median of the paired ratios
of each round: on a shared, noisy machine only such ratios mean anything. Each ratio comes with
the middle half of the rounds' ratios (25th to 75th percentile), for wall time and for the CPU
time of the process. Where other processes load the machine, a call that waits for a core takes
longer without more CPU time, so the CPU ratio holds steadier (at B = 1, wall ratios of 0.4 to
2.8 in one run where the CPU ratios of the same rounds lay within 0.90 to 1.05); with
OPENBLAS_NUM_THREADS=1 it is the time of the one thread that does all the work (BLAS threads
that spin while they wait count as CPU time).
"""
import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


KERNEL = ("PARAMS", "STATES", "init_params", "forward", "backward")  # what a comparison calls
OLDER = "git show HEAD:lstm_derive/kernels/lstm.py > old_lstm.py"  # a kernel as it was, to compare with


def load_module(path):
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path}: no such kernel file (a committed version is written by `{OLDER}`)")
    spec = importlib.util.spec_from_file_location(f"ab_{path.stem}_{abs(hash(str(path)))}", path)
    if spec is None:
        raise SystemExit(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [name for name in KERNEL if not hasattr(module, name)]
    if missing:
        raise SystemExit(f"{path}: not a kernel module (no {', '.join(missing)}; a file of lstm_derive/kernels/ has them)")
    return module


def check_same_cell(old, new):
    """Two kernels are compared on one problem: they must take the same parameters and states."""
    for what in ("PARAMS", "STATES"):
        a, b = getattr(old, what), getattr(new, what)
        if tuple(a) != tuple(b):
            raise SystemExit(f"the two kernels are of different cells: {what} {tuple(a)} in "
                             f"{Path(old.__file__).name}, {tuple(b)} in {Path(new.__file__).name}")


def compare(old, new, shape, dtype, rounds):
    """{"old": ms, "new": ms, "ratio": median paired new/old, "spread": its middle half (25th, 75th
    percentile), "cpu_ratio", "cpu_spread": the same of CPU times, "disagreement": rel} for one case."""
    problem = bench.make_problem(new, *shape, dtype)
    impls = {name: bench.kernel_impl(name, name, kernel, *problem) for name, kernel in (("old", old), ("new", new))}
    err, where = bench.disagreement(impls["new"].gradients(), impls["old"].gradients())
    if not err <= bench.AGREE[dtype]:
        raise SystemExit(f"the two kernels disagree: {where} differs by {err:.2e} (relative)")
    bench.interleave(impls, 1, 0)  # warm-up
    cpu = {}
    times = bench.interleave(impls, rounds, 0, seed=1, cpu=cpu)  # not the warm-up's order again
    return {"old": 1e3 * np.median(times["old"]), "new": 1e3 * np.median(times["new"]),
            "ratio": bench.paired(times["new"], times["old"]), "spread": _middle_half(times),
            "cpu_ratio": bench.paired(cpu["new"], cpu["old"]), "cpu_spread": _middle_half(cpu),
            "disagreement": err}


def _middle_half(times):
    """The 25th and 75th percentiles of the paired ratios new / old."""
    ratios = np.array(times["new"]) / np.array(times["old"])
    return tuple(np.percentile(ratios, [25, 75]))


EPILOG = f"""\
Columns: old ms and new ms, the median time of one forward + backward call; new/old, the
median over rounds of the ratio of the two calls of a round (below 1: new is faster), and the
middle half of those ratios (their 25th-75th percentiles); cpu new/old and its middle half, the
same of this process's CPU time, steadier where other processes load the machine.

For instance: {OLDER}, then
python benchmarks/ab.py old_lstm.py lstm_derive/kernels/lstm.py --sizes S1 S3"""


def row(*fields):
    """A line of the table: a space between columns however wide a size or a ratio is."""
    widths = (7, 7, 9, 9, 8, 12, 12, 12)
    return " ".join(f"{f:<{w}}" if n < 2 else f"{f:>{w}}" for n, (f, w) in enumerate(zip(fields, widths)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="the kernel file timed against: an earlier version, or another implementation")
    ap.add_argument("new", help="the kernel file whose time is divided by old's")
    ap.add_argument("--sizes", nargs="+", type=bench.parse_size, default=[bench.parse_size("S1")], metavar="SIZE",
                    help=f"{', '.join(bench.SIZES)} (as bench.py's), or T,B,D,H (default: S1)")
    ap.add_argument("--dtypes", nargs="+", choices=list(bench.DTYPES), default=["float64"],
                    help="(default: float64)")
    ap.add_argument("--rounds", type=bench.at_least(1), default=15,
                    help="timed calls of each kernel, after one untimed (default: 15)")
    args = ap.parse_args(argv)
    old, new = load_module(args.old), load_module(args.new)
    check_same_cell(old, new)
    print(row("size", "dtype", "old ms", "new ms", "new/old", "middle half", "cpu new/old", "middle half"))
    for size, shape in args.sizes:
        for dtype_name in args.dtypes:
            r = compare(old, new, shape, bench.DTYPES[dtype_name], args.rounds)
            spread, cpu_spread = ("{:.3f}-{:.3f}".format(*r[key]) for key in ("spread", "cpu_spread"))
            numbers = (f"{r[key]:.3f}" for key in ("old", "new", "ratio"))
            print(row(size, dtype_name, *numbers, spread, f"{r['cpu_ratio']:.3f}", cpu_spread), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
