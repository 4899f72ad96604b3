"""The example scripts: each runs end to end at tiny sizes, the toy example reproduces the seed's
losses, and training on the adding problem beats the trivial baseline."""

import argparse
import importlib.util
import pathlib
import re
import runpy
import shlex
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import adding  # noqa: E402
import charlm  # noqa: E402
import common  # noqa: E402
import toy  # noqa: E402
import vanishing  # noqa: E402

CELLS = [c for c in ("rnn", "gru", "lstm") if common.has_cell(c)]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
TINY_ADDING = ["--lengths", "4", "6", "--steps", "3", "--hidden", "3", "--batch", "4",
               "--test-size", "8", "--eval-every", "2"]


def test_the_examples_own_modules_are_imported():
    assert pathlib.Path(common.__file__).parent == EXAMPLES


def test_a_learning_rate_is_read_as_checks_scale_is():
    """The examples' --lr took a number above 0 with a function of their own, a copy of check's."""
    from lstm_derive import cli

    for text in ("0.5", "1e-3"):
        assert common.positive(text) == cli.positive_number(text) == float(text)
    for text in ("0", "-1", "inf", "nan", "fast"):
        refusals = set()
        for read in (common.positive, cli.positive_number):
            with pytest.raises(argparse.ArgumentTypeError) as refused:
                read(text)
            refusals.add(str(refused.value))
        assert refusals == {f"expected a finite number above 0, got {text!r}"}


def test_toy_reproduces_the_seed_losses():
    losses = toy.toy_losses("lstm_seed")
    assert [f"{losses[i]:.3e}" for i in (0, 10, 50, 99)] == [
        "7.535e-01", "3.319e-01", "4.602e-03", "2.611e-06"]


def test_toy_seed_initialisation_in_kernel_layout():
    weights, biases, xs = toy.seed_initialisation()
    assert xs.shape == (4, 50) and all(np.array_equal(weights["g"], w) for w in weights.values())
    p = toy.kernel_params("lstm", weights, biases)
    assert p["W_x"].shape == (400, 50) and p["W_h"].shape == (400, 100) and p["b"].shape == (400,)
    np.testing.assert_array_equal(p["W_h"][:100], weights["i"][:, 50:])


