"""The lstm, gru, rnn and rnn_relu kernels are PyTorch's nn.LSTM, nn.GRU and nn.RNN (tanh, relu),
value for value.

For drawn sizes and seeds, in float64: outputs, final states and every gradient (weights,
biases, x, initial states; random upstream gradients on every output and final state) agree
with PyTorch's autograd to 1e-12 relative to each array's largest entry; in float32, both are as
close to the exact result, to within 16 times. The parameters go
torch -> kernel, so the LSTM's two biases are both nonzero and their sum is what is tested.
"""

import copy
import functools
import os
import pathlib
import re
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    import torch
except ImportError:
    if os.environ.get("CI"):  # .ci/run installs torch: without it there, parity would pass unproven
        raise
    pytest.skip("PyTorch parity needs torch: pip install -e '.[torch]'", allow_module_level=True)
import torch.nn.utils.parametrizations  # noqa: E402  (pruned and weight-normed modules' keys)
import torch.nn.utils.prune  # noqa: E402

from lstm_derive import torch_convert as tc  # noqa: E402
from lstm_derive.kernels import gru, lstm, rnn, rnn_relu  # noqa: E402

TOLERANCE = 1e-12  # the worst disagreement measured is 9e-15 (dc0): float64 rounding, summed in another order
CELLS = {"lstm": (lstm, torch.nn.LSTM), "gru": (gru, torch.nn.GRU), "rnn": (rnn, torch.nn.RNN),
         "rnn_relu": (rnn_relu, functools.partial(torch.nn.RNN, nonlinearity="relu"))}
CELL_MODULES = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell,
                "rnn_relu": functools.partial(torch.nn.RNNCell, nonlinearity="relu")}

sizes = dict(
    T=st.integers(1, 5),
    B=st.integers(1, 3),
    D=st.integers(1, 4),
    H=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.25, 2.0),
)


def assert_close(ours, theirs, what):
    """|ours - theirs| <= TOLERANCE * (largest |entry| of either), element by element."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, PyTorch's {theirs.shape}"
    error = relative_error(ours, theirs)
    assert error <= TOLERANCE, f"{what}: max error {error:.2g} of the largest entry"


def relative_error(ours, theirs):
    """max |ours - theirs|, relative to the largest |entry| of either (0 where both are zero), in
    float64; over several arrays, given as lists of them, together."""
    ours, theirs = (np.concatenate([np.ravel(a) for a in v]) if isinstance(v, list) else v for v in (ours, theirs))
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = max(np.max(np.abs(ours), initial=0.0), np.max(np.abs(theirs), initial=0.0))
    return np.max(np.abs(ours - theirs), initial=0.0) / scale if scale else 0.0


def torch_module(name, D, H, seed, scale):
    """PyTorch's own initialisation, scaled, in float64."""
    torch.manual_seed(seed)
    module = CELLS[name][1](D, H, dtype=torch.float64)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)
    return module


@pytest.mark.parametrize("name", sorted(CELLS))
@settings(max_examples=30)
@given(**sizes)
def test_values_and_gradients_equal_pytorchs(name, T, B, D, H, seed, scale):
    assert_same_as_pytorch(name, T, B, D, H, seed, scale)


@pytest.mark.parametrize("name", sorted(CELLS))
@settings(max_examples=15)
@given(**sizes, data=st.data())
def test_lengths_equal_pytorchs_packed_sequences(name, T, B, D, H, seed, scale, data):
    """forward()'s lengths against nn.utils.rnn.pack_padded_sequence: the outputs of every real
    step, each sequence's final state, and every gradient of a loss on both (PyTorch's outputs past
    a sequence's end are zeros that carry no gradient, so their dys are zero here)."""
    lengths = data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B))  # PyTorch takes no 0
    assert_same_as_pytorch(name, T, B, D, H, seed, scale, np.array(lengths))


FLOAT32_ROUNDING = 2.0**-24  # float32's unit roundoff


@pytest.mark.parametrize("name", sorted(CELLS))
@settings(max_examples=20)
@given(**sizes, data=st.data())
def test_float32_is_as_close_to_the_exact_result_as_pytorchs_float32(name, T, B, D, H, seed, scale, data):
    """In float32 the kernel and PyTorch round differently, so each is compared with the exact
    result: PyTorch's in float64 on the same float32 values. The error is taken over the outputs
    together (ys and final states) and over the gradients together, relative to the largest entry
    among them: a small entry that is the difference of large terms (dh0 where H = 1) keeps few
    digits in either, by chance more in one, and an error relative to itself would judge that
    chance. Either's error grows with the problem's conditioning, which PyTorch's own error
    measures: the kernel's is within 16 times PyTorch's (4 bits), or 16 times 8 roundings where
    PyTorch happens to be exact to a few bits."""
    lengths = data.draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B).map(np.array))
    module = torch_module(name, D, H, seed, scale).float()
    problem = draw_problem(name, T, B, D, H, seed, lengths, dtype=np.float32)
    exact = pytorch_results(name, copy.deepcopy(module).double(), *in_float64(*problem))
    ours, theirs = kernel_results(name, module, *problem), pytorch_results(name, module, *problem)
    assert all(ours[what].dtype == np.float32 for what in ours)
    gradients = [what for what in exact if what.startswith("d")]
    for group in ([what for what in exact if what not in gradients], gradients):
        mine, pytorchs = (relative_error([r[what] for what in group], [exact[what] for what in group])
                          for r in (ours, theirs))
        assert mine <= 16 * max(pytorchs, 8 * FLOAT32_ROUNDING), (
            f"{', '.join(group)}: float32 error {mine:.2g} of the largest entry, PyTorch's {pytorchs:.2g}")


