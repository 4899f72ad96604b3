"""The cell family: the packaged cells are all generated, the forward passes of those PyTorch has
no module for are their equations written out by hand in NumPy, and a cell the engine never saw
gets the full interface and proven gradients (tests/test_kernels.py proves the packaged kernels').

The property draws sizes, seeds and weight scales (up to saturating ones) and asks
lstm_derive.gradcheck.check_kernel whether every gradient (parameters, x, initial states)
agrees with central differences (1e-6) and the complex step (1e-10), relative to each
array's largest entry.
"""

import importlib
import textwrap

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lstm_derive import cli
from lstm_derive.generate import import_kernel
from lstm_derive.gradcheck import analytic_gradients, check_kernel, random_problem
from lstm_derive.kernels import CELLS, rnn

NUMERIC = ("central", "complex")  # the methods that judge a formula: a factor wrong in every dtype passes float32

FAMILY = {"lstm", "lstm_seed", "rnn", "gru", "gru_cho", "lstm_peephole", "lstm_cifg"}

sizes = dict(
    T=st.integers(1, 5),
    B=st.integers(1, 3),
    D=st.integers(1, 4),
    H=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.1, 3.0),
)


def kernel(name):
    return importlib.import_module(f"lstm_derive.kernels.{name}")


def assert_gradients_agree(k, **config):
    reports = check_kernel(k, **config)
    assume(not any(r.vacuous for r in reports))  # every gradient 0 (a relu off throughout): nothing to judge
    failed = [str(r) for r in reports if not r.ok]
    assert not failed, f"{k.CELL} {config}:\n" + "\n".join(failed)


def test_the_family_is_generated():
    assert FAMILY <= set(CELLS)


class OffByOnePercent:
    """A kernel whose gradient of one parameter is 1% too large."""

    def __init__(self, k, name):
        self.k, self.name = k, name
        for attr in ("CELL", "INPUT", "STATES", "OUTPUT", "PARAMS", "init_params", "forward"):
            setattr(self, attr, getattr(k, attr))

    def backward(self, params, cache, dys, dstate=None):
        grads, dx, dstate0 = self.k.backward(params, cache, dys, dstate)
        return {**grads, self.name: 1.01 * grads[self.name]}, dx, dstate0


def test_saturation_does_not_blind_the_check():
    """In the rnn's saturated corner every gradient is near 1e-9, below what central differences
    resolve; the complex step still sees a 1% error there, and both see it at a moderate scale."""
    saturated = dict(T=1, B=1, D=1, H=1, seed=59182745, scale=3.0)
    gradient = analytic_gradients(rnn, random_problem(rnn, **saturated))
    assert max(np.max(np.abs(g)) for g in gradient.values()) < 1e-8
    central, complex_ = check_kernel(OffByOnePercent(rnn, "b_x"), **saturated, methods=NUMERIC)
    assert central.ok and not complex_.ok
    assert {m.name for m in complex_.mismatches} == {"b_x"}
    for report in check_kernel(OffByOnePercent(rnn, "W_h"), T=3, B=2, D=2, H=3, seed=0, scale=1.0, methods=NUMERIC):
        assert {m.name for m in report.mismatches} == {"W_h"}


# -- the forward equations, written out by hand ------------------------------------------

def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def blocks(a, count):
    return np.split(a, count, axis=-1)


def step_gru_cho(p, x, h):
    a_r, a_z = blocks(x @ p["W_x"].T + h @ p["W_h"].T + p["b"], 2)
    r, z = sigmoid(a_r), sigmoid(a_z)
    n = np.tanh(x @ p["W_n_x"].T + (r * h) @ p["W_n_rh"].T + p["b_n"])
    return ((1 - z) * n + z * h,)


def step_lstm_peephole(p, x, h, c):
    a_i, a_f, a_g, a_o = blocks(x @ p["W_x"].T + h @ p["W_h"].T + p["b"], 4)
    i = sigmoid(a_i + p["p_i"] * c)
    f = sigmoid(a_f + p["p_f"] * c)
    c_new = f * c + i * np.tanh(a_g)
    o = sigmoid(a_o + p["p_o"] * c_new)
    return o * np.tanh(c_new), c_new


def step_lstm_cifg(p, x, h, c):
    a_i, a_g, a_o = blocks(x @ p["W_x"].T + h @ p["W_h"].T + p["b"], 3)
    i = sigmoid(a_i)
    c_new = (1 - i) * c + i * np.tanh(a_g)
    return sigmoid(a_o) * np.tanh(c_new), c_new


def step_mgu(p, x, h):
    f = sigmoid(x @ p["W_f_x"].T + h @ p["W_f_h"].T + p["b_f"])
    n = np.tanh(x @ p["W_n_x"].T + (f * h) @ p["W_n_fh"].T + p["b_n"])
    return ((1 - f) * h + f * n,)


def assert_forward_matches(k, step, seed=3):
    """The kernel's outputs and final state equal the hand-written step, run over time."""
    p = random_problem(k, T=4, B=2, D=3, H=5, seed=seed, scale=1.5)
    ys, final, _ = k.forward(p.params, p.x, p.state)
    state = p.state
    for t in range(p.x.shape[0]):
        state = step(p.params, p.x[t], *state)
        np.testing.assert_allclose(ys[t], state[k.STATES.index(k.OUTPUT)], rtol=1e-12, atol=1e-14)
    for mine, theirs in zip(final, state):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, step", [("gru_cho", step_gru_cho), ("lstm_peephole", step_lstm_peephole),
                                        ("lstm_cifg", step_lstm_cifg)])
def test_forward_is_the_written_equations(name, step):
    assert_forward_matches(kernel(name), step)


# -- a cell the engine never saw ------------------------------------------------------------

MGU = '''
"""Minimal gated unit (Zhou et al. 2016): one gate that both forgets and writes."""

from lstm_derive import Cell, sigmoid, tanh

cell = Cell("mgu", title="Minimal gated unit (Zhou et al. 2016)")
x = cell.input("x")
h_prev = cell.state("h")
(a_f,) = cell.affine("W_f", [x, h_prev], blocks=["a_f"], bias="b_f")
f = cell.let("f", sigmoid(a_f))
fh = cell.let("fh", f * h_prev)
(a_n,) = cell.affine("W_n", [x, fh], blocks=["a_n"], bias="b_n")
n = cell.let("n", tanh(a_n))
cell.update(h=(1 - f) * h_prev + f * n)
'''


@pytest.fixture(scope="module")
def mgu(tmp_path_factory):
    """The MGU, written as a derivation script, generated outside the repository and imported."""
    root = tmp_path_factory.mktemp("mgu")
    script, out = root / "mgu.py", root / "generated"
    script.write_text(textwrap.dedent(MGU), encoding="utf-8")
    assert cli.main(["generate", str(script), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mgu.md", "mgu.py"]
    return import_kernel(out / "mgu.py")


def test_a_new_cell_gets_the_full_interface(mgu):
    assert (mgu.CELL, mgu.STATES, mgu.OUTPUT) == ("mgu", ("h",), "h")
    assert mgu.PARAMS == ("W_f_x", "W_f_h", "b_f", "W_n_x", "W_n_fh", "b_n")
    assert_forward_matches(mgu, step_mgu)


@settings(max_examples=15)
@given(**sizes)
def test_a_new_cell_has_proven_gradients(mgu, T, B, D, H, seed, scale):
    assert_gradients_agree(mgu, T=T, B=B, D=D, H=H, seed=seed, scale=scale)
