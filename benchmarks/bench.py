"""Benchmark suite: the generated kernels against hand-written NumPy, PyTorch and the seed.

    python benchmarks/bench.py [--quick] [--json out.json] [--cells lstm gru lstm_seed]
                               [--sizes S1 S2 S3 S4 seed] [--dtypes float32 float64]
                               [--repeat N] [--pause S] [--torch-threads N] [--no-torch]
    python benchmarks/bench.py --show out.json      # the tables of a saved run

For every cell, size and dtype, one forward + full BPTT backward (gradients of every
weight, of x and of the initial state, from upstream gradients on every output and the
final state) of

  generated      lstm_derive.kernels.<cell>
  handwritten    benchmarks/handwritten_lstm.py, benchmarks/handwritten_gru.py
  torch          PyTorch CPU nn.LSTM / nn.GRU, the same weights (skipped without torch)
  seed           the seed's per-step unbatched algorithm (benchmarks/seed_lstm.py), only
                 for lstm_seed, only at the seed's size
  gemms          the GEMMs the generated kernel does, alone (benchmarks/gemms.py)

Sizes (T, B, D, H): S1 (100, 1, 32, 32), S2 (50, 32, 128, 128), S3 (50, 64, 256, 256),
S4 (20, 64, 512, 512), seed (100, 1, 50, 100); or any "T,B,D,H". lstm and gru run at
every size given, lstm_seed at the seed's size (and at a T,B,D,H given with B = 1: the
seed's algorithm is unbatched).

How it measures. Before timing, every implementation's gradients must agree with the
generated kernel's; one that does not is reported and left out (and the exit status is
1). The implementations then run interleaved in one process, each once a round, in an
order drawn afresh each round (so none always follows the same one). Whenever the next one
runs in the other library (NumPy <-> PyTorch) there is a pause of 0.2 s (BLAS and OpenMP
worker threads keep spinning for a while after a call) and one untimed call: a library's
first call after the other's runs cold, PyTorch's float32 LSTM at 3-10x its time. Times are per call;
ratios are paired (generated / other within each round, so a load change hits both)
and reported as the median over rounds; "of mins" is the ratio of the fastest calls,
a steadier estimate when the machine is busy. The GEMM share is the paired median of
(time of the kernel's GEMMs alone) / (kernel time). Peak memory growth of a call is
measured once with tracemalloc (benchmarks/memory.py). GEMM throughput of the machine
is measured at the start and the end of the run. Last, the time to derive and emit
every cell in derivations/ (lstm_derive.generate.targets_for on each script) in a fresh
interpreter.

The results are printed as tables, and with --json also written as JSON, ending with
the targets: per target, the cases that meet it, and each one missed with its bound,
the best value the generated kernel could reach if everything but its GEMMs were free
(for memory: if nothing but the minimum activations and the returned gradients were
held). A target missed with a bound beyond it cannot be met with these GEMMs.

On a busy machine, expect B = 1 timings to scatter by an order of magnitude: OpenBLAS
runs a matrix-vector product with m*n above ~9000 (the seed's size: 400 x 100) on all its
threads, and every such call then waits for a core. The environment (OPENBLAS_*,
OMP_*) is reported, never changed.

Where the time goes inside a kernel, line by line: benchmarks/profile_lines.py.
"""
import argparse
import gc
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.append(str(ROOT))   # the project root, unless lstm_derive is installed

import gemms  # noqa: E402
import handwritten_gru  # noqa: E402
import handwritten_lstm  # noqa: E402
import memory  # noqa: E402
import seed_lstm  # noqa: E402
import torch_reference  # noqa: E402

