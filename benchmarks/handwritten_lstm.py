"""A hand-written, batched NumPy LSTM: the speed reference for the generated kernel.

Same interface and layout as lstm_derive.kernels.lstm: W_x (4H, D), W_h (4H, H),
b (4H,), gate blocks in PyTorch order i, f, g, o; time-major x (T, B, D).

    a = W_x x + W_h h_prev + b;  i, f, o = sigmoid;  g = tanh
    c = f*c_prev + i*g;  h = o*tanh(c)

Written for speed: the input GEMM runs for all steps before the loop, the weight
gradients are GEMMs after it, and the loop works in place in preallocated
buffers. No abs, maximum or comparisons, so float32, float64 and complex128
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
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
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
    h = np.zeros((T + 1, B, H), dtype)     # h[0] is the initial state
    c = np.zeros((T + 1, B, H), dtype)
    if state is not None:
        h[0], c[0] = state
    gates = (x.reshape(T * B, D) @ W_x.T).astype(dtype, copy=False).reshape(T, B, 4 * H)
    gates += b
    tanh_c = np.empty((T, B, H), dtype)
    rec = np.empty((B, 4 * H), dtype)
    ig = np.empty((B, H), dtype)
    with np.errstate(over="ignore"):  # exp(-a) = inf gives the right sigmoid, 0
        for t in range(T):
            a = gates[t]
            np.matmul(h[t], W_h.T, out=rec)
            a += rec
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
    """BPTT. Returns ({W_x, W_h, b} grads, dx, (dh_0, dc_0))."""
    W_x, W_h = params["W_x"], params["W_h"]
    x, h, c, gates, tanh_c = cache
    T, B, D = x.shape
    H = W_h.shape[1]
    dtype = np.result_type(gates, dys)
    da = np.empty((T, B, 4 * H), dtype)    # grads of the pre-activations
    dh = np.zeros((B, H), dtype)
    dc = np.zeros((B, H), dtype)
    if dstate is not None:
        dh[...], dc[...] = dstate
    tmp = np.empty((B, H), dtype)
    tmp2 = np.empty((B, 2 * H), dtype)
    for t in reversed(range(T)):
        dh += dys[t]
        _cell_backward(gates[t], c[t], tanh_c[t], dh, dc, da[t], tmp, tmp2, H)
        np.matmul(da[t], W_h, out=dh)      # carry to h_{t-1}
    da2 = da.reshape(T * B, 4 * H)
    grads = {
        "W_x": da2.T @ x.reshape(T * B, D),
        "W_h": da2.T @ h[:-1].reshape(T * B, H),
        "b": da2.sum(axis=0),
    }
    dx = (da2 @ W_x).reshape(T, B, D)
    return grads, dx, (dh, dc)


def _cell_backward(gate, c_prev, tc, dh, dc, da, tmp, tmp2, H):
    """One step: fill da; turn dc into the carry to c_{t-1}. dh is dL/dh_t."""
    i, f, g, o = _blocks(gate, H)
    da_i, da_f, da_g, da_o = _blocks(da, H)
    np.multiply(dh, tc, out=da_o)          # dL/do, before the sigmoid
    # dc += dh * o * (1 - tanh(c)^2)
    np.multiply(tc, tc, out=tmp)
    np.subtract(1, tmp, out=tmp)
    tmp *= o
    tmp *= dh
    dc += tmp
    np.multiply(dc, g, out=da_i)
    np.multiply(dc, c_prev, out=da_f)
    np.multiply(dc, i, out=da_g)
    # through the nonlinearities in output form: y(1-y) for i, f, o; 1-y^2 for g
    _times_sigmoid_slope(da[:, :2 * H], gate[:, :2 * H], tmp2)
    _times_sigmoid_slope(da_o, o, tmp)
    np.multiply(g, g, out=tmp)
    np.subtract(1, tmp, out=tmp)
    da_g *= tmp
    dc *= f


def _times_sigmoid_slope(d, y, tmp):
    np.subtract(1, y, out=tmp)
    tmp *= y
    d *= tmp
