"""A hand-written, batched NumPy GRU: the speed reference for the generated gru kernel.

PyTorch's GRU layout, the same as lstm_derive.kernels.gru: W_x (3H, D), b_x (3H,),
U_h (3H, H), b_h (3H,), gate blocks in the order r, z, n; time-major x (T, B, D).

    a_x = W_x x + b_x;  a_h = U_h h_prev + b_h       (blocks r, z, n each)
    r = sigmoid(a_xr + a_hr);  z = sigmoid(a_xz + a_hz)
    n = tanh(a_xn + r * a_hn)
    h = (1 - z) * n + z * h_prev

Written for speed, as a careful engineer writes it: one input GEMM for all steps before
the loop; in the loop one recurrent GEMM per step; the biases of r and z are folded into
the input part once; every elementwise step runs in place in preallocated buffers; every
factor of the backward pass that reads forward values only is formed outside the
recurrence (a chunk of steps at a time, in cache), and no Python number meets an array in
a loop; the weight gradients and dx are GEMMs after the loop. What it does not do are the
generated kernel's own tricks: the sigmoids' signs folded into the weights, gradients
written over the cache.

The cache holds per step r, z, n, U_hn h_prev + b_hn (which the backward pass reads)
and h_prev. No abs, maximum or comparisons: float32, float64 and complex128 (complex
step) all work.
"""
import numpy as np

CELL = "gru"
INPUT = "x"
STATES = ("h",)
OUTPUT = "h"
PARAMS = ("W_x", "b_x", "U_h", "b_h")


def param_shapes(D, H):
    return {"W_x": (3 * H, D), "b_x": (3 * H,), "U_h": (3 * H, H), "b_h": (3 * H,)}


def init_params(D, H, *, seed=0, scale=None, dtype=np.float64):
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(H) if scale is None else scale
    return {k: rng.uniform(-scale, scale, shape).astype(dtype)
            for k, shape in param_shapes(D, H).items()}


def _sigmoid_inplace(a):
    # 1 / (1 + exp(-a)): exact to rounding where it is tiny, and analytic (complex step); exp(-a)
    # overflows to inf far below 0, where 1 / inf = 0 is right (forward() silences that warning)
    np.multiply(a, np.array(-1, a.dtype), out=a)  # not np.negative(a, out=a): NumPy 2.4 gets some strides wrong
    np.exp(a, out=a)
    a += np.array(1, a.dtype)
    np.reciprocal(a, out=a)


def forward(params, x, state=None):
    """Returns ys (T, B, H), (h_T,) and the cache backward reads.

    ys is a view into the cache: copy it before writing into it.
    """
    W_x, b_x, U_h, b_h = (params[k] for k in PARAMS)
    T, B, D = x.shape
    H = U_h.shape[1]
    dtype = np.result_type(x, W_x, b_x, U_h, b_h)
    h = np.empty((T + 1, B, H), dtype)     # h[0] is the initial state
    h[0] = 0 if state is None else state[0]
    # input part with b_x, and b_hr, b_hz folded in; b_hn stays inside r * (...)
    bias = b_x.astype(dtype, copy=True)
    bias[:2 * H] += b_h[:2 * H]
    b_hn = b_h[2 * H:]
    gates = (x.reshape(T * B, D) @ W_x.T).astype(dtype, copy=False).reshape(T, B, 3 * H)
    gates += bias
    a_hn = np.empty((T, B, H), dtype)      # U_hn h_prev + b_hn, per step: the backward pass reads it
    a_h = np.empty((B, 3 * H), dtype)
    tmp = np.empty((B, H), dtype)
    U_hT = U_h.T
    with np.errstate(over="ignore"):  # exp(-a) = inf gives the right sigmoid, 0
        for t in range(T):
            g = gates[t]
            np.dot(h[t], U_hT, out=a_h)
            rz = g[:, :2 * H]
            rz += a_h[:, :2 * H]
            _sigmoid_inplace(rz)
            r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
            np.add(a_h[:, 2 * H:], b_hn, out=a_hn[t])
            np.multiply(r, a_hn[t], out=tmp)
            n += tmp
            np.tanh(n, out=n)
            h_new = h[t + 1]
            np.subtract(h[t], n, out=h_new)    # h = n + z * (h_prev - n)
            h_new *= z
            h_new += n
    cache = (x, h, gates, a_hn)
    return h[1:], (h[T].copy(),), cache


