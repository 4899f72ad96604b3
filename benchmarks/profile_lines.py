"""Where a kernel's time goes: a per-line timing of forward() and backward().

    python benchmarks/profile_lines.py [CELL] [--size S3] [--dtype float32] [--calls 5]
                                       [--module path/to/kernel.py]

Every statement of forward() and backward() (also inside their loops) is timed on its
own; the kernel's source is instrumented in memory (its file is only read). Each line
is shown twice: at the size asked for and at the same T with B = D = H = 1, where
nearly all of it is the fixed cost of a Python statement and a NumPy call
(interpretation, dispatch, allocation of a result). Lines are classed as GEMM (a
matmul) or elementwise/other; what the timed statements do not account for is the
loop's own Python cost and the timers'.

It is a profile, not a benchmark: timers cost ~0.1 us a statement, so compare lines
with each other, and whole calls with benchmarks/bench.py.
"""
import argparse
import ast
import importlib
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))

from bench import DTYPES, at_least, make_problem, parse_size  # noqa: E402
from lstm_derive.kernels import CELLS  # noqa: E402

FUNCTIONS = ("forward", "backward")
_COMPOUND = (ast.For, ast.While, ast.If, ast.With)


class _Instrument(ast.NodeTransformer):
    """Wraps every simple statement of the chosen functions: t = pc(); stmt; acc[i] += pc() - t."""

    def __init__(self):
        self.lines = []      # (function, lineno, end_lineno, in_loop)

    def visit_FunctionDef(self, node):
        if node.name in FUNCTIONS:
            node.body = self._block(node.body, node.name, 0)
        return node

    def _block(self, body, func, depth):
        out = []
        for stmt in body:
            if isinstance(stmt, _COMPOUND):
                for field in ("body", "orelse"):
                    inner = getattr(stmt, field, None)
                    if inner:
                        loop = isinstance(stmt, (ast.For, ast.While))
                        setattr(stmt, field, self._block(inner, func, depth + loop))
                out.append(stmt)
                continue
            if isinstance(stmt, ast.Return) or isinstance(stmt, ast.Expr) and isinstance(
                    getattr(stmt, "value", None), ast.Constant):
                out.append(stmt)           # docstrings and returns stay as they are
                continue
            k = len(self.lines)
            self.lines.append((func, stmt.lineno, stmt.end_lineno, depth > 0))
            start = ast.parse("_lp_t = _lp_pc()").body[0]
            stop = ast.parse(f"_lp_acc[{k}] += _lp_pc() - _lp_t").body[0]
            out += [start, stmt, stop]
        return out


class Profiled:
    """A kernel module's forward() and backward() with every statement timed."""

    def __init__(self, path):
        self.path = Path(path)
        self.source = self.path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(self.source), filename=str(self.path))
        inst = _Instrument()
        tree = ast.fix_missing_locations(inst.visit(tree))
        self.lines = inst.lines
        self.acc = [0.0] * len(self.lines)
        self.ns = {"_lp_pc": time.perf_counter, "_lp_acc": self.acc, "__name__": "profiled_kernel"}
        exec(compile(tree, str(self.path), "exec"), self.ns)

    def __getattr__(self, name):
        return self.ns[name]

    def reset(self):
        self.acc[:] = [0.0] * len(self.acc)

    def text(self, k):
        _, a, b, _ = self.lines[k]
        return " ".join(s.strip() for s in self.source[a - 1:b])


def is_gemm(text):
    code = text.split("#")[0]
    return "@" in code or "matmul" in code or ".dot(" in code


def profile(mod, problem, calls):
    """Per-line seconds per call (median over calls) and whole-call seconds per function."""
    params, x, state, dys, dstate = problem
    per_line = [[] for _ in mod.lines]
    whole = {f: [] for f in FUNCTIONS}
    for n in range(calls + 1):        # the first call warms up
        mod.reset()
        t0 = time.perf_counter()
        _, _, cache = mod.forward(params, x, state)
        t1 = time.perf_counter()
        mod.backward(params, cache, dys, dstate)
        t2 = time.perf_counter()
        if n:
            whole["forward"].append(t1 - t0)
            whole["backward"].append(t2 - t1)
            for k, v in enumerate(mod.acc):
                per_line[k].append(v)
    return ([statistics.median(v) for v in per_line],
            {f: statistics.median(v) for f, v in whole.items()})


