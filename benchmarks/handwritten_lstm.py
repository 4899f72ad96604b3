"""A hand-written, batched NumPy LSTM: the speed reference for the generated kernel.

Same interface and layout as lstm_derive.kernels.lstm: W_x (4H, D), W_h (4H, H),
b (4H,), gate blocks in PyTorch order i, f, g, o; time-major x (T, B, D).

    a = W_x x + W_h h_prev + b;  i, f, o = sigmoid;  g = tanh
    c = f*c_prev + i*g;  h = o*tanh(c)

Written for speed, as a careful engineer writes it: the input GEMM runs for all steps
before the loop, the weight gradients are GEMMs after it, the loops work in place in
preallocated buffers, every factor of the backward pass that reads forward values only
is formed outside the recurrence (a chunk of steps at a time, in cache), and no Python
number meets an array in a loop. What it does not do are the generated kernel's own
tricks: the gates' factors folded into the weights, tanh through the sigmoid's exp,
gradients written over the cache. No abs, maximum or comparisons, so float32, float64 and complex128
(complex step) all work.
"""
import numpy as np

CELL = "lstm"
INPUT = "x"
STATES = ("h", "c")
OUTPUT = "h"
PARAMS = ("W_x", "W_h", "b")


def param_shapes(D, H):
    return {"W_x": (4 * H, D), "W_h": (4 * H, H), "b": (4 * H,)}


def init_params(D, H, *, seed=0, scale=None, dtype=np.float64):
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(H) if scale is None else scale
    return {k: rng.uniform(-scale, scale, shape).astype(dtype)
            for k, shape in param_shapes(D, H).items()}


def _blocks(a, H):
    return a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]


def _sigmoid_inplace(a):
    # 1 / (1 + exp(-a)): exact to rounding where it is tiny, and analytic (complex step); exp(-a)
    # overflows to inf far below 0, where 1 / inf = 0 is right (forward() silences that warning)
    np.multiply(a, np.array(-1, a.dtype), out=a)  # not np.negative(a, out=a): NumPy 2.4 gets some strides wrong
    np.exp(a, out=a)
    a += np.array(1, a.dtype)
    np.reciprocal(a, out=a)


def _activate_inplace(a, H):
    """Pre-activations -> gate values; i, f are adjacent so one call covers both."""
    _sigmoid_inplace(a[:, :2 * H])
    np.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
    _sigmoid_inplace(a[:, 3 * H:])


def forward(params, x, state=None):
    """Returns ys (T, B, H), (h_T, c_T) and the cache backward reads.

    ys is a view into the cache: copy it before writing into it.
    """
    W_x, W_h, b = params["W_x"], params["W_h"], params["b"]
    T, B, D = x.shape
    H = W_h.shape[1]
    dtype = np.result_type(x, W_x, W_h, b)
    h = np.empty((T + 1, B, H), dtype)     # h[0] is the initial state
    c = np.empty((T + 1, B, H), dtype)
    h[0], c[0] = (0, 0) if state is None else state
    gates = (x.reshape(T * B, D) @ W_x.T).astype(dtype, copy=False).reshape(T, B, 4 * H)
    gates += b
    tanh_c = np.empty((T, B, H), dtype)
    ig = np.empty((B, H), dtype)
    W_hT = W_h.T
    with np.errstate(over="ignore"):  # exp(-a) = inf gives the right sigmoid, 0
        for t in range(T):
            a = gates[t]
            a += np.dot(h[t], W_hT)
            _activate_inplace(a, H)
            i, f, g, o = _blocks(a, H)
            np.multiply(f, c[t], out=c[t + 1])
            np.multiply(i, g, out=ig)
            c[t + 1] += ig
            np.tanh(c[t + 1], out=tanh_c[t])
            np.multiply(o, tanh_c[t], out=h[t + 1])
    cache = (x, h, c, gates, tanh_c)
    return h[1:], (h[T].copy(), c[T].copy()), cache


def backward(params, cache, dys, dstate=None):
    """BPTT. Returns ({W_x, W_h, b} grads, dx, (dh_0, dc_0)).

    Every factor that reads forward values only is formed before the loop reaches its steps, a
    chunk of steps at a time (about 64 KiB of each (B, H) array, so a chunk's data stays in
    cache), and the loop does the recurrence alone: dh, dc, and the factors times dh or dc."""
    W_x, W_h = params["W_x"], params["W_h"]
    x, h, c, gates, tanh_c = cache
    T, B, D = x.shape
    H = W_h.shape[1]
    dtype = np.result_type(gates, dys)
    one = np.array(1, dtype)
    i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
    da = np.empty((T, B, 4 * H), dtype)    # the factors, then the grads of the pre-activations
    da_i, da_f, da_g, da_o = (da[..., k * H:(k + 1) * H] for k in range(4))
    dh_dc = np.empty((T, B, H), dtype)
    ifg = da.reshape(T, B, 4, H)[:, :, :3]
    dh = np.zeros((B, H), dtype)
    dc = np.zeros((B, H), dtype)
    if dstate is not None:
        dh[...], dc[...] = dstate
    tmp = np.empty((B, H), dtype)
    chunk = max(1, 2**16 // (B * H * np.dtype(dtype).itemsize))
    for t1 in range(T, 0, -chunk):
        s = slice(max(t1 - chunk, 0), t1)
        np.subtract(one, i[s], out=da_i[s])        # dc/da_i = g i (1 - i)
        da_i[s] *= i[s]
        da_i[s] *= g[s]
        np.subtract(one, f[s], out=da_f[s])        # dc/da_f = c_prev f (1 - f)
        da_f[s] *= f[s]
        da_f[s] *= c[s]
        np.multiply(g[s], g[s], out=da_g[s])       # dc/da_g = i (1 - g^2)
        np.subtract(one, da_g[s], out=da_g[s])
        da_g[s] *= i[s]
        np.subtract(one, o[s], out=da_o[s])        # dh/da_o = tanh(c) o (1 - o)
        da_o[s] *= o[s]
        da_o[s] *= tanh_c[s]
        np.multiply(tanh_c[s], tanh_c[s], out=dh_dc[s])  # dh/dc = o (1 - tanh(c)^2)
        np.subtract(one, dh_dc[s], out=dh_dc[s])
        dh_dc[s] *= o[s]
        for t in reversed(range(s.start, t1)):
            dh += dys[t]
            np.multiply(dh_dc[t], dh, out=tmp)
            dc += tmp
            ifg[t] *= dc[:, np.newaxis]
            da_o[t] *= dh
            dc *= f[t]                     # carry to c_{t-1}
            dh = np.dot(da[t], W_h)        # carry to h_{t-1}
    da2 = da.reshape(T * B, 4 * H)
    grads = {
        "W_x": da2.T @ x.reshape(T * B, D),
        "W_h": da2.T @ h[:-1].reshape(T * B, H),
        "b": da2.sum(axis=0),
    }
    dx = (da2 @ W_x).reshape(T, B, D)
    return grads, dx, (dh, dc)