def in_float64(x, state, dys, dstate, lengths):
    wider = functools.partial(np.asarray, dtype=np.float64)
    return wider(x), tuple(map(wider, state)), wider(dys), tuple(map(wider, dstate)), lengths


def assert_same_as_pytorch(name, T, B, D, H, seed, scale, lengths=None):
    """The kernel and PyTorch's module on the same weights, inputs and upstream gradients: outputs,
    final states and every gradient; with lengths, the kernel's against PyTorch's packed sequences."""
    module = torch_module(name, D, H, seed, scale)
    problem = draw_problem(name, T, B, D, H, seed, lengths)
    ours, theirs = kernel_results(name, module, *problem), pytorch_results(name, module, *problem)
    for what in theirs:
        assert_close(ours[what], theirs[what], what)


def draw_problem(name, T, B, D, H, seed, lengths=None, dtype=np.float64):
    """x, an initial state, upstream gradients of every output (zero past each sequence's end:
    PyTorch's outputs there are zeros that carry no gradient) and of the final state, and lengths."""
    kernel, _ = CELLS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in kernel.STATES)
    dys = (rng.standard_normal((T, B, H)) * real_steps(T, B, lengths)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in kernel.STATES)
    return x, state, dys, dstate, lengths


def real_steps(T, B, lengths):
    """(T, B, 1): 1 at every step of a sequence, 0 past its end."""
    return np.ones((T, B, 1)) if lengths is None else (np.arange(T)[:, np.newaxis] < lengths)[:, :, np.newaxis]


def kernel_results(name, module, x, state, dys, dstate, lengths):
    """The kernel's outputs (zero past each sequence's end, as PyTorch's), final states and
    gradients, on the module's parameters in x's dtype, under the names pytorch_results gives."""
    kernel, _ = CELLS[name]
    params = {k: v.astype(x.dtype) for k, v in tc.from_torch(name, module).items()}
    ys, final, cache = kernel.forward(params, x, state, lengths=lengths)
    grads, dx, dstate0 = kernel.backward(params, cache, dys, dstate)
    results = {"ys": ys * real_steps(*x.shape[:2], lengths).astype(x.dtype), "dx": dx}
    for s, mine, dmine in zip(kernel.STATES, final, dstate0):
        results[f"final {s}"], results[f"d{s}0"] = mine, dmine
    ours = dict(zip(tc.KEYS, tc.LAYOUTS[name].names))
    ours["bias_hh_l0"] = ours["bias_hh_l0"] or ours["bias_ih_l0"]  # lstm: b = bias_ih + bias_hh
    for key, p in ours.items():
        results[f"d{p} (PyTorch's {key})"] = grads[p]
    return results


def pytorch_results(name, module, x, state, dys, dstate, lengths):
    """The module's autograd on the loss sum(dys * ys) + sum(dstate * final state), in x's dtype."""
    kernel, _ = CELLS[name]
    module.zero_grad(set_to_none=True)
    tx = torch.tensor(x, requires_grad=True)
    tstate = [torch.tensor(s[np.newaxis], requires_grad=True) for s in state]  # (layers, B, H)
    tin = tx if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths),
                                                                             enforce_sorted=False)
    tys, tfinal = module(tin, tuple(tstate) if name == "lstm" else tstate[0])
    if lengths is not None:
        tys, _ = torch.nn.utils.rnn.pad_packed_sequence(tys, total_length=len(x))
    tfinal = tfinal if name == "lstm" else (tfinal,)
    loss = (tys * torch.from_numpy(dys)).sum()
    for s, ds in zip(tfinal, dstate):
        loss = loss + (s[0] * torch.from_numpy(ds)).sum()
    loss.backward()
    results = {"ys": tys.detach().numpy(), "dx": tx.grad.numpy()}
    for s, theirs, dtheirs in zip(kernel.STATES, tfinal, tstate):
        results[f"final {s}"], results[f"d{s}0"] = theirs[0].detach().numpy(), dtheirs.grad[0].numpy()
    ours = dict(zip(tc.KEYS, tc.LAYOUTS[name].names))
    for key, p in module.named_parameters():
        results[f"d{ours[key] or ours['bias_ih_l0']} (PyTorch's {key})"] = p.grad.numpy()
    return results