def timer_cost():
    """Seconds that one instrumented empty statement adds."""
    acc = [0.0]
    pc = time.perf_counter
    n = 20000
    t0 = pc()
    for _ in range(n):
        t = pc()
        acc[0] += pc() - t
    t1 = pc()
    for _ in range(n):
        pass
    return (t1 - t0 - (pc() - t1)) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cell", nargs="?", default="lstm", choices=CELLS)
    ap.add_argument("--size", type=parse_size, default=parse_size("S3"))
    ap.add_argument("--dtype", choices=list(DTYPES), default="float32")
    ap.add_argument("--calls", type=at_least(1), default=5)
    ap.add_argument("--module", help="profile this kernel file instead of lstm_derive.kernels.CELL")
    ap.add_argument("--top", type=int, default=0, help="show only the N costliest lines")
    args = ap.parse_args(argv)

    if args.module:
        path = Path(args.module)
        if not path.is_file():
            ap.error(f"--module {path}: no such kernel file")
    else:
        path = Path(importlib.import_module("lstm_derive.kernels." + args.cell).__file__)
    mod = Profiled(path)
    size_name, (T, B, D, H) = args.size
    dtype = DTYPES[args.dtype]
    big, whole = profile(mod, make_problem(mod, T, B, D, H, dtype), args.calls)
    tiny, tiny_whole = profile(mod, make_problem(mod, T, 1, 1, 1, dtype), args.calls)
    bias = timer_cost()

    print(f"{path.name}: {size_name} (T={T}, B={B}, D={D}, H={H}) {args.dtype}, median of "
          f"{args.calls} calls; 'tiny' is T={T}, B=D=H=1. Timer cost {1e6 * bias:.2f} us a line, "
          f"not subtracted below.")
    total = sum(whole.values())
    order = range(len(mod.lines))
    if args.top:
        order = sorted(order, key=lambda k: -big[k])[:args.top]
    print(f"{'ms/call':>9} {'%':>5} {'tiny ms':>8} {'kind':>5}  line")
    for k in order:
        func, line, _, in_loop = mod.lines[k]
        text = mod.text(k)
        kind = "GEMM" if is_gemm(text) else "elem"
        loop = "loop " if in_loop else ""
        print(f"{1e3 * big[k]:>9.3f} {100 * big[k] / total:>5.1f} {1e3 * tiny[k]:>8.3f} {kind:>5}  "
              f"{func}:{line} {loop}{text[:90]}")

    def sums(values, pred):
        return sum(v for k, v in enumerate(values) if pred(k))

    gemm = lambda k: is_gemm(mod.text(k))  # noqa: E731
    print("")
    print(f"{'':<34} {'at size':>10} {'tiny':>10}")
    rows = [
        ("whole forward + backward", total, sum(tiny_whole.values())),
        ("  GEMM lines", sums(big, gemm), sums(tiny, gemm)),
        ("  elementwise/other lines", sums(big, lambda k: not gemm(k)), sums(tiny, lambda k: not gemm(k))),
        ("  loop lines (both kinds)", sums(big, lambda k: mod.lines[k][3]),
         sums(tiny, lambda k: mod.lines[k][3])),
        ("  not in any line (loops, timers)", total - sum(big), sum(tiny_whole.values()) - sum(tiny)),
    ]
    for name, a, b in rows:
        print(f"{name:<34} {1e3 * a:>8.3f}ms {1e3 * b:>8.3f}ms")
    loop_lines = sum(1 for line in mod.lines if line[3])
    print(f"per step: {1e6 * total / T:.1f} us at size, {1e6 * sum(tiny_whole.values()) / T:.1f} us tiny; "
          f"{loop_lines} statements in the loops (forward + backward; a span's run once a span, and those "
          "for ended sequences only where one has ended)")


if __name__ == "__main__":
    main()
