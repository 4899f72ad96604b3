"""The seed's LSTM (nicodjimenez/lstm), re-implemented step by step, unbatched.

The algorithm is kept as the seed has it: one cell-state object per step,
xc = [x; h_prev], per-step outer products for the weight gradients, and the
carries top_diff_h / top_diff_s between steps. Its cell has no tanh on s:
s = g*i + s_prev*f, h = s*o.

Two switches reproduce the "fixes" the seed's users proposed; both train the
toy example to a lower loss and both have wrong gradients:
  drop_carry=True   ds = o*top_diff_h        (forgets the carry from step t+1)
  tanh_on_s=True    h = tanh(s)*o forward    (backward left as it was)

`KernelAdapter` (and this module itself, for the correct variant) exposes the
project's kernel interface in the lstm_seed layout, so the generic gradient
checker and the benchmarks can use it unchanged.
"""
import numpy as np

GATES = ("g", "i", "f", "o")
WEIGHTS = tuple("w" + k for k in GATES)
BIASES = tuple("b" + k for k in GATES)
VARIANTS = {
    "correct": {},
    "drop_carry": {"drop_carry": True},
    "tanh_on_s": {"tanh_on_s": True},
}


def sigmoid(z):
    # the one departure from the seed, whose sigmoid is 1 / (1 + exp(-z)): the tanh form never
    # overflows and stays analytic for the complex step (and times the same, 1.002 of it)
    return 0.5 + 0.5 * np.tanh(0.5 * z)


class CellState:
    """What one step keeps from its forward pass, and the carries it sends back."""

    def __init__(self, x, s_prev, h_prev):
        self.xc = np.hstack((x, h_prev))
        self.s_prev = s_prev
        self.g = self.i = self.f = self.o = self.s = self.h = None
        self.bottom_diff_h = self.bottom_diff_s = self.bottom_diff_x = None


class SeedLstm:
    """Per-step forward and backward over seed-layout parameters.

    Parameters are a dict wg, wi, wf, wo (H, D+H) and bg, bi, bf, bo (H,).
    """

    def __init__(self, drop_carry=False, tanh_on_s=False):
        self.drop_carry = drop_carry
        self.tanh_on_s = tanh_on_s

    def forward_step(self, p, x, s_prev, h_prev):
        st = CellState(x, s_prev, h_prev)
        st.g = np.tanh(np.dot(p["wg"], st.xc) + p["bg"])
        st.i = sigmoid(np.dot(p["wi"], st.xc) + p["bi"])
        st.f = sigmoid(np.dot(p["wf"], st.xc) + p["bf"])
        st.o = sigmoid(np.dot(p["wo"], st.xc) + p["bo"])
        st.s = st.g * st.i + s_prev * st.f
        st.h = (np.tanh(st.s) if self.tanh_on_s else st.s) * st.o
        return st

    def backward_step(self, p, st, top_diff_h, top_diff_s, diffs):
        """Add this step's weight gradients to `diffs`; set the carries to t-1."""
        ds = st.o * top_diff_h
        if not self.drop_carry:
            ds = ds + top_diff_s
        do = st.s * top_diff_h
        di = st.g * ds
        dg = st.i * ds
        df = st.s_prev * ds
        # through the nonlinearities, in output form
        d_pre = {
            "g": (1.0 - st.g * st.g) * dg,
            "i": st.i * (1.0 - st.i) * di,
            "f": st.f * (1.0 - st.f) * df,
            "o": st.o * (1.0 - st.o) * do,
        }
        dxc = 0
        for k, d in d_pre.items():
            diffs["w" + k] += np.outer(d, st.xc)
            diffs["b" + k] += d
            dxc = dxc + np.dot(p["w" + k].T, d)
        D = st.xc.shape[0] - st.s.shape[0]
        st.bottom_diff_s = ds * st.f
        st.bottom_diff_h = dxc[D:]
        st.bottom_diff_x = dxc[:D]

    def forward(self, p, xs, s0=None, h0=None):
        """Run the steps over a list of input vectors; return the per-step states."""
        H = p["bg"].shape[0]
        dtype = np.result_type(xs[0], *p.values())
        s = np.zeros(H, dtype) if s0 is None else s0
        h = np.zeros(H, dtype) if h0 is None else h0
        states = []
        for x in xs:
            st = self.forward_step(p, x, s, h)
            states.append(st)
            s, h = st.s, st.h
        return states

    def backward(self, p, states, diff_hs, diff_h_T=None, diff_s_T=None):
        """BPTT: diff_hs[t] is the loss's own gradient for h(t).

        Returns the weight diffs; the carries to step -1 are on states[0].
        """
        H = p["bg"].shape[0]
        dtype = np.result_type(states[0].h, diff_hs[0])
        diffs = {k: np.zeros(v.shape, dtype) for k, v in p.items()}
        carry_h = np.zeros(H, dtype) if diff_h_T is None else diff_h_T
        carry_s = np.zeros(H, dtype) if diff_s_T is None else diff_s_T
        for t in reversed(range(len(states))):
            top_diff_h = diff_hs[t] + carry_h
            self.backward_step(p, states[t], top_diff_h, carry_s, diffs)
            carry_h, carry_s = states[t].bottom_diff_h, states[t].bottom_diff_s
        return diffs


# --- layout conversion: seed (4 matrices over xc) <-> lstm_seed kernel ------