@pytest.mark.parametrize("name", sorted(CELLS))
@settings(max_examples=20)
@given(D=sizes["D"], H=sizes["H"], seed=sizes["seed"], dtype=st.sampled_from([np.float32, np.float64]))
def test_round_trip_is_exact(name, D, H, seed, dtype):
    kernel, module_class = CELLS[name]
    params = kernel.init_params(D, H, seed=seed, scale=1.0, dtype=dtype)
    state_dict = tc.to_torch(name, params)
    assert list(state_dict) == list(tc.KEYS)
    module_class(D, H, dtype=getattr(torch, np.dtype(dtype).name)).load_state_dict(state_dict)  # strict: keys fit
    back = tc.from_torch(name, state_dict, input_size=D, hidden_size=H)
    assert list(back) == list(kernel.PARAMS)
    for p in kernel.PARAMS:
        assert back[p].dtype == dtype
        np.testing.assert_array_equal(back[p], params[p])
        assert not np.shares_memory(back[p], params[p])


def test_lstm_biases_sum_one_way_and_go_to_bias_ih_the_other():
    module = torch_module("lstm", 3, 2, seed=0, scale=1.0)
    sd = module.state_dict()
    params = tc.lstm_from_torch(sd)
    np.testing.assert_array_equal(params["b"], (sd["bias_ih_l0"] + sd["bias_hh_l0"]).numpy())
    back = tc.lstm_to_torch(params)
    np.testing.assert_array_equal(back["bias_ih_l0"].numpy(), params["b"])
    assert not back["bias_hh_l0"].any()


def test_gru_and_rnn_keep_both_biases():
    for name in ("gru", "rnn", "rnn_relu"):
        sd = torch_module(name, 3, 2, seed=1, scale=1.0).state_dict()
        back = tc.to_torch(name, tc.from_torch(name, sd))
        for key in tc.KEYS:
            assert torch.equal(back[key], sd[key]), (name, key)


def test_a_module_without_biases_has_zero_biases():
    params = tc.rnn_from_torch(torch.nn.RNN(3, 2, bias=False, dtype=torch.float64))
    assert not params["b_x"].any() and not params["b_h"].any()


def test_torch_module_runs_the_kernels_parameters():
    params = gru.init_params(3, 4, seed=2)
    x = np.random.default_rng(2).standard_normal((4, 2, 3))
    ys, _, _ = gru.forward(params, x)
    tys, _ = tc.torch_module("gru", params)(torch.from_numpy(x))
    assert_close(ys, tys.detach().numpy(), "ys")


# -- what does not convert ----------------------------------------------------------------------

def state_dict(module_class, *args, **kwargs):
    return module_class(*args, **kwargs).state_dict()


def with_entry(sd, key, value):
    """sd with key set to value, or dropped where value is None (in place: sd is made for it)."""
    if value is None:
        del sd[key]
    else:
        sd[key] = value
    return sd


def lstm_with(key, value):
    return with_entry(torch.nn.LSTM(3, 4).state_dict(), key, value)


WRONG = [
    ("lstm", state_dict(torch.nn.GRU, 3, 4), r"3 \* H rows, a GRU's; expected nn.LSTM's \(4 \* H, H\) = \(16, 4\)"),
    ("gru", state_dict(torch.nn.LSTM, 3, 4), r"4 \* H rows, an LSTM's; expected nn.GRU's \(3 \* H, H\)"),
    ("rnn", state_dict(torch.nn.GRU, 3, 4), r"a GRU's; expected nn.RNN's \(H, H\)"),
    ("lstm", torch.nn.GRU(3, 4), r"expected a torch.nn.LSTM, got a GRU"),
    ("lstm", state_dict(torch.nn.LSTM, 3, 4, num_layers=2), r"expected one layer .*layers \[0, 1\]"),
    ("gru", torch.nn.GRU(3, 4, num_layers=3), r"expected num_layers=1, got 3: .*from_torch\(\.\.\., layer=k\), k = 0 to 2"),
    ("lstm", torch.nn.LSTM(3, 4, dtype=torch.bfloat16), r"weight_ih_l0: dtype torch.bfloat16 has no NumPy counterpart"),
    ("lstm", state_dict(torch.nn.LSTM, 3, 4, bidirectional=True), r"one-directional .*bidirectional=True"),
    ("rnn", torch.nn.RNN(3, 4, bidirectional=True), r"one-directional .*bidirectional=True"),
    ("lstm", state_dict(torch.nn.LSTM, 3, 4, proj_size=2), r"without projection; .*weight_hr_l0"),
    ("lstm", torch.nn.LSTM(3, 4, proj_size=2), r"expected proj_size=0, got 2"),
    ("rnn", torch.nn.RNN(3, 4, nonlinearity="relu"), r"nonlinearity='tanh'; this one uses 'relu': .* rnn_relu kernel"),
    ("rnn_relu", torch.nn.RNN(3, 4), r"nonlinearity='relu'; this one uses 'tanh': .* the rnn kernel"),
    ("rnn_relu", torch.nn.GRU(3, 4), r"expected a torch.nn.RNN, got a GRU"),
    ("lstm", lstm_with("bias_hh_l0", torch.zeros(12)), r"bias_hh_l0: expected shape \(16,\) .* got \(12,\)"),
    ("lstm", lstm_with("weight_ih_l0", torch.zeros(12, 3)), r"weight_ih_l0: expected shape \(16, 3\)"),
    ("lstm", lstm_with("bias_hh_l0", None), r"missing: bias_hh_l0"),
    ("lstm", lstm_with("weight_hh_l0", None), r"missing: weight_hh_l0"),
    ("lstm", lstm_with("scale", torch.zeros(1)), r"unknown keys: scale"),
    ("lstm", None, r"expected an nn.LSTM \(or its cell module\) or its state_dict, got NoneType"),
    ("gru", torch.nn.GRU, r"expected an nn.GRU module or its state_dict, got the class torch.nn.modules.rnn.GRU itself"),
    ("gru", torch.nn.utils.prune.l1_unstructured(torch.nn.GRU(3, 4), "weight_hh_l0", 0.5),
     r"unknown keys: weight_hh_l0_orig, weight_hh_l0_mask; a pruned module .*prune.remove\(module, name\) first"),
    ("gru", torch.nn.utils.parametrizations.weight_norm(torch.nn.GRU(3, 4), "weight_hh_l0"),
     r"unknown keys: parametrizations.weight_hh_l0.original0, .*remove_parametrizations\(module, name\) first"),
    ("lstm", lstm_with("weight_ih_l0", torch.zeros(16, 3, dtype=torch.float64)),
     r"expected every parameter in one dtype \(a module holds one\), got weight_ih_l0 float64, weight_hh_l0 float32"),
    ("lstm", torch.nn.LSTM(3, 4, num_layers=2), r"^layer: expected a layer's index, 0 or more, got '1'$"),
    ("lstm", torch.nn.LSTM(3, 4, device="meta"), r"weight_ih_l0: a tensor on the meta device .*assign=True"),
    ("gru", torch.nn.GRU(3, 4, device="meta").state_dict(), r"weight_ih_l0: a tensor on the meta device"),
    ("rnn", {k: v.to_sparse() for k, v in torch.nn.RNN(3, 4).state_dict().items()},
     r"weight_ih_l0: expected a dense tensor, got a sparse one; convert it with .to_dense\(\) first"),
]


