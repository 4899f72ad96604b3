"""A hand-written, batched NumPy GRU: the speed reference for the generated gru kernel.

PyTorch's GRU layout, the same as lstm_derive.kernels.gru: W_x (3H, D), b_x (3H,),
U_h (3H, H), b_h (3H,), gate blocks in the order r, z, n; time-major x (T, B, D).

    a_x = W_x x + b_x;  a_h = U_h h_prev + b_h       (blocks r, z, n each)
    r = sigmoid(a_xr + a_hr);  z = sigmoid(a_xz + a_hz)
    n = tanh(a_xn + r * a_hn)
    h = (1 - z) * n + z * h_prev

Written for speed: one input GEMM for all steps before the loop; in the loop one
recurrent GEMM per step, written straight into the cache; the biases of r and z are
folded into the input part once; every elementwise step runs in place in
preallocated buffers; the weight gradients and dx are GEMMs after the loop.

The cache holds per step r, z, n (over the input pre-activations), the recurrent
pre-activations U_h h_prev (+ b_hn on the n block, which the backward pass reads)
and h_prev. backward() overwrites the gate and recurrent blocks with the gradients of
the pre-activations, so a cache serves one backward() call. No abs, maximum or
comparisons: float32, float64 and complex128 (complex step) all work.
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
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
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
    if state is None:
        h[0] = 0
    else:
        h[0] = state[0]
    # input part with b_x, and b_hr, b_hz folded in; b_hn stays inside r * (...)
    bias = b_x.astype(dtype, copy=True)
    bias[:2 * H] += b_h[:2 * H]
    b_hn = b_h[2 * H:]
    gates = (x.reshape(T * B, D) @ W_x.T).astype(dtype, copy=False).reshape(T, B, 3 * H)
    gates += bias
    rec = np.empty((T, B, 3 * H), dtype)   # U_h h_prev, per step
    tmp = np.empty((B, H), dtype)
    U_hT = U_h.T
    with np.errstate(over="ignore"):  # exp(-a) = inf gives the right sigmoid, 0
        for t in range(T):
            g, a_h = gates[t], rec[t]
            np.matmul(h[t], U_hT, out=a_h)
            rz = g[:, :2 * H]
            rz += a_h[:, :2 * H]
            _sigmoid_inplace(rz)
            r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
            a_hn = a_h[:, 2 * H:]
            a_hn += b_hn
            np.multiply(r, a_hn, out=tmp)
            n += tmp
            np.tanh(n, out=n)
            h_new = h[t + 1]
            np.subtract(h[t], n, out=h_new)    # h = n + z * (h_prev - n)
            h_new *= z
            h_new += n
    cache = (x, h, gates, rec)
    return h[1:], (h[T].copy(),), cache


def backward(params, cache, dys, dstate=None):
    """BPTT. Returns ({W_x, b_x, U_h, b_h} grads, dx, (dh_0,)). Consumes the cache."""
    W_x, U_h = params["W_x"], params["U_h"]
    x, h, gates, rec = cache
    T, B, D = x.shape
    H = U_h.shape[1]
    dtype = np.result_type(gates, dys)
    dh = np.empty((B, H), dtype)           # dL/dh_t
    carry = np.zeros((B, H), dtype)        # the part of dL/dh_t from U_h, step t+1
    direct = np.zeros((B, H), dtype)       # the part of dL/dh_t from z * h_prev, step t+1
    if dstate is not None:
        carry[...] = dstate[0]
    t1 = np.empty((B, H), dtype)
    t2 = np.empty((B, H), dtype)
    for t in reversed(range(T)):
        np.add(dys[t], carry, out=dh)
        dh += direct
        g, a_h = gates[t], rec[t]
        r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        a_hn = a_h[:, 2 * H:]
        # the gradients of the pre-activations go where the gates were:
        # gates[t] -> dL/d(a_xr, a_xz, a_xn), rec[t] -> dL/d(a_hr, a_hz, a_hn)
        da_r, da_z, da_hn = a_h[:, :H], a_h[:, H:2 * H], a_hn
        # dz = dh * (h_prev - n);  da_z = dz * z * (1 - z)
        np.subtract(h[t], n, out=da_z)
        da_z *= dh
        np.subtract(1, z, out=t1)
        t1 *= z
        da_z *= t1
        # dn = dh * (1 - z);  da_n = dn * (1 - n^2)
        np.subtract(1, z, out=t1)
        t1 *= dh
        np.multiply(dh, z, out=direct)     # dh * z goes straight to h_prev
        np.multiply(n, n, out=t2)
        np.subtract(1, t2, out=t2)
        t1 *= t2                           # t1 = da_n
        # dr = a_hn * da_n;  da_r = dr * r * (1 - r)
        np.multiply(a_hn, t1, out=da_r)
        np.subtract(1, r, out=t2)
        t2 *= r
        da_r *= t2
        np.multiply(r, t1, out=da_hn)      # dL/da_hn = r * da_n
        n[...] = t1
        g[:, :2 * H] = a_h[:, :2 * H]
        np.matmul(a_h, U_h, out=carry)
    dh_0 = carry + direct
    dgx = gates.reshape(T * B, 3 * H)
    dgh = rec.reshape(T * B, 3 * H)
    grads = {
        "W_x": dgx.T @ x.reshape(T * B, D),
        "b_x": dgx.sum(axis=0),
        "U_h": dgh.T @ h[:-1].reshape(T * B, H),
        "b_h": dgh.sum(axis=0),
    }
    dx = (dgx @ W_x).reshape(T, B, D)
    return grads, dx, (dh_0,)