SIZES = {
    "S1": (100, 1, 32, 32),
    "S2": (50, 32, 128, 128),
    "S3": (50, 64, 256, 256),
    "S4": (20, 64, 512, 512),
    "seed": (100, 1, 50, 100),
}
CELLS = ("lstm", "gru", "lstm_seed")
HANDWRITTEN = {"lstm": handwritten_lstm, "gru": handwritten_gru}
DTYPES = {"float32": np.float32, "float64": np.float64}
LABELS = {
    "generated": "generated {cell}",
    "handwritten": "hand-written NumPy",
    "torch": "PyTorch nn.{torch_name}",
    "seed": "seed per-step",
    "gemms": "its GEMMs alone",
}
# agreement demanded before timing: the largest difference of an array, relative to its
# largest entry
AGREE = {np.float64: 1e-8, np.float32: 1e-4}
PAUSE = 0.2          # seconds, when switching between NumPy and PyTorch
REPORT_KEYS = ("machine", "settings", "gemm_throughput", "cases", "derive_emit", "targets")
SPREAD = 1.5         # third quartile / first of a contender's rounds above which the run was disturbed

# what the kernels should reach
TARGETS = {
    "seed_speedup": 10.0,                  # seed per-step / generated lstm_seed, at least
    "handwritten": 0.9,                    # generated / hand-written, at most
    "torch": {("S2", "float64"): 1.0, ("S3", "float64"): 1.0, ("S4", "float64"): 1.0,
              ("S3", "float32"): 1.0, ("S4", "float32"): 1.0, ("S2", "float32"): 1.5},
    "gemm_share": (("S3", "S4"), 0.8),     # at these sizes, at least
    "memory": 1.5,                         # peak growth / minimum activation storage, at most
    "derive_emit_s": 1.0,                  # every cell in derivations/, at most
}


# --- problems and the implementations that solve them ----------------------------------

def load_generated(cell):
    return importlib.import_module("lstm_derive.kernels." + cell)


def make_problem(kernel, T, B, D, H, dtype, seed=0):
    """Parameters, x, the initial state, and upstream gradients for ys and the final state."""
    rng = np.random.default_rng(seed)
    params = kernel.init_params(D, H, seed=seed, dtype=dtype)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state = tuple((0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in kernel.STATES)
    dys = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in kernel.STATES)
    return params, x, state, dys, dstate


class Impl:
    """One contender: run() is one forward + backward; gradients() what to check."""

    def __init__(self, name, label, family, run, gradients=None, memory=None):
        self.name, self.label, self.family = name, label, family
        self.run, self.gradients, self.memory = run, gradients, memory


def kernel_impl(name, label, kernel, params, x, state, dys, dstate):
    def forward_only():
        return kernel.forward(params, x, state)

    def run():
        _, _, cache = kernel.forward(params, x, state)
        return kernel.backward(params, cache, dys, dstate)

    return Impl(name, label, "numpy", run, gradients=run,
                memory=lambda: memory.measure(forward_only, run))


def seed_impl(params, x, state, dys, dstate):
    """The seed's algorithm in its own layout; the conversion happens once, here."""
    D = x.shape[2]
    p = seed_lstm.to_seed_params(params, D)
    xs, diff_hs = list(x[:, 0]), list(dys[:, 0])
    h0, s0 = state[0][0], state[1][0]
    dh_T, ds_T = dstate[0][0], dstate[1][0]
    algo = seed_lstm.SeedLstm()

    def forward_only():
        return algo.forward(p, xs, s0=s0, h0=h0)

    def run():
        states = algo.forward(p, xs, s0=s0, h0=h0)
        return algo.backward(p, states, diff_hs, dh_T, ds_T)

    def gradients():   # every gradient, in the kernel's layout, through the adapter
        _, _, cache = seed_lstm.forward(params, x, state)
        return seed_lstm.backward(params, cache, dys, dstate)

    return Impl("seed", LABELS["seed"], "numpy", run, gradients=gradients,
                memory=lambda: memory.measure(forward_only, run))


def numpy_impls(cell, kernel, problem):
    """The generated kernel and its NumPy reference: hand-written, or for lstm_seed the seed's."""
    impls = {"generated": kernel_impl("generated", LABELS["generated"].format(cell=cell), kernel, *problem)}
    if cell in HANDWRITTEN:
        impls["handwritten"] = kernel_impl("handwritten", LABELS["handwritten"], HANDWRITTEN[cell], *problem)
    if cell == "lstm_seed" and problem[1].shape[1] == 1:  # the seed's algorithm is unbatched
        impls["seed"] = seed_impl(*problem)
    return impls


