"""A character-level language model: a kernel, a softmax readout, truncated BPTT, sampling.

Trains on a text file (by default this repository's README) to predict each next character:
one-hot inputs, the cell's output h_t, logits W_y h_t + b_y, a cross-entropy loss at every step.
B streams read the text side by side, each from its own offset; every training step takes the
next T characters of each, carries the state over from the previous chunk (truncated BPTT: no
gradient goes back past the chunk) and updates with Adam (the learning rate constant, then a
cosine decay towards zero over the second half) and gradient-norm clipping. Reports
bits per character on the training chunks and on held-out text (the file's last tenth), and
samples text one character at a time with step_forward().

    python examples/charlm.py                              # lstm on README.md, 2000 steps
    python examples/charlm.py --cell gru --text my.txt --save model.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common  # noqa: I001  (before NumPy: it sets the BLAS thread count)
import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def init_model(kernel, vocab, hidden, seed, forget_bias=0.0):
    """The cell's parameters (input size: the vocabulary) and a zero readout W_y, b_y: the model
    starts at the uniform prediction, log2(vocab) bits per character."""
    params = common.with_keep_bias(kernel.CELL, kernel.init_params(vocab, hidden, seed=seed), forget_bias, hidden)
    params["W_y"] = np.zeros((vocab, hidden))
    params["b_y"] = np.zeros(vocab)
    return params


def one_hot(ids, vocab):
    return np.eye(vocab)[ids]


def softmax(logits):
    return np.exp(log_softmax(logits))


def log_softmax(logits):
    """log softmax, from the logits: finite where a probability underflows to 0 (an unbounded
    state, as rnn_relu's, makes logits far apart), where log(softmax) would give -inf."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def predict(kernel, params, ids, state):
    """The next character's log-probabilities after each of ids[:-1] (ids: (T + 1, B)), from `state`."""
    vocab = params["b_y"].size
    ys, final, cache = kernel.forward(params, one_hot(ids[:-1], vocab), state)
    return log_softmax(ys @ params["W_y"].T + params["b_y"]), ys, final, cache


def cross_entropy(logp, target):
    """Mean -log p of the targets, in nats."""
    return float(-np.mean(np.take_along_axis(logp, target[..., None], axis=-1)))


def loss_and_grads(kernel, params, ids, state):
    """Mean cross-entropy (nats) of predicting ids[1:] from ids[:-1] (ids: (T + 1, B)), starting
    from `state`; the gradients of every parameter, and the final state for the next chunk."""
    logp, ys, final, cache = predict(kernel, params, ids, state)
    T, B, vocab = logp.shape
    dlogits = (np.exp(logp) - one_hot(ids[1:], vocab)) / (T * B)  # softmax and cross-entropy together
    grads, _, _ = kernel.backward(params, cache, dlogits @ params["W_y"])  # dstate=None: truncated
    grads["W_y"] = dlogits.reshape(T * B, vocab).T @ ys.reshape(T * B, -1)
    grads["b_y"] = dlogits.sum(axis=(0, 1))
    return cross_entropy(logp, ids[1:]), grads, final


def bits_per_char(kernel, params, ids):
    """Cross-entropy of a whole text in bits per character, one sequence from the zero state."""
    logp, _, _, _ = predict(kernel, params, ids[:, None], None)
    return cross_entropy(logp, ids[1:, None]) / np.log(2)


def sample(kernel, params, chars, rng, length, temperature=0.8, start="\n"):
    """Text drawn one character at a time: step_forward() on the last character drawn."""
    index = {c: i for i, c in enumerate(chars)}
    current, state, out = index.get(start, 0), None, []
    for _ in range(length):
        y, state, _ = kernel.step_forward(params, one_hot([current], len(chars)), state)
        p = softmax((y @ params["W_y"].T + params["b_y"])[0] / temperature)
        current = int(rng.choice(len(chars), p=p))
        out.append(chars[current])
    return "".join(out)


def train(cell, text, *, steps, hidden=64, batch=16, length=25, lr=5e-3, clip=1.0, seed=0,
          forget_bias=0.0, report_every=250, progress=True, record=None):
    """Trains a model on text; fills and returns `record` (vocabulary, parameters, the history of
    (step, training bits/char, held-out bits/char)). On Ctrl-C it keeps what it has."""
    kernel = common.load_cell(cell)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text])
    split = int(0.9 * len(ids))
    train_ids, held_out = ids[:split], ids[split:split + 2000]
    if split < batch * (length + 1) or len(held_out) < 2:
        raise SystemExit(f"the text is too short: {len(text)} characters, of which the first 90% ({split}) are for "
                         f"training, {batch} streams of {length + 1} at least, and the rest held out (2 at least)")
    record = {} if record is None else record
    params = init_model(kernel, len(chars), hidden, seed, forget_bias)
    record.update(cell=cell, chars=chars, params=params, history=[])
    adam = common.Adam(params, lr=lr)
    stride = split // batch
    offsets = np.arange(batch) * stride
    state, avg, position, done = None, None, 0, 0

    def note(step):
        record["history"].append((step, avg / np.log(2), bits_per_char(kernel, params, held_out)))

    with common.Progress(steps, f"{cell:>5}", enabled=progress) as bar:
        try:
            for step in range(1, steps + 1):
                if position + length + 1 > stride:  # every stream at its start again
                    state, position = None, 0
                chunk = train_ids[offsets[None, :] + position + np.arange(length + 1)[:, None]]
                loss, grads, state = loss_and_grads(kernel, params, chunk, state)
                common.clip_by_global_norm(grads, clip)
                adam.step(params, grads, lr=common.learning_rate(lr, step, steps))
                position += length
                avg, done = (loss if avg is None else 0.95 * avg + 0.05 * loss), step
                if step % report_every == 0 or step == steps:
                    note(step)
                bar.update(bits=avg / np.log(2))
        except KeyboardInterrupt:  # the table ends at the step reached, not at the last report
            if done and (not record["history"] or record["history"][-1][0] != done):
                note(done)
            raise
    return record