@pytest.mark.parametrize("name, source, message", WRONG)
def test_what_does_not_convert_says_what_was_expected(name, source, message):
    with pytest.raises(ValueError, match=message):
        tc.from_torch(name, source, **({"layer": "1"} if message.startswith("^layer") else {}))


@pytest.mark.parametrize("name, source, kwargs, message", [
    ("lstm", with_entry(torch.nn.LSTMCell(3, 4).state_dict(), "weight_hh", torch.zeros(12, 4)), {},
     r"^weight_hh has shape \(12, 4\): 3 \* H rows, a GRU's; expected nn.LSTMCell's"),
    ("rnn", with_entry(torch.nn.RNNCell(3, 4).state_dict(), "weight_hh", None), {},
     r"^expected the keys weight_ih, weight_hh, bias_ih, bias_hh of an nn.RNNCell; missing: weight_hh$"),
    ("gru", with_entry(torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).state_dict(), "bias_hh_l1_reverse",
                  torch.zeros(5)), dict(layer=1, reverse=True), r"^bias_hh_l1_reverse: expected shape \(12,\)"),
    ("lstm", with_entry(torch.nn.LSTM(3, 4, num_layers=2).state_dict(), "weight_ih_l1", torch.zeros(16, 4).double()),
     dict(layer=1), r"got weight_ih_l1 float64, weight_hh_l1 float32"),
])
def test_what_does_not_convert_is_named_by_the_callers_keys(name, source, kwargs, message):
    """A cell module's keys have no _l0, a stack's layer k has _lk: the message names the key given."""
    with pytest.raises(ValueError, match=message):
        tc.from_torch(name, source, **kwargs)


def test_gradients_convert_to_each_of_a_modules_two_biases():
    """The lstm kernel's one bias b stands for PyTorch's bias_ih + bias_hh: its gradient is each
    one's. gradients=True writes it to both, so the kernel's gradients equal the module's .grad."""
    module = torch_module("lstm", 3, 2, seed=0, scale=1.0)
    params = tc.lstm_from_torch(module)
    rng = np.random.default_rng(0)
    x, dys = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 2))
    ys, _, cache = lstm.forward(params, x)
    grads = lstm.backward(params, cache, dys)[0]
    out, _ = module(torch.from_numpy(x))
    out.backward(torch.from_numpy(dys))
    converted = tc.to_torch("lstm", grads, gradients=True)
    for key, value in module.named_parameters():
        assert_close(converted[key].numpy(), value.grad.numpy(), key)
    assert not tc.to_torch("lstm", grads)["bias_hh_l0"].any()  # as parameters: the sum in bias_ih alone


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_stack_converts_layer_by_layer(name):
    """Layer 1's kernel on layer 0's outputs is the two-layer module, from it or its state_dict."""
    kernel, module_class = CELLS[name]
    torch.manual_seed(0)
    stack = module_class(3, 4, num_layers=2, dtype=torch.float64)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    ys0, _, _ = kernel.forward(tc.from_torch(name, stack, layer=0), x)
    ys1, _, _ = kernel.forward(tc.from_torch(name, stack.state_dict(), layer=1), ys0)
    expected, _ = stack(torch.tensor(x))
    assert_close(ys1, expected.detach().numpy(), f"{name} layer 1")
    with pytest.raises(ValueError, match=r"layer: expected 0 to 1 \(num_layers=2\), got 2"):
        tc.from_torch(name, stack, layer=2)
    with pytest.raises(ValueError, match=r"layer: this state_dict has no layer 2 \(its layers: \[0, 1\]\)"):
        tc.from_torch(name, stack.state_dict(), layer=2)
    with pytest.raises(ValueError, match=r"bidirectional=True"):
        tc.from_torch(name, module_class(3, 4, num_layers=2, bidirectional=True).state_dict(), layer=1)


