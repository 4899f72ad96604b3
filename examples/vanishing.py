"""Vanishing gradients at initialisation: how much of a loss on the last step reaches h_t.

For each cell, freshly initialised by its own init_params, runs adding-problem inputs of length
T and puts a loss on the last output only, L = <v, h_T> with a random unit vector v per
sequence, so that ||dL/dh_T|| = 1. Then measures ||dL/dh_t|| for every earlier t, by running
backward() with dL/dys zero except at the last step, one step at a time. Averaged (geometric
mean) over the batch and over several seeds.

    python examples/vanishing.py                 # every cell, T = 100, 5 seeds
    python examples/vanishing.py --cells rnn lstm --length 200
"""

from __future__ import annotations

import argparse

import common  # noqa: I001  (before NumPy: it sets the BLAS thread count)
import numpy as np

D = 2
# A norm that underflows to 0 (a gradient below 1e-308, in a long sequence) counts as the smallest
# normal number: its log stays finite, and the means with it are upper bounds
TINY = np.finfo(float).tiny
UNDERFLOWED = set()  # the cells measure() saw a norm underflow in, for report()'s footnote
ORDER = ["rnn", "gru", "gru_cho", "lstm", "lstm_seed", "lstm_peephole", "lstm_cifg"]


def gradient_norms(kernel, params, x, v):
    """||dL/dh_t|| for t = 0 .. T (h_0 the initial state, h_T the last output), per sequence,
    for L = sum over the batch of <v, h_T>: an array (T + 1, B).

    Backpropagation through time one step at a time, with step_forward() and step_backward(),
    carrying the state forwards and dL/d(state) backwards, so that the gradient of every
    intermediate state can be read off. dL/dy is v at the last step and zero (None) before it."""
    T, B = x.shape[:2]
    h = common.output_state_index(kernel)
    caches, state = [], None
    for t in range(T):
        _, state, cache = kernel.step_forward(params, x[t], state)
        caches.append(cache)
    norms = np.empty((T + 1, B))
    norms[T] = np.linalg.norm(v, axis=1)
    dstate = None
    for t in reversed(range(T)):
        _, _, dstate = kernel.step_backward(params, caches[t], v if t == T - 1 else None, dstate)
        norms[t] = np.linalg.norm(dstate[h], axis=1)
    return norms


def measure(cell, T, hidden, seeds, batch, forget_bias=0.0):
    """log10 ||dL/dh_t||, averaged over the batch, for each seed: an array (seeds, T + 1)."""
    kernel = common.load_cell(cell)
    logs = []
    for seed in range(seeds):
        params = common.with_keep_bias(cell, kernel.init_params(D, hidden, seed=seed), forget_bias, hidden)
        rng = np.random.default_rng([seed, T, 2])
        x, _ = common.adding_batch(rng, T, batch)
        v = rng.standard_normal((batch, hidden))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        norms = gradient_norms(kernel, params, x, v)
        if (norms < TINY).any():
            UNDERFLOWED.add(cell)
        logs.append(np.log10(np.maximum(norms, TINY)).mean(axis=1))
    return np.array(logs)


def per_step_factor(mean_log, T):
    """The geometric mean shrink factor per step, from t = T-1 back to t = 0, or back to the
    earliest step whose mean stays clear of the underflow floor (nan with fewer than two steps)."""
    clear = np.flatnonzero(mean_log[:T] > np.log10(TINY) + 10)
    t0 = clear[0] if clear.size else T - 1
    return 10 ** ((mean_log[t0] - mean_log[T - 1]) / (T - 1 - t0)) if T - 1 > t0 else float("nan")


def _norm_text(mean_log):
    return "underflow" if mean_log <= np.log10(TINY) + 1e-9 else f"{10 ** mean_log:.1e}"


def _factor_text(factor):
    return "-" if np.isnan(factor) else f"{factor:.3f}"