def note_divergence(record, lr):
    """Says so where the model ended worse than the uniform prediction it started from, by more
    than a bit per character (a few steps in, it may sit a little above), or at nan: its table
    and sample are those of a training that diverged, not of a language model."""
    uniform = np.log2(len(record["chars"]))
    held_out = record["history"][-1][2] if record["history"] else uniform
    if not held_out <= uniform + 1:
        print(f"(held-out {held_out:.3f} bits/char, where the uniform prediction costs {uniform:.2f}: the training "
              f"diverged: try a smaller --lr than {lr:g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=common.Help)
    parser.add_argument("--cell", type=common.cell_name, default="lstm",
                        help="the cell, by name or kernel file (default: lstm)")
    parser.add_argument("--text", type=Path, default=README, help="a UTF-8 text file (default: README.md)")
    parser.add_argument("--steps", type=common.at_least(1), default=2000, help="training steps")
    parser.add_argument("--hidden", type=common.at_least(1), default=64, help="hidden size H")
    parser.add_argument("--batch", type=common.at_least(1), default=16, help="streams read side by side")
    parser.add_argument("--length", type=common.at_least(1), default=25, help="steps per chunk of truncated BPTT")
    parser.add_argument("--lr", type=common.positive, default=5e-3, help="Adam's learning rate")
    parser.add_argument("--seed", type=common.at_least(0), default=0, help="of the weights and the sampling")
    parser.add_argument("--sample", type=common.at_least(0), default=300, help="characters to sample at the end")
    parser.add_argument("--save", type=Path, help="write the parameters and vocabulary here (.npz)")
    common.add_forget_bias_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    if not args.text.is_file():
        parser.error(f"--text {args.text}: " + ("a directory, not a file" if args.text.is_dir() else "no such file"))
    if args.save:
        args.save = args.save.with_suffix(".npz") if args.save.suffix != ".npz" else args.save  # as np.savez writes it
        common.writable_directory(args.save.parent, "--save")

    (cell,) = common.available([args.cell])
    common.note_keep_bias([cell], args.forget_bias)
    try:
        text = args.text.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        parser.error(f"--text {args.text}: not UTF-8 text ({error.reason} at byte {error.start})")
    record, interrupted = {}, False
    try:
        train(cell, text, steps=args.steps, hidden=args.hidden, batch=args.batch, length=args.length,
              lr=args.lr, seed=args.seed, forget_bias=args.forget_bias, progress=not args.quiet, record=record)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: the model so far")
    if not record.get("params"):
        return 130
    print(f"{cell} on {args.text.name} ({len(text)} characters, {len(record['chars'])} distinct; "
          f"uniform: {np.log2(len(record['chars'])):.2f} bits/char)")
    common.print_table(["step", "train bits/char", "held-out bits/char"],
                       [[s, f"{a:.3f}", f"{b:.3f}"] for s, a, b in record["history"]])
    note_divergence(record, args.lr)
    if args.sample:  # --sample 0: none asked for, and no heading over nothing
        kernel = common.load_cell(cell)
        print("\nsampled, temperature 0.8:\n" + sample(kernel, record["params"], record["chars"],
                                                       np.random.default_rng(args.seed), args.sample))
    if args.save:
        np.savez(args.save, chars=np.array(record["chars"]), **record["params"])
        print(f"wrote {args.save}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    common.run(main)