def test_a_stack_with_dropout_is_the_kernels_in_eval_mode():
    torch.manual_seed(3)
    stack = torch.nn.GRU(3, 4, num_layers=2, dropout=0.5, dtype=torch.float64)
    x = np.random.default_rng(3).standard_normal((5, 2, 3))
    ys0, _, _ = gru.forward(tc.from_torch("gru", stack, layer=0), x)
    ys1, _, _ = gru.forward(tc.from_torch("gru", stack, layer=1), ys0)
    training, _ = stack(torch.tensor(x))
    assert relative_error(ys1, training.detach().numpy()) > 1e-3  # dropout's noise, which the kernels lack
    expected, _ = stack.eval()(torch.tensor(x))
    assert_close(ys1, expected.detach().numpy(), "layer 1, eval mode")


def test_the_readmes_pytorch_example_runs():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## PyTorch\n"):]
    examples = re.findall(r"```python\n(.*?)```", section[:section.index("\n## ", 5)], re.S)
    assert any("torch_steps" in example for example in examples)  # training in turns, after the conversion
    namespace = {}
    for example in examples:
        exec(compile(example, "README.md (PyTorch)", "exec"), namespace)


def test_sizes_can_be_required():
    sd = torch.nn.GRU(3, 4).state_dict()
    with pytest.raises(ValueError, match=r"expected input_size 5, got 3"):
        tc.gru_from_torch(sd, input_size=5)
    with pytest.raises(ValueError, match=r"expected hidden_size 2, got 4"):
        tc.gru_from_torch(sd, hidden_size=2)


def test_wrong_kernel_parameters_do_not_convert():
    params = lstm.init_params(3, 4)
    with pytest.raises(ValueError, match=r"expected the gru kernel's parameters .*missing \['b_x', 'U_h', 'b_h'\]"):
        tc.gru_to_torch(params)
    with pytest.raises(ValueError, match=r"^the lstm kernel's parameters: b: expected shape \(4 \* H,\) = \(16,\) "
                                         r"\(D = 3 and H = 4 read off W_x\), got \(15,\)$"):
        tc.lstm_to_torch({**params, "b": params["b"][:-1]})
    with pytest.raises(ValueError, match=r"W_x \(16, 3\) and W_h \(4, 16\) disagree on H"):  # W_h transposed: named
        tc.lstm_to_torch({**params, "W_h": params["W_h"].T})
    with pytest.raises(ValueError, match=r"no PyTorch module corresponds to the cell 'lstm_peephole'"):
        tc.to_torch("lstm_peephole", params)


def test_to_torch_takes_parameters_as_the_kernels_do():
    """Beside a readout's weights, in '>f8', or as tensors that require grad: what a kernel takes."""
    params = lstm.init_params(3, 4)
    expected = tc.to_torch("lstm", params)
    module = torch.nn.LSTM(3, 4, dtype=torch.float64)
    for taken in ({**params, "W_y": np.ones((2, 4))},
                  {k: v.astype(">f8") for k, v in params.items()},
                  {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in params.items()}):
        got = tc.to_torch("lstm", taken)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in got)
        module.load_state_dict(got)  # torch takes it as it takes its own