def to_seed_params(params, D):
    """Kernel layout (W_x, W_h, b; blocks g,i,f,o) -> seed dict."""
    W = np.hstack((params["W_x"], params["W_h"]))
    H = W.shape[0] // 4
    p = {}
    for n, k in enumerate(GATES):
        p["w" + k] = W[n * H:(n + 1) * H]
        p["b" + k] = params["b"][n * H:(n + 1) * H]
    return p


def from_seed_params(p, D):
    """Seed dict (weights or their diffs) -> kernel layout."""
    W = np.vstack([p[k] for k in WEIGHTS])
    return {"W_x": W[:, :D], "W_h": W[:, D:], "b": np.concatenate([p[k] for k in BIASES])}


class KernelAdapter:
    """The project's kernel interface over the per-step seed algorithm.

    Loops over the batch, one seed run per sequence, and converts layouts at
    the boundary. Works for float and complex arrays.
    """

    CELL = "lstm_seed"
    INPUT = "x"
    STATES = ("h", "s")
    OUTPUT = "h"
    PARAMS = ("W_x", "W_h", "b")

    def __init__(self, variant="correct"):
        self.variant = variant
        self.seed = SeedLstm(**VARIANTS[variant])

    @staticmethod
    def param_shapes(D, H):
        return {"W_x": (4 * H, D), "W_h": (4 * H, H), "b": (4 * H,)}

    def init_params(self, D, H, *, seed=0, scale=None, dtype=np.float64):
        rng = np.random.default_rng(seed)
        scale = 1.0 / np.sqrt(H) if scale is None else scale
        return {k: rng.uniform(-scale, scale, shape).astype(dtype)
                for k, shape in self.param_shapes(D, H).items()}

    def forward(self, params, x, state=None):
        T, B, D = x.shape
        p = to_seed_params(params, D)
        runs = []
        for n in range(B):
            h0, s0 = (None, None) if state is None else (state[0][n], state[1][n])
            runs.append(self.seed.forward(p, list(x[:, n]), s0=s0, h0=h0))
        ys = np.array([[st.h for st in run] for run in runs]).transpose(1, 0, 2)
        h_T = np.array([run[-1].h for run in runs])
        s_T = np.array([run[-1].s for run in runs])
        return ys, (h_T, s_T), (p, D, runs)

    def backward(self, params, cache, dys, dstate=None):
        p, D, runs = cache
        total = None
        dx, dh0, ds0 = [], [], []
        for n, run in enumerate(runs):
            dh_T, ds_T = (None, None) if dstate is None else (dstate[0][n], dstate[1][n])
            diffs = self.seed.backward(p, run, list(dys[:, n]), dh_T, ds_T)
            total = diffs if total is None else {k: total[k] + diffs[k] for k in diffs}
            dx.append([st.bottom_diff_x for st in run])
            dh0.append(run[0].bottom_diff_h)
            ds0.append(run[0].bottom_diff_s)
        dx = np.array(dx).transpose(1, 0, 2)
        return from_seed_params(total, D), dx, (np.array(dh0), np.array(ds0))


_correct = KernelAdapter("correct")
CELL, INPUT, STATES, OUTPUT, PARAMS = (
    KernelAdapter.CELL, KernelAdapter.INPUT, KernelAdapter.STATES,
    KernelAdapter.OUTPUT, KernelAdapter.PARAMS)
param_shapes = _correct.param_shapes
init_params = _correct.init_params
forward = _correct.forward
backward = _correct.backward


# --- the seed's toy example -------------------------------------------------

def toy_setup(x_dim=50, mem_cell_ct=100, n_steps=4):
    """The seed's weights and inputs, drawn in the seed's order.

    The seed's initialiser reseeds to 0 before every array, so the four gate
    matrices start identical; the inputs continue the stream after the last bias.
    """
    rng = np.random.RandomState(0)

    def rand_arr(*shape):
        rng.seed(0)
        return rng.rand(*shape) * 0.2 - 0.1

    p = {k: rand_arr(mem_cell_ct, x_dim + mem_cell_ct) for k in WEIGHTS}
    p.update({k: rand_arr(mem_cell_ct) for k in BIASES})
    xs = [rng.random_sample(x_dim) for _ in range(n_steps)]
    return p, xs


def toy_loss_and_diffs(y_list, states):
    """Squared error on the first unit of h at every step, and its gradients."""
    loss, diff_hs = 0.0, []
    for st, y in zip(states, y_list):
        loss += (st.h[0] - y) ** 2
        d = np.zeros_like(st.h)
        d[0] = 2 * (st.h[0] - y)
        diff_hs.append(d)
    return loss, diff_hs


def toy_example(iterations=100, variant="correct", lr=0.1):
    """Train the seed's toy problem with plain SGD; return the loss per iteration."""
    y_list = [-0.5, 0.2, 0.1, -0.5]
    p, xs = toy_setup(n_steps=len(y_list))
    lstm = SeedLstm(**VARIANTS[variant])
    losses = []
    for _ in range(iterations):
        states = lstm.forward(p, xs)
        loss, diff_hs = toy_loss_and_diffs(y_list, states)
        diffs = lstm.backward(p, states, diff_hs)
        for k in p:
            p[k] -= lr * diffs[k]
        losses.append(loss)
    return losses


if __name__ == "__main__":
    for name in VARIANTS:
        losses = toy_example(variant=name)
        picks = " / ".join(f"{losses[i]:.3e}" for i in (0, 10, 50, 99))
        print(f"{name:>10}: loss at 0/10/50/99 = {picks}")
