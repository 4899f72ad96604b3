"""The seed's toy example, on the generated kernels: one sequence of 4 random inputs (size 50),
100 memory cells, and a target for the first unit of h at each step, y = [-0.5, 0.2, 0.1, -0.5].
Loss sum_t (h_t[0] - y_t)^2, plain SGD with learning rate 0.1, 100 iterations.

The example is the one of the LSTM code the seed explains (nicodjimenez/lstm). This script
trains the seed's cell (lstm_seed: h = s*o, no tanh on the cell state) and the standard LSTM
(h = o*tanh(c)) from that code's initialisation, side by side, and prints the loss per
iteration.

    python examples/toy.py                 # table + examples/output/toy.png
    python examples/toy.py --every 1       # every iteration
"""

from __future__ import annotations

import argparse

import common  # noqa: I001  (before NumPy: it sets the BLAS thread count)
import numpy as np

Y = (-0.5, 0.2, 0.1, -0.5)
X_DIM, CELLS_COUNT = 50, 100
# The order of the gate blocks in each kernel's W_x, W_h and b (see the kernels' docstrings).
GATE_BLOCKS = {"lstm_seed": "gifo", "lstm": "ifgo"}
# The seed's own code, run on this problem: its loss at iterations 0, 10, 50 and 99.
SEED_REFERENCE = {0: 7.535e-01, 10: 3.319e-01, 50: 4.602e-03, 99: 2.611e-06}


def seed_initialisation(x_dim=X_DIM, hidden=CELLS_COUNT, steps=len(Y)):
    """The seed's weights and inputs, drawn as the seed draws them.

    Its initialiser reseeds NumPy's generator to 0 before every array, so the four gate
    matrices w_g, w_i, w_f, w_o (hidden, x_dim + hidden) over [x; h] start identical, and so do
    the four biases; the inputs continue the stream after the last bias."""
    rng = np.random.RandomState(0)

    def uniform(*shape):  # U[-0.1, 0.1), after a reseed
        rng.seed(0)
        return rng.rand(*shape) * 0.2 - 0.1

    weights = {gate: uniform(hidden, x_dim + hidden) for gate in "gifo"}
    biases = {gate: uniform(hidden) for gate in "gifo"}
    xs = np.array([rng.random_sample(x_dim) for _ in range(steps)])
    return weights, biases, xs


def kernel_params(cell, weights, biases, x_dim=X_DIM):
    """The seed's per-gate arrays in a kernel's layout: W_x and W_h are the gate matrices'
    x and h columns stacked in the kernel's block order, b the biases likewise."""
    order = GATE_BLOCKS[cell]
    W = np.vstack([weights[g] for g in order])
    return {"W_x": W[:, :x_dim].copy(), "W_h": W[:, x_dim:].copy(),
            "b": np.concatenate([biases[g] for g in order])}


def toy_losses(cell="lstm_seed", iterations=100, lr=0.1):
    """Trains the toy example with plain SGD; returns the loss before each update."""
    kernel = common.load_cell(cell)
    weights, biases, xs = seed_initialisation()
    params = kernel_params(cell, weights, biases)
    x = xs[:, np.newaxis, :]                      # (T, B=1, D)
    y = np.array(Y)
    losses = []
    for _ in range(iterations):
        ys, _, cache = kernel.forward(params, x)
        err = ys[:, 0, 0] - y
        losses.append(float(np.sum(err ** 2)))
        dys = np.zeros_like(ys)
        dys[:, 0, 0] = 2 * err
        grads, _, _ = kernel.backward(params, cache, dys)
        for name in kernel.PARAMS:
            params[name] -= lr * grads[name]
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=common.Help)
    parser.add_argument("--cells", nargs="+", default=["lstm_seed", "lstm"],
                        choices=sorted(GATE_BLOCKS), help="cells to train (default: both)")
    parser.add_argument("--iterations", type=common.at_least(1), default=100, help="SGD steps")
    parser.add_argument("--lr", type=common.positive, default=0.1, help="SGD's learning rate")
    parser.add_argument("--every", type=common.at_least(1), default=10, help="print every n-th iteration")
    common.add_common_arguments(parser, progress=False)  # a second's run: nothing to show progress of
    args = parser.parse_args(argv)

    cells = common.available(args.cells)
    if not args.no_plot:
        common.writable_directory(args.out, "--out")
    curves = {cell: toy_losses(cell, args.iterations, args.lr) for cell in cells}

    shown = sorted(set(range(0, args.iterations, args.every)) | {args.iterations - 1})
    print(f"Toy example: loss sum_t (h_t[0] - y_t)^2 per iteration, SGD lr {args.lr}")
    common.print_table(["iteration"] + cells,
                       [[i] + [f"{curves[c][i]:.3e}" for c in cells] for i in shown])

    plt = None if args.no_plot else common.pyplot()
    if plt is not None and cells:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        styles = {
            "lstm_seed": dict(color="tab:blue", label="lstm_seed (h = s·o, the seed's cell)"),
            "lstm": dict(color="tab:orange", label="lstm (h = o·tanh(c))"),
        }
        for cell in cells:
            ax.semilogy(curves[cell], lw=2, **styles[cell])
        if "lstm_seed" in cells and args.iterations == 100 and args.lr == 0.1:
            its = [i for i in SEED_REFERENCE]
            ax.semilogy(its, [SEED_REFERENCE[i] for i in its], "kx", ms=8, mew=1.5,
                        label="measured on the seed's own code", zorder=3)
        ax.set_xlabel("iteration (plain SGD, learning rate %g)" % args.lr)
        ax.set_ylabel(r"loss $\sum_t (h_t[0] - y_t)^2$")
        ax.set_title("The seed's toy example on the generated kernels")
        ax.legend(frameon=False)
        common.save_figure(plt, fig, args.out, common.figure_name("toy", args, parser, ignore=["every"]))
    return 0


if __name__ == "__main__":
    common.run(main)