def test_without_torch_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[torch\]"'):
        tc.rnn_to_torch(rnn.init_params(2, 3))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_bidirectional_stack_converts_by_layer_and_direction_both_ways(name):
    """Each layer's two directions as kernels (the reverse one over x[::-1]), their outputs side by
    side as the next layer's input, are the module; to_torch's entries rebuild its state_dict."""
    kernel, module_class = CELLS[name]
    torch.manual_seed(1)
    stack = module_class(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    params = {(k, r): tc.from_torch(name, stack, layer=k, reverse=r) for k in (0, 1) for r in (False, True)}
    inputs = x
    for k in (0, 1):
        forward, _, _ = kernel.forward(params[k, False], inputs)
        backward, _, _ = kernel.forward(params[k, True], inputs[::-1])
        inputs = np.concatenate([forward, backward[::-1]], axis=2)
    expected, _ = stack(torch.tensor(x))
    assert_close(inputs, expected.detach().numpy(), f"{name}, two layers, both directions")
    merged = {}
    for (k, r), p in params.items():
        merged.update(tc.to_torch(name, p, layer=k, reverse=r))
    original = stack.state_dict()
    assert sorted(merged) == sorted(original)
    if name != "lstm":  # the lstm's two biases come back as their sum in bias_ih
        assert all(torch.equal(merged[key], original[key]) for key in original)
    with pytest.raises(ValueError, match=r"reverse=True: these parameters have no \*_reverse keys"):
        tc.from_torch(name, module_class(3, 4), reverse=True)
    with pytest.raises(ValueError, match=r"expected one layer .*layers \[0, 1\]"):
        tc.from_torch(name, stack.state_dict(), reverse=True)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_module_without_biases_converts_both_ways(name):
    kernel, module_class = CELLS[name]
    module = module_class(3, 4, bias=False, dtype=torch.float64)
    params = tc.from_torch(name, module)
    back = module_class(3, 4, bias=False, dtype=torch.float64)
    back.load_state_dict(tc.to_torch(name, params, bias=False))
    assert all(torch.equal(back.state_dict()[k], module.state_dict()[k]) for k in module.state_dict())
    assert "bias_ih_l0" not in tc.torch_module(name, params, bias=False).state_dict()
    with pytest.raises(ValueError, match=r"bias=False: .* biases are zero; the largest \|entry\| of .*: set them to zero"):
        tc.to_torch(name, kernel.init_params(3, 4), bias=False)
    # backward() gives a bias gradient all the same; a bias-free module's gradients leave it out
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    ys, _, cache = kernel.forward(params, x)
    grads = tc.to_torch(name, kernel.backward(params, cache, np.ones_like(ys))[0], bias=False, gradients=True)
    module(torch.from_numpy(x))[0].sum().backward()
    assert set(grads) == {"weight_ih_l0", "weight_hh_l0"}
    for k in grads:  # of each array's largest entry, as every comparison here: an entry near 0 differs in its last bits
        assert_close(grads[k].numpy(), getattr(module, k).grad.numpy(), k)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_cell_module_is_one_step_of_the_kernel(name):
    kernel, _ = CELLS[name]
    module = CELL_MODULES[name](3, 4, dtype=torch.float64)
    params = tc.from_torch(name, module)
    x = np.random.default_rng(2).standard_normal((2, 3))
    state = tuple(np.random.default_rng(3 + j).standard_normal((2, 4)) for j in range(len(kernel.STATES)))
    y, new_state, _ = kernel.step_forward(params, x, state)
    got = module(torch.tensor(x), tuple(map(torch.tensor, state)) if len(state) > 1 else torch.tensor(state[0]))
    assert_close(y, (got[0] if isinstance(got, tuple) else got).detach().numpy(), f"{name} cell")
    assert tc.from_torch(name, module.state_dict()).keys() == params.keys()
    with pytest.raises(ValueError, match=r"nonlinearity='tanh'"):
        tc.from_torch("rnn", torch.nn.RNNCell(3, 4, nonlinearity="relu"))
    with pytest.raises(ValueError, match=r"nonlinearity='relu'"):
        tc.from_torch("rnn_relu", torch.nn.RNNCell(3, 4))
    again = CELL_MODULES[name](3, 4, dtype=torch.float64)
    again.load_state_dict(tc.to_torch(name, params, cell_module=True))  # strict: every key, none other
    for key, value in tc.from_torch(name, again).items():  # lstm's two biases come back as their sum
        np.testing.assert_array_equal(value, params[key])
    with pytest.raises(ValueError, match=r"cell_module=True: a cell module is one layer"):
        tc.to_torch(name, params, cell_module=True, layer=1)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_cell_modules_gradients_are_step_backwards(name):
    """A loss on the new state (h and c for an LSTMCell): step_backward's gradients are autograd's,
    those of weight_ih, ..., the previous state and x, through to_torch(..., cell_module=True)."""
    kernel, _ = CELLS[name]
    module = CELL_MODULES[name](3, 4, dtype=torch.float64)
    params = tc.from_torch(name, module)
    rng = np.random.default_rng(4)
    x, state, dstate = rng.standard_normal((2, 3)), *(
        tuple(rng.standard_normal((2, 4)) for _ in kernel.STATES) for _ in range(2))
    _, new_state, cache = kernel.step_forward(params, x, state)
    grads, dx, dstate_prev = kernel.step_backward(params, cache, None, dstate)
    tx, tstate = torch.tensor(x, requires_grad=True), [torch.tensor(s, requires_grad=True) for s in state]
    got = module(tx, tuple(tstate) if len(tstate) > 1 else tstate[0])
    got = got if isinstance(got, tuple) else (got,)
    sum((g * torch.from_numpy(d)).sum() for g, d in zip(got, dstate)).backward()
    for s, mine, theirs in zip(kernel.STATES, new_state, got):
        assert_close(mine, theirs.detach().numpy(), f"new {s}")
    assert_close(dx, tx.grad.numpy(), "dx")
    for s, mine, theirs in zip(kernel.STATES, dstate_prev, tstate):
        assert_close(mine, theirs.grad.numpy(), f"d{s}_prev")
    converted = tc.to_torch(name, grads, gradients=True, cell_module=True)
    assert converted.keys() == dict(module.named_parameters()).keys()
    for key, value in module.named_parameters():
        assert_close(converted[key].numpy(), value.grad.numpy(), key)


def reversed_rows(a, lengths):
    """README's: each row's first lengths[b] steps in reverse order, its padding where it is."""
    lengths, t = np.asarray(lengths, np.int64), np.arange(len(a))[:, np.newaxis]
    return np.take_along_axis(a, np.where(t < lengths, lengths - 1 - t, t)[:, :, np.newaxis], axis=0)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_bidirectional_batch_first_module_on_a_packed_sequence_is_two_kernels_with_lengths(name):
    """As README says: the reverse direction runs over each row reversed within its length, a
    batch_first module's inputs are transposed to (T, B, D); outputs, final states, dx and every
    parameter's gradient (to_torch with reverse=True for the reverse direction's) are autograd's."""
    kernel, module_class = CELLS[name]
    torch.manual_seed(2)
    module = module_class(3, 4, bidirectional=True, batch_first=True, dtype=torch.float64)
    rng = np.random.default_rng(2)
    lengths, x_batch_first = np.array([6, 2, 4]), rng.standard_normal((3, 6, 3))
    x = x_batch_first.transpose(1, 0, 2)
    real = real_steps(6, 3, lengths)
    dys = rng.standard_normal((6, 3, 8)) * real
    ours = {}
    for reverse, half in ((False, slice(0, 4)), (True, slice(4, 8))):
        turn = functools.partial(reversed_rows, lengths=lengths) if reverse else (lambda a: a)
        params = tc.from_torch(name, module, reverse=reverse)
        ys, final, cache = kernel.forward(params, turn(x), lengths=lengths)
        grads, dx, _ = kernel.backward(params, cache, turn(dys[:, :, half]))
        ours[reverse] = turn(ys) * real, final[0], turn(dx)
        ours.update(tc.to_torch(name, grads, reverse=reverse, gradients=True))
    tx = torch.tensor(x_batch_first, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    tys, tfinal = module(packed)
    tys, _ = torch.nn.utils.rnn.pad_packed_sequence(tys, batch_first=True, total_length=6)
    (tys * torch.from_numpy(dys.transpose(1, 0, 2))).sum().backward()
    th = (tfinal[0] if name == "lstm" else tfinal).detach().numpy()
    assert_close(np.concatenate([ours[False][0], ours[True][0]], axis=2), tys.detach().numpy().transpose(1, 0, 2), "ys")
    assert_close(ours[False][1], th[0], "final h")
    assert_close(ours[True][1], th[1], "final h, reverse")
    assert_close(ours[False][2] + ours[True][2], tx.grad.numpy().transpose(1, 0, 2), "dx")
    for key, value in module.named_parameters():
        assert_close(ours[key].numpy(), value.grad.numpy(), key)


def test_to_torch_writes_into_a_model_holding_the_module_with_its_prefix():
    model = torch.nn.Sequential(torch.nn.LSTM(3, 4, dtype=torch.float64), torch.nn.Identity())
    params = lstm.init_params(3, 4, seed=5)
    missing, unexpected = model.load_state_dict(tc.to_torch("lstm", params, prefix="0."), strict=False)
    assert not missing and not unexpected
    assert tc.from_torch("lstm", model[0]).keys() == params.keys()
    np.testing.assert_array_equal(tc.from_torch("lstm", model[0])["W_h"], params["W_h"])


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch.compile's imports
def test_a_compiled_module_converts_as_the_module_it_compiled():
    module = torch.nn.GRU(3, 4, dtype=torch.float64)
    got = tc.from_torch("gru", torch.compile(module))  # compiling is lazy: nothing runs here
    for key, value in tc.from_torch("gru", module).items():
        np.testing.assert_array_equal(got[key], value)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # eager quantization's deprecation
def test_a_quantized_module_is_named_with_its_package():
    """Its class is named LSTM too: the message would read "expected a torch.nn.LSTM, got a LSTM"."""
    quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.LSTM(3, 4)), dtype=torch.qint8)[0]
    with pytest.raises(ValueError, match=r"expected a torch.nn.LSTM or LSTMCell, got a torch\.ao\..*quantized.*\.LSTM$"):
        tc.from_torch("lstm", quantized)