def report(results, T):
    lags = [k for k in (1, 5, 10, 25, 50, 100, 200, 500) if k <= T]
    print(f"||dL/dh_t|| at k = T - t steps before the loss (T = {T}; ||dL/dh_T|| = 1), "
          "geometric mean over seeds and batch")
    rows = []
    for cell, logs in results.items():
        mean = logs.mean(axis=0)
        rows.append([cell] + [_norm_text(mean[T - k]) for k in lags] + [_factor_text(per_step_factor(mean, T))])
    common.print_table(["cell"] + [f"k={k}" for k in lags] + ["factor/step"], rows)
    underflowed = [cell for cell in results if cell in UNDERFLOWED]
    if underflowed:
        print(f"({', '.join(underflowed)}: some norms underflowed below 1e-308 and count as {TINY:.1e}, so the "
              "means from there on are upper bounds)")


def plot(results, T, hidden, out_dir, name, forget_bias=0.0):
    plt = common.pyplot()
    if plt is None or not results:
        return
    styles = {"rnn": ("tab:red", "-"), "gru": ("tab:green", "-"), "gru_cho": ("tab:olive", "--"),
              "lstm": ("tab:blue", "-"), "lstm_seed": ("tab:purple", "--"),
              "lstm_peephole": ("tab:cyan", ":"), "lstm_cifg": ("tab:brown", "-."), "rnn_relu": ("tab:orange", "--")}
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    t = np.arange(T + 1)
    for cell, logs in results.items():
        color, line = styles.get(cell, (None, "-"))
        mean = logs.mean(axis=0)
        factor = per_step_factor(mean, T)
        label = cell if np.isnan(factor) else f"{cell}  (×{factor:.2f} per step)"
        ax.semilogy(t, 10 ** mean, lw=2, color=color, ls=line, label=label)
        ax.fill_between(t, 10 ** logs.min(axis=0), 10 ** logs.max(axis=0), color=color,
                        alpha=0.12, lw=0)
    ax.set_xlabel(f"step t (the loss is on the last output, t = {T})")
    ax.set_ylabel(r"$\|\partial L / \partial h_t\|$")
    ax.set_xlim(0, T)
    bias = f"forget bias {forget_bias:g}; " if forget_bias else ""
    ax.set_title(f"Gradient reaching $h_t$ at initialisation (H = {hidden}; {bias}"
                 f"band: range over {len(next(iter(results.values())))} seeds)", fontsize=11)
    ax.legend(frameon=False, loc="lower right", fontsize=9)  # every curve ends at 1 at the top right: that corner is free
    common.save_figure(plt, fig, out_dir, name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=common.Help)
    parser.add_argument("--cells", nargs="+", type=common.cell_name, default=None,
                        help="cells to measure, by name or kernel file (default: every generated kernel)")
    parser.add_argument("--length", type=common.at_least(1), default=100, help="sequence length T")
    parser.add_argument("--hidden", type=common.at_least(1), default=32, help="hidden size H")
    parser.add_argument("--seeds", type=common.at_least(1), default=5, help="initialisations to average over")
    parser.add_argument("--batch", type=common.at_least(1), default=16, help="sequences per seed")
    common.add_forget_bias_argument(parser)
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)

    names = args.cells or sorted(common.all_cells(),
                                 key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), c))
    cells = common.available(names)
    common.note_keep_bias(cells, args.forget_bias)
    if not args.no_plot:
        common.writable_directory(args.out, "--out")
    results, interrupted = {}, False
    UNDERFLOWED.clear()  # a second main() in one process reports its own cells alone
    try:
        with common.Progress(len(cells), "measuring", enabled=not args.quiet, unit="cell") as bar:
            for cell in cells:
                results[cell] = measure(cell, args.length, args.hidden, args.seeds, args.batch, args.forget_bias)
                bar.update()
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: the cells measured so far")
    report(results, args.length)
    if not args.no_plot:
        name = common.figure_name("vanishing", args, parser, interrupted)
        plot(results, args.length, args.hidden, args.out, name, args.forget_bias)
    return 130 if interrupted else 0


if __name__ == "__main__":
    common.run(main)
