"""What the example scripts share: loading a cell, the adding problem's data, Adam, gradient
clipping, a progress display and the plotting helper.

Everything here works on any generated kernel through its common interface (PARAMS, STATES,
OUTPUT, init_params, forward, backward), so a cell of your own runs in adding.py, charlm.py and
vanishing.py unchanged, named by its kernel file (`--cells build/mgu.py`, as `lstm-derive generate
my_cells/mgu.py --out build` writes it) or by its name once its kernel is among the package's.
toy.py compares the seed's two cells only.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

# The examples multiply small matrices (64 x 256 and the like). There a second BLAS thread
# does not help, and on a busy machine its spin-waiting makes training several times slower,
# so BLAS gets one thread unless the environment says otherwise. This only takes effect if
# NumPy is not loaded yet: the scripts import this module before NumPy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from lstm_derive.cli import positive_number as positive  # noqa: E402  (a learning rate)

OUTPUT_DIR = Path(__file__).resolve().parent / "output"
PLOT_HINT = 'pip install matplotlib tqdm (or, from the repository, pip install -e ".[plot]")'


# --- cells ----------------------------------------------------------------------------------

KERNEL_FILES = {}  # the kernels given by their file, by cell name


def cell_name(text):
    """An argparse type: a cell's name, or the path of a kernel file outside the package (what
    `lstm-derive generate SCRIPT --out DIR` writes), loaded here and named by its cell from then on."""
    if not text.endswith(".py"):
        return text
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no kernel file {text}")
    from lstm_derive.generate import import_kernel  # here: a cell named as the package's loads no SymPy

    kernel = import_kernel(path)
    if not isinstance(getattr(kernel, "CELL", None), str):  # the derivation script, most likely
        raise argparse.ArgumentTypeError(f"{text} is not a kernel (it has no CELL): give the file that "
                                         "`lstm-derive generate SCRIPT --out DIR` writes into DIR")
    KERNEL_FILES[kernel.CELL] = kernel
    return kernel.CELL


def has_cell(name):
    """Whether the cell's kernel was given by its file, or lstm_derive/kernels/<name>.py exists."""
    if name in KERNEL_FILES or importlib.util.find_spec(f"lstm_derive.kernels.{name}") is not None:
        return True
    importlib.invalidate_caches()  # a kernel generated since the directory was last listed
    return importlib.util.find_spec(f"lstm_derive.kernels.{name}") is not None


def load_cell(name):
    """The generated kernel module of a cell, by name."""
    if name in KERNEL_FILES:
        return KERNEL_FILES[name]
    if not has_cell(name):
        raise SystemExit(f"no kernel '{name}': expected lstm_derive/kernels/{name}.py "
                         f"(cells: {', '.join(all_cells())})")
    return importlib.import_module(f"lstm_derive.kernels.{name}")


def all_cells():
    """The names of every generated kernel."""
    return list(importlib.import_module("lstm_derive.kernels").CELLS)


def available(names):
    """The cells among `names`, each of which must have a kernel (a misspelt name stops the run)."""
    unknown = [n for n in names if not has_cell(n)]
    if unknown:
        raise SystemExit(f"no kernel for {', '.join(unknown)}: the cells are {', '.join(all_cells())}")
    return list(names)


# The bias rows of the gate that keeps the state (an LSTM's forget gate f, a GRU's update gate z):
# (parameter, block, sign). A positive bias there keeps more of the state from the start (Gers et
# al. 2000; Jozefowicz et al. 2015), where init_params' zero-mean biases start the gate near 0.5.
# lstm_cifg's f = 1 - i has no bias of its own: a negative one on i's block raises f as much.
KEEP_GATE = {"lstm": ("b", 1, 1), "lstm_peephole": ("b", 1, 1), "lstm_seed": ("b", 2, 1), "gru": ("b_x", 1, 1),
             "gru_cho": ("b", 1, 1), "lstm_cifg": ("b", 0, -1)}


def with_keep_bias(cell, params, value, hidden):
    """params with `value` added to the bias of the gate that keeps the state (taken from that of
    the gate it is coupled to), where the cell has one (KEEP_GATE); the others unchanged."""
    if value and cell in KEEP_GATE:
        name, block, sign = KEEP_GATE[cell]
        params[name][block * hidden:(block + 1) * hidden] += sign * value
    return params


def note_keep_bias(cells, value):
    """Says on stderr which cells --forget-bias leaves as they are, having no gate that keeps the
    state (or none it knows: a cell of one's own), rather than run them as if it applied."""
    unchanged = [c for c in cells if c not in KEEP_GATE]
    if value and unchanged:
        print(f"--forget-bias: {', '.join(unchanged)} {'has' if len(unchanged) == 1 else 'have'} no gate known to "
              f"keep the state (those known: {', '.join(KEEP_GATE)}); {'its' if len(unchanged) == 1 else 'their'} "
              "biases stay init_params' own", file=sys.stderr)


def output_state_index(kernel):
    """Where the output state (h) sits in the kernel's state tuple."""
    return kernel.STATES.index(kernel.OUTPUT) if kernel.OUTPUT in kernel.STATES else 0


# --- the adding problem (Le, Jaitly & Hinton 2015's form of Hochreiter & Schmidhuber 1997's) ---

BASELINE_MSE = 1 / 6  # predicting 1.0: the variance of the sum of two U[0, 1] numbers


