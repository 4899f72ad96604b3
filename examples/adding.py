"""The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly & Hinton 2015): a
long-range memory task.

Each step's input is a random number in [0, 1) and a marker; exactly two steps are marked, one
in each half of the sequence, and the target, read off the last hidden state by a linear
readout, is the sum of the two marked numbers. Predicting the mean, 1.0, scores a mean squared
error of 1/6 = 0.167; beating that means carrying two numbers across the sequence.

Trains each cell with Adam (written in NumPy, in common.py; the learning rate constant for the
first half of the steps, then a cosine decay towards zero) and gradient-norm clipping, for sequence
lengths T, and reports the test MSE against that baseline. Fixed seeds: the same initial
weights' seed, training stream and test set for every cell at a given T.

    python examples/adding.py                                   # rnn, gru, lstm; T = 10, 50, 100
    python examples/adding.py --cells lstm --lengths 50 --steps 1000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common  # noqa: I001  (before NumPy: it sets the BLAS thread count)
import numpy as np

D = 2  # input: the number and the marker


def init_model(kernel, hidden, seed, forget_bias=0.0):
    """The cell's parameters from its own initialiser (forget_bias added to the bias of the gate
    that keeps the state, where it has one), and a linear readout that starts at the trivial
    prediction 1.0 (w_out = 0, b_out = 1). One dict: the kernels read their PARAMS from it."""
    params = common.with_keep_bias(kernel.CELL, kernel.init_params(D, hidden, seed=seed), forget_bias, hidden)
    params["w_out"] = np.zeros(hidden)
    params["b_out"] = np.ones(1)
    return params


def predict(kernel, params, x):
    """The prediction for every sequence of x (T, B, D), and what the gradient needs."""
    ys, _, cache = kernel.forward(params, x)
    h_last = ys[-1]
    return h_last @ params["w_out"] + params["b_out"][0], h_last, ys, cache


def loss_and_grads(kernel, params, x, y):
    """The mean squared error on a batch and its gradients for every parameter.

    The loss reads only the last step, so dL/dys is zero everywhere but at t = T-1."""
    pred, h_last, ys, cache = predict(kernel, params, x)
    err = pred - y
    dpred = 2 * err / len(y)
    dys = np.zeros_like(ys)
    dys[-1] = np.outer(dpred, params["w_out"])
    grads, _, _ = kernel.backward(params, cache, dys)
    grads["w_out"] = h_last.T @ dpred
    grads["b_out"] = np.array([dpred.sum()])
    return float(np.mean(err ** 2)), grads


def test_mse(kernel, params, x, y):
    return float(np.mean((predict(kernel, params, x)[0] - y) ** 2))


def train(cell, T, *, steps, hidden, batch=32, lr=5e-3, clip=1.0, seed=0, test_size=1000,
          eval_every=100, record=None, progress=True, forget_bias=0.0):
    """Trains one cell at one length. Fills and returns `record`: the test MSE every eval_every
    steps (history), the final test MSE, the wall time. On Ctrl-C the record keeps what was
    measured so far (record["done"] stays False) and KeyboardInterrupt propagates."""
    kernel = common.load_cell(cell)
    record = {} if record is None else record
    record.update(cell=cell, T=T, steps=0, history=[], test_mse=None, seconds=0.0, done=False)
    params = record["params"] = init_model(kernel, hidden, seed, forget_bias)  # trained in place
    adam = common.Adam(params, lr=lr)
    train_rng = np.random.default_rng([seed, T, 1])
    x_test, y_test = common.adding_batch(np.random.default_rng([seed, T, 0]), T, test_size)
    record["baseline"] = float(np.mean((y_test - 1.0) ** 2))  # predicting 1.0 on this test set
    start = time.perf_counter()

    def evaluate(step):
        mse = test_mse(kernel, params, x_test, y_test)
        record["history"].append((step, mse))
        record.update(test_mse=mse, steps=step, seconds=time.perf_counter() - start)
        return mse

    mse, avg = evaluate(0), None
    with common.Progress(steps, f"{cell:>5} T={T}", enabled=progress) as bar:
        for step in range(1, steps + 1):
            x, y = common.adding_batch(train_rng, T, batch)
            loss, grads = loss_and_grads(kernel, params, x, y)
            common.clip_by_global_norm(grads, clip)
            adam.step(params, grads, lr=common.learning_rate(lr, step, steps))
            avg = loss if avg is None else 0.98 * avg + 0.02 * loss
            if step % eval_every == 0 or step == steps:
                mse = evaluate(step)
            bar.update(loss=avg, test_mse=mse)
    record["done"] = True
    return record


def report(records):
    print()
    print(f"Adding problem: test MSE after training (baseline: predict 1.0, MSE "
          f"{common.BASELINE_MSE:.3f} in expectation; / baseline: over its MSE on the same test set)")
    rows = []
    for r in records:
        if r.get("test_mse") is None:
            continue
        mse = r["test_mse"]
        note = "" if r["done"] else " (interrupted)"
        below = [step for step, m in r["history"] if m < 0.01]
        rows.append([r["cell"], r["T"], f"{mse:.2e}", f"{mse / r['baseline']:.2e}",
                     below[0] if below else "-", f"{r['steps']}{note}", f"{r['seconds']:.1f}"])
    common.print_table(["cell", "T", "test MSE", "/ baseline", "MSE < 0.01 at step", "steps",
                        "seconds"], rows)


def plot(records, out_dir, name, setting=""):
    plt = common.pyplot()
    if plt is None:
        return
    lengths = sorted({r["T"] for r in records if r["history"]})
    if not lengths:
        return
    colors = {"rnn": "tab:red", "gru": "tab:green", "lstm": "tab:blue"}
    others = iter(["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"])
    colors.update({c: next(others, None) for c in dict.fromkeys(r["cell"] for r in records) if c not in colors})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.6), sharey=True,
                             squeeze=False)
    for ax, T in zip(axes[0], lengths):
        for r in records:
            if r["T"] != T or not r["history"]:
                continue
            steps, mse = zip(*r["history"])
            ax.semilogy(steps, mse, lw=2, color=colors.get(r["cell"]), label=r["cell"])
        ax.axhline(common.BASELINE_MSE, color="0.4", ls="--", lw=1.2)
        ax.axhline(0.01, color="0.4", ls=":", lw=1)
        ax.set_title(f"T = {T}")
        ax.set_xlabel("training step")
    axes[0][0].set_ylabel("test MSE")
    axes[0][0].annotate("predict 1.0", (0, common.BASELINE_MSE), xytext=(2, -11),
                        textcoords="offset points", color="0.3", fontsize=9)
    axes[0][0].annotate("0.01", (0, 0.01), xytext=(2, 3), textcoords="offset points",
                        color="0.3", fontsize=9)
    axes[0][-1].legend(frameon=False, loc="lower left")
    fig.suptitle(f"The adding problem: test MSE while training{setting}")
    fig.tight_layout()
    common.save_figure(plt, fig, out_dir, name)


def save(records, directory):
    """Each finished run's parameters, as np.load gives them back: a dict of arrays by name."""
    directory.mkdir(parents=True, exist_ok=True)
    for r in records:
        if r.get("done"):
            path = directory / f"adding_{r['cell']}_T{r['T']}.npz"
            np.savez(path, **r["params"])
            print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=common.Help)
    parser.add_argument("--cells", nargs="+", type=common.cell_name, default=["rnn", "gru", "lstm"],
                        help="cells to train, by name or kernel file (default: rnn gru lstm)")
    parser.add_argument("--lengths", nargs="+", type=common.at_least(2), default=[10, 50, 100],
                        help="sequence lengths T, each at least 2, the two marked steps (default: 10 50 100)")
    parser.add_argument("--steps", type=common.at_least(1), default=3000, help="training steps per run")
    parser.add_argument("--hidden", type=common.at_least(1), default=32, help="hidden size H")
    parser.add_argument("--batch", type=common.at_least(1), default=32, help="sequences per step")
    parser.add_argument("--lr", type=common.positive, default=5e-3, help="Adam's learning rate")
    parser.add_argument("--clip", type=common.not_negative, default=1.0, help="gradient norm clip (0: none)")
    parser.add_argument("--seed", type=common.at_least(0), default=0, help="of the weights and the data")
    parser.add_argument("--test-size", type=common.at_least(1), default=1000, help="test sequences")
    parser.add_argument("--eval-every", type=common.at_least(1), default=100, help="test every n steps")
    common.add_forget_bias_argument(parser)
    parser.add_argument("--save", type=Path, metavar="DIR",
                        help="write each run's trained parameters (the cell's and the readout's w_out, b_out) "
                             "to DIR/adding_<cell>_T<T>.npz")
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)

    cells = common.available(args.cells)
    common.note_keep_bias(cells, args.forget_bias)
    if args.save:
        common.writable_directory(args.save, "--save")
    if not args.no_plot:
        common.writable_directory(args.out, "--out")
    records, interrupted = [], False
    try:
        for T in args.lengths:
            for cell in cells:
                record = {}
                records.append(record)
                train(cell, T, steps=args.steps, hidden=args.hidden, batch=args.batch,
                      lr=args.lr, clip=args.clip, seed=args.seed, test_size=args.test_size,
                      eval_every=args.eval_every, record=record, progress=not args.quiet,
                      forget_bias=args.forget_bias)
                print(f"{cell:>5} T={T:<4} test MSE {record['test_mse']:.2e} "
                      f"in {record['seconds']:.1f} s", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: the results so far")
    report(records)
    if args.save:
        save(records, args.save)
    if not args.no_plot:
        bias = f", forget bias {args.forget_bias:g}" if args.forget_bias else ""
        name = common.figure_name("adding", args, parser, interrupted)
        plot(records, args.out, name, f" (H = {args.hidden}, batch {args.batch}, Adam, "
                                      f"learning rate {args.lr:g}{bias})")
    return 130 if interrupted else 0


if __name__ == "__main__":
    common.run(main)