def torch_impl(cell, params, x, state, dys, dstate):
    ref = torch_reference.Reference(cell, params, x, state, dys, dstate)
    label = LABELS["torch"].format(torch_name="LSTM" if cell == "lstm" else "GRU")
    return Impl("torch", label, "torch", ref.run, gradients=ref.gradients)


def disagreement(got, ref):
    """The largest relative difference over every array of two backward results, and where."""
    (g_grads, g_dx, g_d0), (r_grads, r_dx, r_d0) = got, ref
    pairs = [(k, g_grads[k], r_grads[k]) for k in r_grads]
    pairs += [("dx", g_dx, r_dx)] + [(f"dstate0[{n}]", a, b) for n, (a, b) in enumerate(zip(g_d0, r_d0))]
    worst, where = 0.0, None
    for name, a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return math.inf, f"{name}: shape {a.shape} vs {b.shape}"
        scale = np.max(np.abs(b)) if b.size else 0.0
        err = float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b), initial=0))
        if not err <= worst:       # also catches nan
            worst, where = err, name
    return worst, where


# --- timing ------------------------------------------------------------------------------

def interleave(impls, rounds, pause, seed=0, cpu=None):
    """Seconds per call, every implementation once a round, in an order drawn afresh each round
    (so none always follows the same one): {name: [s, ...]}. After a switch of library, a pause
    and one untimed call: a library's first call after the other's runs cold (PyTorch's float32
    LSTM 3-10x its time), and every contender is timed warm. The first call is taken as such a
    switch too: whatever ran before this call (another case, a warm-up) is not known here.
    cpu, a dict, also gets each call's CPU seconds of this process, by name: on a machine others
    load, a call that waits for a core takes longer, but not more CPU time."""
    names = list(impls)
    times = {n: [] for n in names}
    order = np.random.default_rng(seed)
    family = None
    for _ in range(rounds):
        for name in order.permutation(names):
            impl = impls[name]
            if impl.family != family:
                time.sleep(pause)
                impl.run()
            family = impl.family
            c0, t0 = time.process_time(), time.perf_counter()
            impl.run()
            times[name].append(time.perf_counter() - t0)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - c0)
    if family == "torch":        # leave the next case a quiet machine
        time.sleep(pause)
    return times


def choose_rounds(warm, settings):
    """Rounds for a case: enough to fill the time budget, within the configured bounds, and odd, so
    that the median of the paired ratios is one round's ratio, and 1 / median(gen/seed) the median of
    seed/gen."""
    if settings.repeat:
        rounds = settings.repeat
    else:
        round_s = sum(min(ts) for ts in warm.values())
        want = math.ceil(settings.budget / max(round_s, 1e-9))
        rounds = max(settings.min_rounds, min(settings.max_rounds, want))
    return rounds | 1


def summary(ts):
    ms = [1e3 * t for t in ts]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "n": len(ms),
            "times_ms": [round(t, 4) for t in ms]}


def paired(a, b):
    """Median over rounds of a[i] / b[i]."""
    return statistics.median(x / y for x, y in zip(a, b))


# --- one case ----------------------------------------------------------------------------