def backward(params, cache, dys, dstate=None):
    """BPTT. Returns ({W_x, b_x, U_h, b_h} grads, dx, (dh_0,)).

    Every factor that reads forward values only is formed before the loop reaches its steps, a
    chunk of steps at a time (about 64 KiB of each (B, H) array, so a chunk's data stays in
    cache), and the loop does the recurrence alone: dh, and the factors times dh."""
    W_x, U_h = params["W_x"], params["U_h"]
    x, h, gates, a_hn = cache
    T, B, D = x.shape
    H = U_h.shape[1]
    dtype = np.result_type(gates, dys)
    one = np.array(1, dtype)
    r, z, n = (gates[..., k * H:(k + 1) * H] for k in range(3))
    da_x = np.empty((T, B, 3 * H), dtype)  # the factors, then dL/d(a_xr, a_xz, a_xn)
    da_r, da_z, da_n = (da_x[..., k * H:(k + 1) * H] for k in range(3))
    da_hn = np.empty((T, B, H), dtype)
    da_h = np.empty((B, 3 * H), dtype)     # one step's dL/d(a_hr, a_hz, a_hn), for one GEMM
    blocks = da_x.reshape(T, B, 3, H)
    dh = np.zeros((B, H), dtype)
    if dstate is not None:
        dh[...] = dstate[0]
    chunk = max(1, 2**16 // (B * H * np.dtype(dtype).itemsize))
    for t1 in range(T, 0, -chunk):
        s = slice(max(t1 - chunk, 0), t1)
        np.multiply(n[s], n[s], out=da_n[s])       # dh/da_n = (1 - z)(1 - n^2)
        np.subtract(one, da_n[s], out=da_n[s])
        np.subtract(one, z[s], out=da_hn[s])
        da_n[s] *= da_hn[s]
        np.multiply(r[s], da_n[s], out=da_hn[s])   # dh/da_hn = r dh/da_n
        np.subtract(one, r[s], out=da_r[s])        # dh/da_r = a_hn r (1 - r) dh/da_n
        da_r[s] *= r[s]
        da_r[s] *= a_hn[s]
        da_r[s] *= da_n[s]
        np.subtract(one, z[s], out=da_z[s])        # dh/da_z = (h_prev - n) z (1 - z)
        da_z[s] *= z[s]
        da_z[s] *= h[s] - n[s]
        for t in reversed(range(s.start, t1)):
            dh += dys[t]
            blocks[t] *= dh[:, np.newaxis]
            da_hn[t] *= dh
            da_h[:, :2 * H] = da_x[t, :, :2 * H]
            da_h[:, 2 * H:] = da_hn[t]
            dh *= z[t]                     # dh z goes straight to h_prev
            dh += np.dot(da_h, U_h)        # carry to h_{t-1}
    dgx = da_x.reshape(T * B, 3 * H)
    h_prev = h[:-1].reshape(T * B, H)
    dU_h = np.empty((3 * H, H), dtype)
    np.matmul(dgx[:, :2 * H].T, h_prev, out=dU_h[:2 * H])
    np.matmul(da_hn.reshape(T * B, H).T, h_prev, out=dU_h[2 * H:])
    db_x = dgx.sum(axis=0)
    grads = {
        "W_x": dgx.T @ x.reshape(T * B, D),
        "b_x": db_x,
        "U_h": dU_h,
        "b_h": np.concatenate([db_x[:2 * H], da_hn.reshape(T * B, H).sum(axis=0)]),
    }
    dx = (dgx @ W_x).reshape(T, B, D)
    return grads, dx, (dh,)