def adding_batch(rng, T, batch):
    """Sequences of the adding problem, time-major: x (T, batch, 2) and targets y (batch,).

    Channel 0 holds a random number in [0, 1) at every step, channel 1 marks two steps, one in
    the first half of the sequence and one in the second; the target is the sum of the two
    marked numbers."""
    values = rng.uniform(0.0, 1.0, (T, batch))
    half = max(T // 2, 1)
    first = rng.integers(0, half, batch)
    second = rng.integers(half, T, batch) if T > 1 else first
    marks = np.zeros((T, batch))
    cols = np.arange(batch)
    marks[first, cols] = 1.0
    marks[second, cols] = 1.0
    y = values[first, cols] + values[second, cols]
    return np.stack([values, marks], axis=-1), y


# --- optimisation ---------------------------------------------------------------------------

class Adam:
    """Adam (Kingma & Ba 2015) over a dict of arrays, updated in place."""

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params, grads, lr=None):
        lr = self.lr if lr is None else lr
        self.t += 1
        correction1 = 1 - self.beta1 ** self.t
        correction2 = 1 - self.beta2 ** self.t
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            params[k] -= lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)


def learning_rate(lr, step, steps):
    """lr for the first half of the steps (step counts from 1), then a cosine decay towards zero
    that reaches it one step after the last: every step, the first and the last too, learns."""
    decay = max(0.0, (step - 1 - steps / 2) / (steps / 2))
    return lr * 0.5 * (1 + np.cos(np.pi * decay))


def clip_by_global_norm(grads, max_norm):
    """Scales all gradients down together when their joint norm exceeds max_norm (in place).
    Returns the norm before clipping."""
    norm = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))
    if max_norm and norm > max_norm:
        for g in grads.values():
            g *= max_norm / norm
    return norm


# --- progress -------------------------------------------------------------------------------

class Progress:
    """A tqdm bar with the loss and the step rate, or plain lines every few seconds without tqdm.

    Use as a context manager, so that the bar is closed on Ctrl-C too."""

    def __init__(self, total, desc, every_seconds=10.0, enabled=True, unit="step"):
        self.total, self.desc, self.every, self.unit = total, desc, every_seconds, unit
        self.enabled = enabled
        self.n, self.start = 0, time.perf_counter()
        self.last_print = self.start
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False,
                                dynamic_ncols=True, file=sys.stderr)

    def update(self, n=1, **values):
        self.n += n
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.enabled and (now - self.last_print >= self.every or self.n == self.total):
            self.last_print = now
            shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"{self.desc}: {self.unit} {self.n}/{self.total}  {shown}  "
                  f"{self.n / (now - self.start):.1f} {self.unit}s/s", file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False


# --- plots ----------------------------------------------------------------------------------

def pyplot():
    """matplotlib.pyplot with a file-only backend, or None (and a hint) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed, so no plots: {PLOT_HINT} to get them.")
        return None
    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def save_figure(plt, fig, out_dir, name):
    """Writes fig as out_dir/name and says where."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
    return path


def at_least(low):
    """An argparse type: a whole number of at least low, or a message that says so."""
    def whole_number(text):
        try:
            n = int(text)
        except ValueError:
            n = low - 1
        if n < low:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {low}, got {text!r}")
        return n
    return whole_number


def not_negative(text):
    """An argparse type: a finite float of at least 0 (a clipping norm, 0 for none), or a message."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text!r}")
    return value


def finite(text):
    """An argparse type: a finite float (a bias), or a message that says so."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def writable_directory(path, option):
    """Stops the run at once, before any training, where `option`'s directory cannot be made or
    written: a run of minutes is not lost at its end."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"{option} {path}: cannot make the directory ({error.strerror})") from None
    if not os.access(path, os.W_OK):
        raise SystemExit(f"{option} {path}: the directory is not writable")


# Options that change no figure: where it goes, whether it is drawn, the progress display, a save.
NOT_IN_FIGURES = ("out", "no_plot", "quiet", "save")


def figure_name(stem, args, parser, interrupted=False, ignore=()):
    """stem.png for the settings the README's figures show, else named after every other setting
    (adding_cells-rnn_relu.png), and _interrupted where Ctrl-C cut the run short, so that no other
    run overwrites those figures. ignore: options of the script that change no figure either."""
    options = [o for o in vars(args) if o not in NOT_IN_FIGURES + tuple(ignore)]
    changed = [(o, getattr(args, o)) for o in options if getattr(args, o) != parser.get_default(o)]
    def text(value):
        return "-".join(map(str, value)) if isinstance(value, (list, tuple)) else f"{value:g}" if isinstance(value, float) else str(value)
    cut = "_interrupted" if interrupted else ""
    return stem + "".join(f"_{o.replace('_', '-')}-{text(v)}" for o, v in changed) + cut + ".png"


def add_forget_bias_argument(parser):
    parser.add_argument("--forget-bias", type=finite, default=0.0, metavar="B",
                        help="add B to the bias of the gate that keeps the state (lstm's f, gru's z; "
                             f"cells {', '.join(KEEP_GATE)}); default 0, init_params' own")


class Help(argparse.RawDescriptionHelpFormatter):
    """--help with each option's default, where its help text does not give it already."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS  # not 0
        if "default" in help_text or unset or not action.option_strings:
            return help_text
        default = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{help_text} (default: {default})".lstrip()


def add_common_arguments(parser, progress=True):
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR,
                        help="directory for the PNG plots (default: examples/output; a run with other "
                             "settings than the defaults names its PNG after them)")
    parser.add_argument("--no-plot", action="store_true", help="print the tables only")
    if progress:
        parser.add_argument("--quiet", action="store_true", help="no progress display")


def print_table(header, rows):
    """A Markdown table with aligned columns."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    line = lambda row: "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |"
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def run(main):
    """Runs an example's main(); Ctrl-C before its own handling ends it with status 130, and a
    closed pipe (| head) with 141, as a shell's own commands do, with no traceback."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted")
        sys.exit(130)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        sys.exit(141)