def run_case(cell, size, shape, dtype_name, settings):
    T, B, D, H = shape
    dtype = DTYPES[dtype_name]
    kernel = load_generated(cell)
    problem = make_problem(kernel, T, B, D, H, dtype)
    case = {"cell": cell, "size": size, "T": T, "B": B, "D": D, "H": H, "dtype": dtype_name,
            "results": {}, "ratios": {}, "min_ratios": {}, "checks": {}, "memory": {}, "bounds": {},
            "notes": []}

    impls = numpy_impls(cell, kernel, problem)
    if cell in HANDWRITTEN:
        if settings.torch:
            impls["torch"] = torch_impl(cell, *problem)
        else:
            case["notes"].append("PyTorch skipped: " + settings.torch_missing)
    replay, flops = gemms.replay(kernel, T, B, D, H, dtype)
    impls["gemms"] = Impl("gemms", LABELS["gemms"], "numpy", replay)

    # every contender must compute what the generated kernel computes
    expected = impls["generated"].run()
    for name, impl in list(impls.items()):
        if impl.gradients is None or name == "generated":
            continue
        err, where = disagreement(impl.gradients(), expected)
        ok = err <= AGREE[dtype]
        case["checks"][name] = {"max_rel_err": err, "worst": where, "ok": ok}
        if not ok:
            case["notes"].append(f"{impl.label}: gradients disagree with the generated kernel "
                                 f"({where}: rel {err:.2e}); not timed")
            del impls[name]
    del expected

    # peak memory, one call each, before timing
    k, why = memory.ACTIVATIONS[cell]
    floor = memory.min_activation_bytes(cell, T, B, H, dtype)
    case["min_activation"] = {"k": k, "counts": why, "bytes": floor}
    for name, impl in impls.items():
        if impl.memory is not None:
            case["memory"][name] = memory.against_floor(impl.memory(), floor)

    case["loadavg"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    warm = interleave(impls, settings.warmup, settings.pause, seed=0)
    rounds = choose_rounds(warm, settings)
    times = interleave(impls, rounds, settings.pause, seed=1)  # not the warm-up's order again
    case["rounds"] = rounds
    case["results"] = {name: dict(summary(ts), label=impls[name].label) for name, ts in times.items()}
    gen = times["generated"]
    for name in times:
        if name not in ("generated", "gemms"):
            case["ratios"][f"generated/{name}"] = paired(gen, times[name])
            case["min_ratios"][f"generated/{name}"] = min(gen) / min(times[name])
            # the ratio the kernel would reach if all but its GEMMs were free
            case["bounds"][f"generated/{name}"] = paired(times["gemms"], times[name])
    case["gemm_share"] = paired(times["gemms"], gen)
    case["gemm_share_of_mins"] = min(times["gemms"]) / min(gen)
    case["gemm_flops"] = flops
    case["gemm_gflops_alone"] = flops / statistics.median(times["gemms"]) / 1e9
    return case


# --- printing ----------------------------------------------------------------------------

def mib(n):
    return f"{n / 2**20:.2f} MiB"


def print_case(case, out=None):
    p = lambda *a: print(*a, file=out or sys.stdout)  # noqa: E731
    head = (f"{case['cell']} {case['size']} (T={case['T']}, B={case['B']}, D={case['D']}, "
            f"H={case['H']}) {case['dtype']}, {case.get('rounds', 0)} rounds")
    p(head)
    p("-" * len(head))
    p(f"  {'implementation':<22} {'median ms':>10} {'min-max ms':>17} {'generated/this':>15} "
      f"{'(of mins)':>9} {'peak mem':>11} {'peak/min':>8}")
    res = case["results"]
    for name, r in res.items():
        if name == "gemms":
            continue
        ratio = 1.0 if name == "generated" else case["ratios"].get(f"generated/{name}")
        mem = case["memory"].get(name)
        spread = f"{r['min_ms']:.3f}-{r['max_ms']:.3f}"
        ratio = "" if ratio is None else f"{ratio:.3f}"
        of_mins = case["min_ratios"].get(f"generated/{name}", 1.0 if name == "generated" else None)
        of_mins = "" if of_mins is None else f"{of_mins:.3f}"
        peak = mib(mem["peak_bytes"]) if mem else ""
        over = f"{mem['ratio']:.2f}x" if mem else ""
        p(f"  {r['label']:<22} {r['median_ms']:>10.3f} {spread:>17} {ratio:>15} {of_mins:>9} {peak:>11} {over:>8}")
    if "gemms" in res:
        r = res["gemms"]
        spread = f"{r['min_ms']:.3f}-{r['max_ms']:.3f}"
        p(f"  {r['label']:<22} {r['median_ms']:>10.3f} {spread:>17} "
          f"  GEMM share of the generated kernel's time: {case['gemm_share']:.2f} "
          f"(of mins {case['gemm_share_of_mins']:.2f}) "
          f"({case['gemm_flops'] / 1e9:.3f} GFLOP, {case['gemm_gflops_alone']:.1f} GFLOP/s alone)")
    m = case["min_activation"]
    p(f"  minimum activation storage: T*B*H*k numbers, k = {m['k']}: {mib(m['bytes'])}")
    if "seed" in res:
        p(f"  seed per-step / generated = {1 / case['ratios']['generated/seed']:.1f}x")
    for note in case["notes"]:
        p(f"  NOTE {note}")
    p("")


def print_summary(cases, out=None):
    """One line per case: the ratios, the GEMM share, the memory ratio; and what k counts."""
    p = lambda *a: print(*a, file=out or sys.stdout)  # noqa: E731
    if not cases:
        return
    p("Summary (paired medians; generated / this: below 1 is the generated kernel faster)")
    p(f"  {'cell':<10} {'size':<6} {'dtype':<8} {'generated ms':>12} {'/hand':>7} {'/torch':>7} "
      f"{'seed/gen':>8} {'GEMM share':>10} {'peak/min':>8}")
    fmt = lambda v, f="{:.2f}": "" if v is None else f.format(v)  # noqa: E731
    for c in cases:
        r = c["ratios"]
        seed = r.get("generated/seed")
        mem = c["memory"].get("generated", {}).get("ratio")
        p(f"  {c['cell']:<10} {c['size']:<6} {c['dtype']:<8} "
          f"{c['results']['generated']['median_ms']:>12.3f} {fmt(r.get('generated/handwritten')):>7} "
          f"{fmt(r.get('generated/torch')):>7} {fmt(seed and 1 / seed, '{:.1f}x'):>8} "
          f"{fmt(c.get('gemm_share')):>10} {fmt(mem, '{:.2f}x'):>8}")
    p("  k, the per-step (B, H) values a backward pass must read:")
    for cell in dict.fromkeys(c["cell"] for c in cases):
        m = next(c["min_activation"] for c in cases if c["cell"] == cell)
        p(f"    {cell}: k = {m['k']}: {m['counts']}")
    p("")


def print_throughput(label, tp, out=None):
    parts = [f"{dt} {v['best_gflops']:.1f} GFLOP/s best, {v['median_gflops']:.1f} median (n={v['n']})"
             for dt, v in tp.items()]
    print(f"GEMM throughput ({label}): " + "; ".join(parts), file=out)


# --- targets -----------------------------------------------------------------------------

def evaluate_targets(cases, derive_emit):
    rows = []

    def add(what, where, value, limit, at_most, bound=None):
        met = value <= limit if at_most else value >= limit
        rows.append({"target": what, "where": where, "value": value, "bound": bound,
                     "limit": ("<= " if at_most else ">= ") + f"{limit:g}", "met": bool(met)})

    for c in cases:
        where = f"{c['cell']} {c['size']} {c['dtype']}"
        r, bound = c["ratios"], c.get("bounds", {})
        if "generated/seed" in r and c["size"] == "seed":
            add("seed per-step / generated (speed-up)", where, 1 / r["generated/seed"],
                TARGETS["seed_speedup"], at_most=False, bound=1 / bound["generated/seed"])
        if "generated/handwritten" in r:
            add("generated / hand-written NumPy", where, r["generated/handwritten"],
                TARGETS["handwritten"], at_most=True, bound=bound.get("generated/handwritten"))
        limit = TARGETS["torch"].get((c["size"], c["dtype"]))
        if "generated/torch" in r and limit is not None:
            add("generated / PyTorch", where, r["generated/torch"], limit, at_most=True,
                bound=bound.get("generated/torch"))
        sizes, share = TARGETS["gemm_share"]
        if c["size"] in sizes and c["cell"] in HANDWRITTEN:
            add("GEMM share of kernel time", where, c["gemm_share"], share, at_most=False)
        if "generated" in c["memory"]:
            m = c["memory"]["generated"]
            add("peak memory growth / min activations", where, m["ratio"], TARGETS["memory"],
                at_most=True, bound=m.get("bound"))
    if derive_emit and "total_s" in derive_emit:
        add("derive + emit every cell (s)", "derivations/", derive_emit["total_s"],
            TARGETS["derive_emit_s"], at_most=True)
    return rows


def print_targets(rows, out=None):
    """Per target: how many cases meet it, and every case that misses it, with its value."""
    if not rows:
        return
    print("Targets", file=out)
    kinds = {}
    for r in rows:
        kinds.setdefault((r["target"], r["limit"]), []).append(r)
    width = max(len(f"{t} {lim}") for t, lim in kinds)
    for (target, limit), group in kinds.items():
        met = sum(r["met"] for r in group)
        missed = ", ".join(f"{r['where']} {r['value']:.3g}" + _bound_text(r) for r in group if not r["met"])
        print(f"  {target + ' ' + limit:<{width}}  met {met}/{len(group)}"
              + (f"; missed: {missed}" if missed else ""), file=out)
    missed = sum(not r["met"] for r in rows)
    print(f"  {len(rows) - missed} met, {missed} missed", file=out)
    if any(r.get("bound") is not None and not r["met"] for r in rows):
        print("  (bound: the best value possible with the generated kernel's GEMMs and nothing else, or for\n"
              "  memory with the minimum activations and the returned gradients and nothing else)", file=out)


def disturbances(throughput, cases):
    """Signs that the machine was busy during the run: the GEMM probes at its start and end
    disagree, or the middle half of any contender's rounds spread over more than SPREAD.

    Not the slowest round against the fastest: a millisecond call meets a preempted round or a
    BLAS thread's late wake-up in almost every run, on a quiet machine too (max/min above 2 in
    most B = 1 cases of every run measured), while load from elsewhere moves the quartiles."""
    found = []
    for dt in throughput.get("end", {}):
        start, end = throughput["start"][dt]["best_gflops"], throughput["end"][dt]["best_gflops"]
        if max(start, end) > 1.5 * min(start, end):
            found.append(f"{dt} GEMM throughput {start:.0f} GFLOP/s at the start, {end:.0f} at the end")
    for c in cases:
        for name, r in c["results"].items():
            q1, q3 = quartiles(r.get("times_ms", []))
            if q3 > SPREAD * q1:
                found.append(f"{c['cell']} {c['size']} {c['dtype']} {name}: the middle half of its rounds "
                             f"took {q1:.3g}-{q3:.3g} ms")
    return found


def quartiles(times):
    """The first and third quartiles of the times (0, 0 for fewer than four)."""
    if len(times) < 4:
        return 0, 0
    q1, _, q3 = statistics.quantiles(times, n=4)
    return q1, q3


def print_disturbances(found, out=None, cases=()):
    if found:
        print("NOTE the machine was busy during this run (" + "; ".join(found) + "): its times and ratios "
              "are not reliable; run it again when the machine is quiet", file=out)
    rounds = min((len(r.get("times_ms", [])) for c in cases for r in c["results"].values()), default=4)
    if rounds < 4:  # no quartiles: a busy machine cannot be told from a quiet one
        print(f"NOTE too few rounds a contender ({rounds}: --quick, or --repeat below 4) to tell "
              "whether the machine was quiet: "
              "its times and ratios are a smoke test, not a measurement", file=out)


def _bound_text(row):
    return "" if row.get("bound") is None else f" (bound {row['bound']:.3g})"


# --- deriving and emitting ---------------------------------------------------------------

_GENERATION = r"""
import json, sys, time
t0 = time.perf_counter()
from lstm_derive import generate as gen
import sympy.core.cache
t1 = time.perf_counter()
scripts = gen.find_scripts(sys.argv[1])
per = {}
for s in scripts:
    a = time.perf_counter()
    gen.targets_for(s)
    per[s.stem] = time.perf_counter() - a
t2 = time.perf_counter()
sympy.core.cache.clear_cache()
for s in scripts:
    gen.targets_for(s)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_s": t2 - t1, "again_s": t3 - t2,
                  "per_cell_s": per, "cells": len(scripts)}))
"""


def time_derive_emit(runs):
    """Derive and emit every cell in derivations/, each run in a fresh interpreter: the
    first pass (what `lstm-derive generate` pays after its imports) and a second one with
    SymPy's cache cleared. total_s is the median first pass over the runs."""
    results = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", _GENERATION, str(ROOT / "derivations")],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            return {"error": lines[-1] if lines else f"exit status {proc.returncode}"}
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = lambda key: statistics.median(r[key] for r in results)  # noqa: E731
    return {"cells": results[0]["cells"], "runs": len(results), "total_s": med("first_s"),
            "import_s": med("import_s"), "again_s": med("again_s"),
            "first_s_each": [r["first_s"] for r in results],
            "per_cell_s": {k: statistics.median(r["per_cell_s"][k] for r in results)
                           for k in results[0]["per_cell_s"]}}


def print_derive_emit(d, out=None):
    if "error" in d:
        print(f"Derive + emit every cell: FAILED ({d['error']})", file=out)
        return
    per = ", ".join(f"{k} {1e3 * v:.0f}" for k, v in d["per_cell_s"].items())
    print(f"Derive + emit every cell in derivations/ ({d['cells']} cells, median of {d['runs']} fresh "
          f"interpreters): {d['total_s']:.3f} s; imports before it {d['import_s']:.3f} s; a second "
          f"pass, SymPy cache cleared, {d['again_s']:.3f} s. Per cell ms: {per}", file=out)


# --- the command -------------------------------------------------------------------------

def machine(settings):
    blas = {}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:   # older NumPy: no dict mode
        pass
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                      "OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    return {"python": platform.python_version(), "numpy": np.__version__,
            "blas": blas.get("name"), "blas_version": blas.get("version"),
            "torch": torch_reference.version(), "torch_threads": settings.torch_threads,
            "cpus": os.cpu_count(), "platform": platform.platform(), "env": env,
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def parse_size(text):
    if text in SIZES:
        return text, SIZES[text]
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a size is one of {', '.join(SIZES)} or T,B,D,H")
    return text, shape


def at_least(low, kind=int):
    """An argparse type: a number of that kind, at least low, or a message that says so."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value >= low or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a{'' if kind is int else ' finite'} number of at least {low}, "
                                             f"got {text!r}")
        return value
    return parse


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--quick", action="store_true", help="few rounds, smaller GEMM probe")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in SIZES],
                    metavar="SIZE", help="S1 S2 S3 S4 seed, or T,B,D,H (default: all five)")
    ap.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    ap.add_argument("--repeat", type=at_least(1), help="rounds per case, made odd (default: fill a time budget)")
    ap.add_argument("--pause", type=at_least(0, float), default=PAUSE,
                    help=f"seconds between NumPy and PyTorch calls (default {PAUSE})")
    ap.add_argument("--torch-threads", type=at_least(1), help="PyTorch's intra-op threads (default: OPENBLAS_NUM_THREADS, "
                    "else OMP_NUM_THREADS, else the CPU count, as NumPy's OpenBLAS runs)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--show", metavar="PATH", help="print the tables of a saved JSON report and exit")
    args = ap.parse_args(argv)
    if args.quick:
        args.budget, args.min_rounds, args.max_rounds, args.warmup = 1.0, 3, 5, 1
        args.gemm_n, args.generation_runs = 512, 1
    else:
        args.budget, args.min_rounds, args.max_rounds, args.warmup = 10.0, 9, 41, 2
        args.gemm_n, args.generation_runs = 1024, 3
    if args.repeat is not None and args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


def plan(args):
    """(cell, size name, shape) in the order they run."""
    out = []
    for size, shape in args.sizes:
        for cell in args.cells:
            if cell == "lstm_seed" and not (size == "seed" or size not in SIZES and shape[1] == 1):
                continue
            out.append((cell, size, shape))
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.show and not Path(args.show).is_file():
        raise SystemExit(f"--show {args.show}: no such file (a report that --json wrote)")
    if args.json and not args.show:
        check_writable(args.json)
    if not args.show and not plan(args):
        raise SystemExit(f"nothing to run: lstm_seed runs at the seed's size alone (B = 1), and --sizes gives "
                         f"{', '.join(size for size, _ in args.sizes)}")
    # what is alive now lives to the end: keep the collector (memory.py runs it before
    # every measurement) from walking through PyTorch's and SymPy's objects each time
    gc.freeze()
    try:
        return _run(args)
    finally:
        gc.unfreeze()


def check_writable(path):
    """Refuses a --json path that cannot be written before the run, not after its minutes."""
    folder = Path(path).resolve().parent
    if Path(path).is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        why = "a directory" if Path(path).is_dir() else f"cannot write in {folder}"
        raise SystemExit(f"--json {path}: {why}; give a file in an existing, writable directory")


def load_report(path):
    """The report --json wrote at path, or a message that says what the file is not."""
    try:
        report = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, ValueError) as e:
        raise SystemExit(f"--show {path}: not a JSON report that --json wrote ({e})") from None
    missing = [k for k in REPORT_KEYS if not isinstance(report, dict) or k not in report]
    if missing:
        raise SystemExit(f"--show {path}: not a report that --json wrote (no {', '.join(missing)})")
    return report


def print_machine(info, out=None):
    torch = (f"PyTorch {info['torch']} ({info['torch_threads']} threads)" if info["torch"]
             else "PyTorch not installed")
    print(f"Python {info['python']}, NumPy {info['numpy']} ({info['blas']} {info['blas_version']}), "
          f"{torch}, {info['cpus']} CPUs, "
          f"load average {info['loadavg_start']}" + (f", env {info['env']}" if info["env"] else ""),
          file=out)


def show(report, out=None):
    """Prints a report as the run printed it (used by --show on a saved JSON file)."""
    print_machine(report["machine"], out)
    print_throughput("start", report["gemm_throughput"]["start"], out)
    print("", file=out)
    for case in report["cases"]:
        print_case(case, out)
    print_throughput("end", report["gemm_throughput"]["end"], out)
    print_derive_emit(report["derive_emit"], out)
    print("", file=out)
    print_summary(report["cases"], out)
    print_targets(report["targets"], out)
    print_disturbances(disturbances(report["gemm_throughput"], report["cases"]), out, report["cases"])


def _run(args):
    if args.show:
        show(load_report(args.show))
        return 0
    args.torch = torch_reference.available() and not args.no_torch
    args.torch_missing = ("--no-torch" if args.no_torch else
                          "torch is not installed (pip install torch==2.13.0)")
    args.torch_threads = torch_reference.set_threads(args.torch_threads) if args.torch else None
    if not args.torch:
        print(f"PyTorch skipped: {args.torch_missing}")
    info = machine(args)
    print_machine(info)
    throughput = {"start": {dt: gemms.throughput(DTYPES[dt], args.gemm_n) for dt in args.dtypes}}
    print_throughput("start", throughput["start"])
    print("")

    cases, failed = [], False
    for cell, size, shape in plan(args):
        for dtype_name in args.dtypes:
            case = run_case(cell, size, shape, dtype_name, args)
            failed |= not all(c["ok"] for c in case["checks"].values())
            cases.append(case)
            print_case(case)
            sys.stdout.flush()

    throughput["end"] = {dt: gemms.throughput(DTYPES[dt], args.gemm_n) for dt in args.dtypes}
    print_throughput("end", throughput["end"])
    derive_emit = time_derive_emit(args.generation_runs)
    print_derive_emit(derive_emit)
    print("")
    print_summary(cases)
    targets = evaluate_targets(cases, derive_emit)
    print_targets(targets)
    print_disturbances(disturbances(throughput, cases), cases=cases)
    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = list(os.getloadavg())

    if args.json:
        settings = {"quick": args.quick, "repeat": args.repeat, "budget_s": args.budget,
                    "min_rounds": args.min_rounds, "max_rounds": args.max_rounds,
                    "warmup": args.warmup, "pause_s": args.pause,
                    "agree": {np.dtype(k).name: v for k, v in AGREE.items()}}
        report = dict(zip(REPORT_KEYS, (info, settings, throughput, cases, derive_emit, targets)))
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed or "error" in derive_emit else 0


if __name__ == "__main__":
    sys.exit(main())