def test_a_model_holding_the_module_says_which_to_pass():
    """A model's state_dict (a readout beside a two-layer LSTM) or the model itself: the message
    names the recurrent part, before any advice about layers."""
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = torch.nn.LSTM(3, 4, num_layers=2), torch.nn.Linear(4, 1)

    for layer in (None, 1):
        with pytest.raises(ValueError, match=r"have the prefix 'rnn\.': pass that submodule"):
            tc.from_torch("lstm", Model().state_dict(), layer=layer)
    with pytest.raises(ValueError, match=r"got a Model; it holds rnn \(LSTM\): pass that submodule"):
        tc.from_torch("lstm", Model())
    assert tc.from_torch("lstm", Model().rnn, layer=1).keys() == {"W_x", "W_h", "b"}


def test_to_torch_takes_float_parameters_of_one_dtype():
    params = gru.init_params(3, 4)
    for bad, got in [({**params, "b_x": params["b_x"].astype(np.float32)}, "float32, float64"),
                     ({k: (10 * v).astype(int) for k, v in params.items()}, "int64"),
                     ({k: v.astype(complex) for k, v in params.items()}, "complex128")]:
        with pytest.raises(ValueError, match=rf"float16, float32 or float64, all of one dtype .*got {got}"):
            tc.to_torch("gru", bad)
    with pytest.raises(ValueError, match=r"^W_x: dtype torch.bfloat16 has no NumPy counterpart"):
        tc.to_torch("lstm", {k: torch.tensor(v).to(torch.bfloat16) for k, v in lstm.init_params(3, 2).items()})
    half = tc.from_torch("lstm", torch.nn.LSTM(3, 4).half())  # a half-precision module, there and back
    assert tc.to_torch("lstm", half)["weight_ih_l0"].dtype == torch.float16
    for flag in ("reverse", "bias"):
        with pytest.raises(ValueError, match=rf"^{flag}: expected True or False, got 'no'"):
            tc.to_torch("gru", params, **{flag: "no"})