def test_toy_script(tmp_path, capsys):
    assert toy.main(["--iterations", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lstm_seed" in out and "7.535e-01" in out
    assert (tmp_path / "toy_iterations-3.png").exists() == HAS_MATPLOTLIB  # the README's toy.png is 100 iterations


def test_adding_script(tmp_path, capsys):
    assert adding.main(["--cells", *CELLS, *TINY_ADDING, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for cell in CELLS:
        assert re.search(rf"\| +{cell} \| +4 \|", out) and re.search(rf"\| +{cell} \| +6 \|", out)
    assert (tmp_path / "adding_lengths-4-6_steps-3_hidden-3_batch-4_test-size-8_eval-every-2.png").exists() == HAS_MATPLOTLIB


def test_vanishing_counts_a_norm_that_underflowed_at_the_floor_and_says_so(capsys, monkeypatch):
    """A gradient below 1e-308 is 0 in float64: its log would be -inf and every mean with it. It
    counts as the smallest normal number, the factor per step comes from the steps clear of that
    floor, and the table says which cells it concerns."""
    floor = np.log10(vanishing.TINY)
    mean = np.array([floor, floor, -100.0, -75.0, -50.0, 0.0])  # T = 5: h_0, h_1 underflowed
    assert vanishing.per_step_factor(mean, 5) == pytest.approx(1e-25)
    assert np.isnan(vanishing.per_step_factor(np.array([-1.0, 0.0]), 1))  # one step: no factor
    monkeypatch.setattr(vanishing, "UNDERFLOWED", {"rnn"})
    vanishing.report({"rnn": mean[np.newaxis], "gru": np.array([[-5.0, -4.0, -3.0, -2.0, -1.0, 0.0]])}, 5)
    out = capsys.readouterr().out
    assert re.search(r"\| +rnn \| .*\| +underflow \|", out), out
    assert "(rnn: some norms underflowed below 1e-308 and count as 2.2e-308" in out


def test_an_example_piped_into_head_ends_quietly(tmp_path):
    run = subprocess.run(f"{shlex.quote(sys.executable)} {shlex.quote(str(EXAMPLES / 'vanishing.py'))} --cells rnn "
                         "--length 5 --seeds 1 --batch 2 --no-plot --quiet | head -1",
                         shell=True, capture_output=True, text=True, cwd=tmp_path)
    assert run.stdout.startswith("||dL/dh_t||") and "Traceback" not in run.stderr, run.stderr


def test_a_figure_is_named_after_the_settings_that_differ_from_the_defaults():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm"])
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--quiet", action="store_true")
    assert common.figure_name("adding", parser.parse_args(["--quiet"]), parser) == "adding.png"
    args = parser.parse_args(["--cells", "rnn_relu", "--lr", "0.25", "--eval-every", "50", "--every", "5"])
    assert common.figure_name("adding", args, parser, ignore=["every"]) == "adding_cells-rnn_relu_lr-0.25_eval-every-50.png"
    assert common.figure_name("adding", parser.parse_args([]), parser, interrupted=True) == "adding_interrupted.png"


def test_an_output_directory_that_cannot_be_written_stops_the_run_before_it_trains(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match=r"--save .*file/models: cannot make the directory"):
        adding.main(["--cells", "rnn", *TINY_ADDING, "--save", str(blocker / "models"), "--no-plot"])
    assert "test MSE" not in capsys.readouterr().out  # nothing trained


def test_toy_stops_at_once_where_its_figure_cannot_be_written(tmp_path, capsys):
    """toy.py trained, printed its table, then ended in a traceback from savefig's directory."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match=r"--out .*file/figures: cannot make the directory"):
        toy.main(["--iterations", "1", "--out", str(blocker / "figures")])
    assert "lstm_seed" not in capsys.readouterr().out  # nothing trained


def test_adding_saves_what_it_trained(tmp_path, capsys):
    """--save writes each run's parameters; loaded back, they give the test MSE the run reported."""
    assert adding.main(["--cells", "gru", *TINY_ADDING, "--no-plot", "--save", str(tmp_path / "saved")]) == 0
    out = capsys.readouterr().out
    for T in (4, 6):
        path = tmp_path / "saved" / f"adding_gru_T{T}.npz"
        assert f"wrote {path}" in out
        params = dict(np.load(path))
        kernel = common.load_cell("gru")
        assert set(params) == {*kernel.PARAMS, "w_out", "b_out"}
        size = int(TINY_ADDING[TINY_ADDING.index("--test-size") + 1])
        x, y = common.adding_batch(np.random.default_rng([0, T, 0]), T, size)  # the run's test set (seed 0)
        reported = float(re.search(rf"\| +gru \| +{T} \| ([\d.e+-]+) \|", out).group(1))
        assert adding.test_mse(kernel, params, x, y) == pytest.approx(reported, rel=5e-3)  # printed to 3 digits


def adding_problem():
    """The adding model's loss (a function of its parameters, changed in place), its parameters
    and their gradients, with a random readout (at init_model's zero one, dW_x is 0)."""
    kernel = common.load_cell("lstm")
    params = adding.init_model(kernel, 3, seed=1)
    params["w_out"] = np.random.default_rng(2).standard_normal(3)
    x, y = common.adding_batch(np.random.default_rng(3), 4, 2)
    _, grads = adding.loss_and_grads(kernel, params, x, y)
    return lambda: adding.loss_and_grads(kernel, params, x, y)[0], params, grads


def test_adding_gradients_match_central_differences():
    assert_central_differences_agree(*adding_problem())


def assert_central_differences_agree(loss, params, grads, eps=1e-6, limit=1e-7):
    """Every entry of every array in params, moved by ±eps in place: loss()'s central difference
    is grads' entry, to `limit` of the array's largest entry (the worst of these tests is 6.6e-9,
    adding's W_h: the differences' rounding; a gradient off by 1e-6 of itself fails)."""
    for name, arr in params.items():
        numeric = np.empty(arr.shape)
        for idx in np.ndindex(arr.shape):
            v = arr[idx]
            arr[idx] = v + eps
            up = loss()
            arr[idx] = v - eps
            down = loss()
            arr[idx] = v
            numeric[idx] = (up - down) / (2 * eps)
        error = np.max(np.abs(grads[name] - numeric)) / max(np.max(np.abs(numeric)), np.finfo(float).tiny)
        assert error < limit, (name, error)


def test_central_differences_of_the_examples_fail_a_gradient_off_by_1e_6():
    loss, params, grads = adding_problem()
    grads["b_out"] = grads["b_out"] * (1 + 1e-6)
    with pytest.raises(AssertionError, match="b_out"):
        assert_central_differences_agree(loss, params, grads)


@pytest.mark.parametrize("cell", [c for c in ("gru", "lstm") if common.has_cell(c)])
def test_adding_training_beats_the_baseline_at_T10(cell):
    record = adding.train(cell, 10, steps=200, hidden=8, batch=32, lr=2e-2, test_size=500,
                          eval_every=200, progress=False)
    assert record["done"]
    assert record["history"][0][1] == pytest.approx(common.BASELINE_MSE, rel=0.2)
    assert record["test_mse"] < 0.1 * common.BASELINE_MSE


def test_adding_ctrl_c_prints_what_it_has(tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real_batch = common.adding_batch

    def interrupting_batch(rng, T, batch):
        calls["n"] += 1
        if calls["n"] == 8:  # during the second run, after its test set and a few steps
            raise KeyboardInterrupt
        return real_batch(rng, T, batch)

    monkeypatch.setattr(common, "adding_batch", interrupting_batch)
    code = adding.main(["--cells", "lstm", *TINY_ADDING, "--steps", "4", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 130
    assert "interrupted: the results so far" in out
    assert re.search(r"\| lstm \| 4 \| .* \| +4 \|", out)       # the finished run
    assert re.search(r"\| lstm \| 6 \| .* \(interrupted\) \|", out)  # the interrupted one


def test_vanishing_script(tmp_path, capsys):
    cells = [c for c in ("rnn", "lstm_seed") if common.has_cell(c)]
    args = ["--cells", *cells, "--length", "6", "--hidden", "3", "--seeds", "2", "--batch", "2"]
    assert vanishing.main([*args, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in cells) and "factor/step" in out
    assert len(list(tmp_path.glob("vanishing_cells-*_length-6_hidden-3_seeds-2_batch-2.png"))) == HAS_MATPLOTLIB


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="draws the figure")
def test_the_vanishing_figures_legend_hides_no_curve(tmp_path, monkeypatch):
    """README's figure, eight cells at T = 100: the legend, at the top left, hid the gated cells'
    curves over their first 35 steps. Every curve ends at 1 at the top right; its factors here
    span README's."""
    T, factors = 100, np.linspace(0.45, 0.65, 8)
    lags = T - np.arange(T + 1)
    results = {f"cell{i}": np.array([lags * np.log10(f)] * 2) for i, f in enumerate(factors)}
    figures = []
    monkeypatch.setattr(common, "save_figure", lambda plt, fig, out_dir, name: figures.append(fig))
    vanishing.plot(results, T, 32, tmp_path, "vanishing.png")
    (fig,) = figures
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    for line in ax.get_lines():
        points = line.get_transform().transform(line.get_xydata())
        inside = (points >= legend.min).all(axis=1) & (points <= legend.max).all(axis=1)
        assert not inside.any(), line.get_label()


@pytest.mark.parametrize("cell", list(dict.fromkeys(["lstm", "lstm_seed", *CELLS])))
def test_vanishing_step_by_step_agrees_with_one_backward(cell):
    """The first norm, dL/dh_0, equals what one backward() over the whole sequence returns."""
    kernel = common.load_cell(cell)
    params = kernel.init_params(2, 4, seed=3)
    x, _ = common.adding_batch(np.random.default_rng(4), 7, 3)
    v = np.random.default_rng(5).standard_normal((3, 4))
    norms = vanishing.gradient_norms(kernel, params, x, v)
    ys, _, cache = kernel.forward(params, x)
    dys = np.zeros_like(ys)
    dys[-1] = v
    _, _, dstate0 = kernel.backward(params, cache, dys)
    h = common.output_state_index(kernel)
    np.testing.assert_allclose(norms[0], np.linalg.norm(dstate0[h], axis=1), rtol=1e-12)
    np.testing.assert_allclose(norms[-1], np.linalg.norm(v, axis=1))


def test_without_matplotlib_or_tqdm_the_tables_still_print(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.pyplot", "tqdm", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    assert adding.main(["--cells", "lstm", *TINY_ADDING, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert 'pip install matplotlib tqdm' in captured.out and "test MSE" in captured.out
    assert "lstm T=4: step 3/3" in captured.err  # plain progress lines
    assert not list(tmp_path.iterdir())


def test_adam_and_clipping():
    params = {"w": np.array([3.0, -2.0])}
    adam = common.Adam(params, lr=0.1)
    for _ in range(300):
        adam.step(params, {"w": 2 * params["w"]})
    assert np.abs(params["w"]).max() < 1e-2
    grads = {"a": np.array([3.0]), "b": np.array([4.0])}
    assert common.clip_by_global_norm(grads, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose([grads["a"][0], grads["b"][0]], [0.6, 0.8])


def test_adding_data():
    x, y = common.adding_batch(np.random.default_rng(0), 20, 500)
    assert x.shape == (20, 500, 2) and y.shape == (500,)
    marks = x[:, :, 1]
    assert (marks.sum(axis=0) == 2).all()
    assert (marks[:10].sum(axis=0) == 1).all()
    np.testing.assert_allclose((x[:, :, 0] * marks).sum(axis=0), y)
    assert np.mean((y - 1) ** 2) == pytest.approx(common.BASELINE_MSE, rel=0.15)


def test_a_misspelt_cell_stops_the_run_with_the_cells_there_are(capsys):
    with pytest.raises(SystemExit, match=r"no kernel for lsmt: the cells are .*lstm"):
        adding.main(["--cells", "lsmt", *TINY_ADDING, "--no-plot"])


MGU_SCRIPT = """\
from lstm_derive import Cell, sigmoid, tanh

cell = Cell("mine", title="A minimal gated unit")
x = cell.input("x")
h_prev = cell.state("h")
a_f, a_n = cell.affine("W", [x, h_prev], blocks=["a_f", "a_n"])
f = cell.let("f", sigmoid(a_f))
cell.update(h=(1 - f) * h_prev + f * tanh(a_n))
"""


def test_a_cell_of_ones_own_trains_from_its_kernel_file(tmp_path, capsys):
    """A kernel written outside the package (lstm-derive generate SCRIPT --out DIR) is given by its
    path, and the tables and figures name it by its cell."""
    from lstm_derive import cli

    script = tmp_path / "mine_script.py"
    script.write_text(MGU_SCRIPT)
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "build")]) == 0
    kernel_file = str(tmp_path / "build" / "mine.py")
    assert adding.main(["--cells", kernel_file, *TINY_ADDING, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| +mine \| +4 \|", out) and re.search(r"\| +mine \| +6 \|", out)
    assert (tmp_path / "adding_cells-mine_lengths-4-6_steps-3_hidden-3_batch-4_test-size-8_eval-every-2.png"
            ).exists() == HAS_MATPLOTLIB
    assert vanishing.main(["--cells", kernel_file, "--length", "5", "--seeds", "1", "--batch", "2", "--no-plot",
                           "--quiet"]) == 0
    assert "mine" in capsys.readouterr().out


@pytest.mark.parametrize("given, message", [
    ("nowhere.py", "no kernel file nowhere.py"),
    ("mine_script.py", "mine_script.py is not a kernel (it has no CELL): give the file that `lstm-derive generate"),
])
def test_a_file_that_is_no_kernel_is_refused_saying_which(tmp_path, capsys, monkeypatch, given, message):
    (tmp_path / "mine_script.py").write_text(MGU_SCRIPT)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        adding.main(["--cells", given, *TINY_ADDING, "--no-plot"])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("cell, name, block, sign", [("lstm", "b", 1, 1), ("lstm_seed", "b", 2, 1), ("gru", "b_x", 1, 1),
                                                     ("lstm_cifg", "b", 0, -1)])
def test_the_forget_bias_goes_to_the_gate_that_keeps_the_state(cell, name, block, sign):
    """lstm's f (blocks i, f, g, o), lstm_seed's f (g, i, f, o), gru's z (r, z, n), lstm_cifg's
    f = 1 - i (i, g, o), through i's bias, lowered: more of the state kept means a larger gradient
    far back."""
    if not common.has_cell(cell):
        pytest.skip(f"no {cell} kernel")
    kernel, H = common.load_cell(cell), 4
    base = kernel.init_params(2, H, seed=0)
    biased = common.with_keep_bias(cell, kernel.init_params(2, H, seed=0), 1.0, H)
    changed = {n: np.flatnonzero(biased[n] != base[n]) for n in kernel.PARAMS}
    assert {n: list(i) for n, i in changed.items() if len(i)} == {name: list(range(block * H, (block + 1) * H))}
    assert np.allclose(biased[name] - base[name], sign * (biased[name] != base[name]))
    far = [vanishing.measure(cell, 20, H, 1, 4, bias)[0, 0] for bias in (0.0, 2.0)]
    assert far[1] > far[0]


def test_a_forget_bias_for_a_cell_without_a_keep_gate_says_it_leaves_it_unchanged(tmp_path, capsys):
    assert adding.main(["--cells", "rnn", "lstm", *TINY_ADDING, "--no-plot", "--forget-bias", "1"]) == 0
    err = capsys.readouterr().err
    assert "--forget-bias: rnn has no gate known to keep the state" in err and "lstm has" not in err, err
    assert adding.main(["--cells", "rnn", *TINY_ADDING, "--no-plot"]) == 0
    assert "--forget-bias" not in capsys.readouterr().err  # not asked for: nothing to say


def test_every_step_of_the_schedule_learns():
    """Constant for the first half, then a cosine decay that reaches zero only after the last step:
    one step alone learns at the full rate, and the last of many still learns."""
    assert common.learning_rate(0.1, 1, 1) == 0.1
    rates = [common.learning_rate(0.1, step, 3000) for step in range(1, 3001)]
    assert rates[:1501] == [0.1] * 1501 and all(a > b > 0 for a, b in zip(rates[1500:], rates[1501:]))
    record = adding.train("lstm", 4, steps=1, hidden=3, batch=4, test_size=8, eval_every=1, progress=False)
    assert record["history"][0][1] != record["history"][-1][1]


def test_the_baseline_column_is_over_the_test_sets_own_trivial_mse(capsys):
    record = adding.train("lstm", 4, steps=1, hidden=3, batch=4, test_size=8, eval_every=1, progress=False)
    x, y = common.adding_batch(np.random.default_rng([0, 4, 0]), 4, 8)
    assert record["baseline"] == pytest.approx(np.mean((y - 1) ** 2))
    adding.report([record])
    assert f"{record['test_mse'] / record['baseline']:.2e}" in capsys.readouterr().out


def test_charlm_gradients_match_central_differences():
    """The softmax readout's gradients and the kernel's, from a carried (nonzero) state."""
    kernel = common.load_cell("lstm")
    params = charlm.init_model(kernel, 5, 3, seed=1)
    rng = np.random.default_rng(2)
    params["W_y"] = rng.standard_normal((5, 3))
    ids = rng.integers(0, 5, (4, 2))
    state = tuple(rng.standard_normal((2, 3)) for _ in kernel.STATES)
    _, grads, _ = charlm.loss_and_grads(kernel, params, ids, state)
    assert_central_differences_agree(lambda: charlm.loss_and_grads(kernel, params, ids, state)[0], params, grads)


def test_charlm_script(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    args = ["--text", str(text), "--steps", "6", "--hidden", "4", "--batch", "2", "--length", "5",
            "--sample", "30", "--quiet", "--save", str(tmp_path / "model.npz")]
    assert charlm.main(args) == 0
    out = capsys.readouterr().out
    assert "uniform: 3.46 bits/char" in out and "held-out bits/char" in out  # 11 distinct characters
    saved = np.load(tmp_path / "model.npz")
    assert "".join(saved["chars"]) == " .acehmnost" and saved["W_y"].shape == (11, 4)
    drawn = out.split("sampled, temperature 0.8:\n")[1].split("\nwrote")[0]
    assert len(drawn) == 30 and set(drawn) <= set(" .acehmnost")


def test_charlm_refuses_a_text_it_cannot_train_on_before_training(tmp_path, capsys):
    short, binary = tmp_path / "short.txt", tmp_path / "binary.txt"
    short.write_text("abcab", encoding="utf-8")
    binary.write_bytes(b"\xff\xfeabc")
    with pytest.raises(SystemExit, match=r"too short: 5 characters, of which the first 90% \(4\) are for training"):
        charlm.main(["--text", str(short), "--batch", "1", "--length", "1", "--quiet"])
    for path, message in [(binary, "not UTF-8 text"), (tmp_path, "a directory, not a file")]:
        with pytest.raises(SystemExit):
            charlm.main(["--text", str(path), "--quiet"])
        assert message in capsys.readouterr().err
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    charlm.main(["--text", str(text), "--steps", "1", "--hidden", "2", "--batch", "2", "--length", "3",
                 "--sample", "0", "--quiet", "--save", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'm.npz'}" in out and (tmp_path / "m.npz").exists()
    assert "sampled" not in out  # --sample 0: no heading over an empty sample


def test_charlm_cross_entropy_stays_finite_where_a_probability_underflows():
    """An unbounded state (rnn_relu's) puts logits 800 apart: the target's probability is 0 in
    floating point, but its -log is 800 nats, not inf (training printed inf bits/char)."""
    logits = np.array([[[0.0, 800.0, -5.0]]])
    assert charlm.cross_entropy(charlm.log_softmax(logits), np.array([[0]])) == pytest.approx(800.0)
    assert np.allclose(charlm.softmax(logits).sum(axis=-1), 1.0)


def test_the_hand_written_kernel_passes_its_check_and_a_slip_in_it_fails(tmp_path, capsys):
    """examples/handwritten_rnn.py, checked as README says; its recurrence's carry dropped, the
    check fails at every step of x but the last."""
    from lstm_derive import cli
    source = EXAMPLES / "handwritten_rnn.py"
    assert cli.main(["check", str(source), "--problems", "12"]) == 0
    assert "handwritten_rnn: passed" in capsys.readouterr().out
    slip = tmp_path / "slipped_rnn.py"
    text = source.read_text()
    carry = "        dh = da[t] @ W_h  # on to h_prev"
    assert carry in text
    slip.write_text(text.replace(carry, "        dh = 0 * (da[t] @ W_h)  # the carry dropped"))
    assert cli.main(["check", str(slip)]) == 1
    out = capsys.readouterr().out
    assert "dx " in out and "(at steps 0-2 of 0-3)" in out, out


def test_the_hand_written_kernel_run_as_a_script_checks_itself(monkeypatch):
    """`python examples/handwritten_rnn.py`, as the other examples are run, ended at once with no
    output; it runs the check its docstring gives (which the test above shows passing)."""
    from lstm_derive import cli
    calls = []
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(argv) or 0)
    source = EXAMPLES / "handwritten_rnn.py"
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(source), run_name="__main__")
    assert stop.value.code == 0 and calls == [["check", str(source), "--problems", "12"]]
    assert "lstm-derive check examples/handwritten_rnn.py --problems 12" in source.read_text()


@pytest.mark.parametrize("module, argv, message", [
    (toy, ["--every", "0"], "argument --every: expected a whole number of at least 1, got '0'"),
    (adding, ["--lengths", "10", "1"], "argument --lengths: expected a whole number of at least 2, got '1'"),
    (adding, ["--clip=-1"], "argument --clip: expected a number of at least 0, got '-1'"),
    (adding, ["--seed=-1"], "argument --seed: expected a whole number of at least 0, got '-1'"),
    (adding, ["--forget-bias", "nan"], "argument --forget-bias: expected a finite number, got 'nan'"),
    (adding, ["--eval-every", "0"], "argument --eval-every: expected a whole number of at least 1"),
    (adding, ["--lr", "-1"], "argument --lr: expected a finite number above 0, got '-1'"),
    (charlm, ["--length", "0"], "argument --length: expected a whole number of at least 1"),
    (charlm, ["--text", "/no/such/file.txt"], "--text /no/such/file.txt: no such file"),
    (vanishing, ["--seeds", "0"], "argument --seeds: expected a whole number of at least 1"),
])
def test_an_option_out_of_range_is_refused_by_the_parser(capsys, module, argv, message):
    with pytest.raises(SystemExit) as stop:
        module.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def readme_adding_row(cell, T):
    """README's adding-problem row of cell at T: its test MSE and the step it fell below 0.01."""
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    (row,) = re.findall(rf"^\| +{cell} \| +{T} \| ([^|]+)\|[^|]+\| ([^|]+)\|", readme, re.M)
    return [entry.strip() for entry in row]


def test_the_readmes_adding_row_of_the_rnn_at_T10_is_what_the_run_gives():
    """The quickest of the table's runs (a few seconds), with the script's defaults: its figures
    move with the kernels' rounding, as the training amplifies it."""
    record = adding.train("rnn", 10, steps=3000, hidden=32, progress=False)
    below = [step for step, mse in record["history"] if mse < 0.01]
    assert readme_adding_row("rnn", 10) == [f"{record['test_mse']:.2e}", str(below[0])]


@pytest.mark.parametrize("held_out, diverged", [(float("nan"), True), (40.0, True), (2.5, False), (2.9, False)])
def test_charlm_says_where_its_training_diverged(tmp_path, capsys, monkeypatch, held_out, diverged):
    """At --lr 1 the held-out text cost 20 to 50 bits per character, or nan, over 4 distinct
    characters (2 bits uniform here), and the script printed the table and its sample unremarked."""
    def trained(cell, text, *, record, **settings):
        kernel = common.load_cell(cell)
        chars = sorted(set(text))
        record.update(cell=cell, chars=chars, params=charlm.init_model(kernel, len(chars), 2, 0), history=[(5, 3.0, held_out)])
        return record

    monkeypatch.setattr(charlm, "train", trained)
    text = tmp_path / "text.txt"
    text.write_text("abcd" * 10, encoding="utf-8")
    assert charlm.main(["--text", str(text), "--sample", "0", "--lr", "1"]) == 0
    out = capsys.readouterr().out
    assert ("the training diverged: try a smaller --lr than 1" in out) == diverged, out


def test_charlm_ctrl_c_before_its_first_report_prints_the_step_it_reached(tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real_loss_and_grads = charlm.loss_and_grads

    def interrupting(*args):
        calls["n"] += 1
        if calls["n"] == 5:  # during step 5 of 20, before the report at step 250
            raise KeyboardInterrupt
        return real_loss_and_grads(*args)

    monkeypatch.setattr(charlm, "loss_and_grads", interrupting)
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    args = ["--text", str(text), "--steps", "20", "--hidden", "4", "--batch", "2", "--length", "5",
            "--sample", "0", "--quiet"]
    assert charlm.main(args) == 130
    out = capsys.readouterr().out
    assert "interrupted: the model so far" in out
    assert re.search(r"^\| +4 \| +\d\.\d{3} \| +\d\.\d{3} \|$", out, re.M)