def test_a_prefix_without_its_dot_is_refused_both_ways():
    """'enc' would write keys such as 'encweight_ih_l0', which load_state_dict(strict=False) skips
    without a word, leaving the model's weights as they were."""
    params = lstm.init_params(3, 4)
    for convert in (lambda prefix: tc.to_torch("lstm", params, prefix=prefix),
                    lambda prefix: tc.from_torch("lstm", {"enc.weight_ih_l0": 0}, prefix=prefix)):
        with pytest.raises(ValueError, match=r"^prefix: expected '' or a submodule's name ending in '\.', such as "
                                             r"'enc\.', got 'enc' \(with 'enc\.' the keys read 'enc\.weight_ih_l0'\)$"):
            convert("enc")
        with pytest.raises(ValueError, match=r"^prefix: .* got None$"):
            convert(None)


class Seq2Seq(torch.nn.Module):
    """A model holding a two-layer GRU beside other parts, as a checkpoint saves it."""

    def __init__(self):
        super().__init__()
        self.embed, self.enc, self.readout = torch.nn.Linear(2, 3), torch.nn.GRU(3, 4, num_layers=2), torch.nn.Linear(4, 1)


def test_from_torch_reads_a_model_or_its_saved_state_dict_with_its_prefix(tmp_path):
    torch.manual_seed(0)
    model = Seq2Seq()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    checkpoint = torch.load(tmp_path / "model.pt")
    for layer in (0, 1):
        expected = tc.from_torch("gru", model.enc, layer=layer)
        for source in (model, checkpoint):
            got = tc.from_torch("gru", source, prefix="enc.", layer=layer)
            assert got.keys() == expected.keys()
            assert all(np.array_equal(got[k], expected[k]) for k in got)
    with pytest.raises(ValueError, match=r"have the prefix 'enc\.': pass that submodule, or from_torch\(\.\.\., prefix='enc\.'\)"):
        tc.from_torch("gru", checkpoint, layer=0)
    with pytest.raises(ValueError, match=r"^prefix 'dec\.': no key of this state_dict starts with it; "
                                         r"the recurrent keys here have the prefix 'enc\.'$"):
        tc.from_torch("gru", checkpoint, prefix="dec.", layer=0)
    with pytest.raises(ValueError, match=r"^prefix 'dec\.': the Seq2Seq holds no module 'dec'; it holds enc \(GRU\): "
                                         r"prefix='enc\.'$"):
        tc.from_torch("gru", model, prefix="dec.", layer=0)
    with pytest.raises(ValueError, match=r"got a Seq2Seq; it holds enc \(GRU\): pass that submodule, or prefix='enc\.'$"):
        tc.from_torch("gru", model, layer=0)


def test_bias_false_with_nonzero_biases_says_what_to_do():
    params = gru.init_params(3, 4)
    with pytest.raises(ValueError, match=r"^bias=False: .*the largest \|entry\| of b_x 0\.\d+, b_h 0\.\d+: set them to zero "
                                         r"\(init_params draws them\) and leave backward\(\)'s bias gradients out of every update$"):
        tc.to_torch("gru", params, bias=False)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_training_in_turns_is_pytorchs_training_with_the_lstms_b_stepped_twice(name):
    """SGD for two steps in PyTorch, two in NumPy, two in PyTorch: six in PyTorch, where the
    lstm kernel's b (bias_ih + bias_hh, each stepped on db) takes twice its step; with one, it
    is not."""
    kernel, module_class = CELLS[name]
    torch.manual_seed(1)
    xs = [torch.randn(4, 2, 3, dtype=torch.float64) for _ in range(6)]

    def torch_steps(module, batches):
        for x in batches:
            module.zero_grad()
            (module(x)[0] ** 2).sum().div(2).backward()
            with torch.no_grad():
                for p in module.parameters():
                    p -= 0.2 * p.grad

    def in_turns(b_factor):
        module = copy.deepcopy(reference)
        torch_steps(module, xs[:2])
        params = tc.from_torch(name, module)
        for x in xs[2:4]:
            ys, _, cache = kernel.forward(params, x.numpy())
            grads = kernel.backward(params, cache, dys=ys)[0]
            params = {p: params[p] - 0.2 * grads[p] * (b_factor if p == "b" else 1) for p in kernel.PARAMS}
        module.load_state_dict(tc.to_torch(name, params))
        torch_steps(module, xs[4:])
        return module(xs[0])[0].detach().numpy()

    reference = module_class(3, 4, dtype=torch.float64)
    initial = copy.deepcopy(reference)
    torch_steps(reference, xs)
    expected = reference(xs[0])[0].detach().numpy()
    reference = initial
    assert_close(in_turns(2), expected, f"{name} trained in turns")
    if name == "lstm":
        assert relative_error(in_turns(1), expected) > 1e-4
