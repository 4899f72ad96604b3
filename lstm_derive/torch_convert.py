"""Converting parameters between the generated kernels and PyTorch's recurrent modules.

============  ================  ==========  ===============================================
kernel        PyTorch module    gate order  parameters (weight_ih, weight_hh, bias_ih, bias_hh)
============  ================  ==========  ===============================================
``lstm``      ``nn.LSTM``       i, f, g, o  W_x, W_h, b = bias_ih + bias_hh
``gru``       ``nn.GRU``        r, z, n     W_x, U_h, b_x, b_h
``rnn``       ``nn.RNN`` (tanh) -           W_x, W_h, b_x, b_h
``rnn_relu``  ``nn.RNN`` (relu) -           W_x, W_h, b_x, b_h
============  ================  ==========  ===============================================

A kernel is one layer in one direction, without projection: the keys ``weight_ih_l0``,
``weight_hh_l0``, ``bias_ih_l0`` and ``bias_hh_l0``; from_torch also reads nn.LSTMCell and its
kin, whose keys are these without the ``_l0``, and to_torch(..., cell_module=True) writes them. A stack converts layer by layer (``layer=k``:
``*_l{k}``) and a bidirectional module direction by direction (``reverse=True``:
``*_l{k}_reverse``, the kernel run over ``x[::-1]``, or each sequence reversed within its length
with lengths: README's ``reversed_rows``), both ways. The kernels use PyTorch's gate
orders, so the weights are copied as they are, never reordered.

Reading a state_dict needs only NumPy; writing one imports torch, an optional dependency:
``pip install -e ".[torch]"`` (torch==2.13.0).
"""

from __future__ import annotations

import importlib
import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

__all__ = [
    "from_torch",
    "to_torch",
    "torch_module",
    "lstm_from_torch",
    "lstm_to_torch",
    "gru_from_torch",
    "gru_to_torch",
    "rnn_from_torch",
    "rnn_to_torch",
    "rnn_relu_from_torch",
    "rnn_relu_to_torch",
]

KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # nn.LSTMCell, nn.GRUCell, nn.RNNCell


@dataclass(frozen=True)
class _Layout:
    """How one kernel's parameters sit in one PyTorch module's state_dict."""

    module: str  # the torch.nn class
    mode: str  # that module's .mode attribute
    count: int  # blocks of H rows in every weight and bias
    gates: str  # PyTorch's gate order, the kernel's block order
    names: tuple  # the kernel's parameters for weight_ih, weight_hh, bias_ih, bias_hh (None: summed)


LAYOUTS = {
    "lstm": _Layout("LSTM", "LSTM", 4, "gates i, f, g, o", ("W_x", "W_h", "b", None)),
    "gru": _Layout("GRU", "GRU", 3, "gates r, z, n", ("W_x", "U_h", "b_x", "b_h")),
    "rnn": _Layout("RNN", "RNN_TANH", 1, "no gates", ("W_x", "W_h", "b_x", "b_h")),
    "rnn_relu": _Layout("RNN", "RNN_RELU", 1, "no gates", ("W_x", "W_h", "b_x", "b_h")),
}
_NONLINEARITY = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}  # nn.RNN's nonlinearity= for each mode

_OF_COUNT = {4: "an LSTM's", 3: "a GRU's", 1: "an RNN's"}


def _resolve(cell):
    """The cell's name, layout and kernel module; ``cell`` is a name or a kernel module."""
    name = getattr(cell, "CELL", cell)
    if name not in LAYOUTS:
        raise ValueError(f"no PyTorch module corresponds to the cell {name!r}; "
                         f"expected one of {', '.join(LAYOUTS)}")
    layout = LAYOUTS[name]
    kernel = importlib.import_module(f"lstm_derive.kernels.{name}")
    wanted = {n for n in layout.names if n}
    if set(kernel.PARAMS) != wanted:
        raise ValueError(f"the {name} kernel's parameters {kernel.PARAMS} are not the {sorted(wanted)} "
                         f"that the conversion to nn.{layout.module} expects; was derivations/{name}.py changed?")
    return name, layout, kernel


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError('converting to PyTorch needs torch: pip install -e ".[torch]" (torch==2.13.0)') from error
    return torch


# -- PyTorch -> kernel ------------------------------------------------------------------------

def from_torch(cell, state_dict, *, layer=None, reverse=None, input_size=None, hidden_size=None, prefix=""):
    """The kernel parameters of ``cell`` ("lstm", "gru", "rnn" or its kernel module) from a
    PyTorch module (nn.LSTM or nn.LSTMCell, and so on) or its state_dict; of a stack
    (num_layers > 1), those of ``layer`` k, whose input is layer k-1's output; of a
    bidirectional module, those of one direction: ``reverse=False`` or ``True`` (the reverse
    direction is the kernel run over ``x[::-1]``, its outputs reversed back; with lengths, each
    sequence reversed within its length, as README's ``reversed_rows`` does).

    Arrays are NumPy copies in the module's dtype, in the kernel's PARAMS order. A module
    without biases (bias=False) gives zero biases. Raises ValueError, saying what was
    expected, for another cell type, a stack without ``layer``, a bidirectional module without
    ``reverse``, a projected module, an RNN of the other nonlinearity (only when given the module:
    a ReLU RNN's state_dict looks like a tanh one's), a dtype NumPy has not (bfloat16), tensors
    without values (on the meta device) or not dense, or sizes that disagree with each other
    or with ``input_size``/``hidden_size``. A module that torch.compile wrapped converts as the
    module it wraps. ``prefix="enc."`` reads the module a model holds as ``enc`` (from the model
    or from its state_dict, a checkpoint's keys ``enc.weight_ih_l0``, ...), as to_torch writes it.
    """
    name, layout, kernel = _resolve(cell)
    if layer is not None:
        _checked_layer(layer)
    if reverse is not None and not isinstance(reverse, (bool, np.bool_)):
        raise ValueError(f"reverse: expected True, False or None, got {reverse!r}")
    if not hasattr(state_dict, "keys") and not hasattr(state_dict, "state_dict"):
        raise ValueError(f"expected an nn.{layout.module} (or its cell module) or its state_dict, "
                         f"got {type(state_dict).__name__}")
    if isinstance(state_dict, type):  # a class has an (unbound) state_dict too
        raise ValueError(f"expected an nn.{layout.module} module or its state_dict, got the class "
                         f"{state_dict.__module__}.{state_dict.__qualname__} itself: pass a module made of it, "
                         f"with its weights")
    _checked_prefix(prefix)
    if prefix:
        state_dict = _inside(state_dict, prefix)
    if hasattr(state_dict, "state_dict"):
        state_dict = getattr(state_dict, "_orig_mod", state_dict)  # torch.compile's wrapper: the module it compiled
        _check_module(layout, state_dict, layer)  # the direction is judged by the keys, in _one_layer
        state_dict = state_dict.state_dict()
    state_dict, suffix = _one_layer(state_dict, layer, reverse)
    named = _Named(layout.module if suffix else f"{layout.module}Cell", suffix)
    arrays = _read_keys(state_dict, named)
    D, H = _sizes(layout, arrays, input_size, hidden_size, named)
    w_ih, w_hh, b_ih, b_hh = (arrays.get(k) for k in KEYS)
    if b_ih is None:  # bias=False
        b_ih = b_hh = np.zeros(layout.count * H, w_ih.dtype)
    values = dict(zip(layout.names, (w_ih, w_hh, b_ih, b_hh)))
    if layout.names[3] is None:  # one bias: the sum of PyTorch's two
        values[layout.names[2]] = b_ih + b_hh
    return {p: values[p] for p in kernel.PARAMS}


def _checked_prefix(prefix):
    """A model's keys join its modules' names with dots: a prefix without its dot would make or
    read keys such as 'encweight_ih_l0', which no model has."""
    if not isinstance(prefix, str) or (prefix and not prefix.endswith(".")):
        hint = f" (with {prefix + '.'!r} the keys read {prefix + '.weight_ih_l0'!r})" if isinstance(prefix, str) else ""
        raise ValueError(f"prefix: expected '' or a submodule's name ending in '.', such as 'enc.', got {prefix!r}{hint}")


def _inside(model, prefix):
    """The recurrent module a model holds at ``prefix``, or its entries in the model's state_dict
    under their own keys."""
    if hasattr(model, "state_dict"):  # a model, not its state_dict
        model = getattr(model, "_orig_mod", model)
        try:
            return model.get_submodule(prefix[:-1])
        except AttributeError:
            raise ValueError(f"prefix {prefix!r}: the {_class_name(model)} holds no module {prefix[:-1]!r}"
                             f"{_held(model, ': ')}") from None
    chosen = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
    if not chosen:
        found = _recurrent_prefixes(model)
        held = f"; the recurrent keys here have the prefix {', '.join(map(repr, found))}" if found else ""
        raise ValueError(f"prefix {prefix!r}: no key of this state_dict starts with it{held}")
    return chosen


def _recurrent_prefixes(keys):
    pattern = r"(.+\.)(weight|bias)_(ih|hh)(_l\d+)?(_reverse)?$"
    return sorted({m.group(1) for k in keys if (m := re.match(pattern, k))})


def _held(model, advice):
    """'; it holds enc (LSTM)' and the advice to take it with its prefix, for a model holding
    recurrent modules; '' for one holding none."""
    inner = [(n, type(m).__name__) for n, m in model.named_modules() if n and _is_recurrent(m)]
    if not inner:
        return ""
    return f"; it holds {', '.join(f'{n} ({kind})' for n, kind in inner)}{advice}prefix={inner[0][0] + '.'!r}"


def _is_recurrent(module):
    return any(hasattr(module, key) for key in ("weight_ih_l0", "weight_ih"))


def _checked_layer(layer):
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or layer < 0:
        raise ValueError(f"layer: expected a layer's index, 0 or more, got {layer!r}")


def _check_module(layout, module, layer):
    if not _is_recurrent(module):  # a model holding one
        raise ValueError(f"expected a torch.nn.{layout.module} or {layout.module}Cell, got a {_class_name(module)}"
                         f"{_held(module, ': pass that submodule, or ')}")
    mode = getattr(module, "mode", None)
    used = getattr(module, "nonlinearity", None)  # nn.RNN's and nn.RNNCell's; other modules have none
    if layout.mode in _NONLINEARITY and used is not None:
        wanted = _NONLINEARITY[layout.mode]
        if used != wanted:
            other = next(n for n, lay in LAYOUTS.items() if _NONLINEARITY.get(lay.mode) == used)
            raise ValueError(f"expected nn.RNN or nn.RNNCell with nonlinearity='{wanted}'; this one uses '{used}': "
                             f"convert it for the {other} kernel")
    if mode is not None and mode != layout.mode:
        raise ValueError(f"expected a torch.nn.{layout.module}, got a {type(module).__name__} (mode {mode!r})")
    layers = getattr(module, "num_layers", 1)
    if layer is None and layers != 1:
        raise ValueError(f"expected num_layers=1, got {layers}: a kernel is one layer; "
                         f"convert each with from_torch(..., layer=k), k = 0 to {layers - 1}")
    if layer is not None and not 0 <= layer < layers:
        raise ValueError(f"layer: expected 0 to {layers - 1} (num_layers={layers}), got {layer}")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"expected proj_size=0, got {module.proj_size}: the lstm kernel has no projection")


def _class_name(module):
    """The module's class, with its package where its name alone would read as torch.nn's own
    (a quantized LSTM: torch.ao.nn.quantized.dynamic...LSTM)."""
    cls = type(module)
    if cls.__name__ in {layout.module + kind for layout in LAYOUTS.values() for kind in ("", "Cell")}:
        return f"{cls.__module__}.{cls.__name__}"
    return cls.__name__


@dataclass(frozen=True)
class _Named:
    """How the caller's module and keys are named in messages, where _one_layer renamed the keys:
    nn.LSTMCell's weight_hh, or nn.LSTM's layer 1 weight_hh_l1, not the weight_hh_l0 read."""
    module: str
    suffix: str  # of the caller's keys: "" (a cell module's), "_l0", "_l1_reverse", ...

    def __call__(self, key):
        return key[:-len("_l0")] + self.suffix if key.endswith("_l0") else key


def _one_layer(state_dict, layer, reverse):
    """One layer's entries in one direction, under the keys of a one-layer one-directional module
    (*_l0); a cell module's keys (weight_ih, ...) are that layer's. Also the suffix the caller's
    keys have in place of _l0, to name them in messages."""
    prefixes = _recurrent_prefixes(state_dict)
    if prefixes:  # a model's state_dict, the recurrent module's among its other parts
        raise ValueError(f"expected a recurrent module's own keys (weight_ih_l0, ...); these have the prefix "
                         f"{', '.join(map(repr, prefixes))}: pass that submodule, or from_torch(..., "
                         f"prefix={prefixes[0]!r})")
    if state_dict and all(k in CELL_KEYS for k in state_dict):  # an nn.LSTMCell's: one layer, one direction
        if layer or reverse:
            raise ValueError("expected layer=None and reverse=None: these are a cell module's keys (weight_ih, ...)")
        return {f"{k}_l0": v for k, v in state_dict.items()}, ""
    bidirectional = any(k.endswith("_reverse") for k in state_dict)
    if bidirectional and reverse is None:
        raise ValueError("expected a one-directional module, or one direction chosen: these parameters have "
                         "*_reverse keys (bidirectional=True); a kernel runs one direction: convert each with "
                         "from_torch(..., reverse=False) and reverse=True")
    if reverse and not bidirectional:
        raise ValueError("reverse=True: these parameters have no *_reverse keys (a one-directional module)")
    if layer is None and not reverse:
        return {k: v for k, v in state_dict.items() if not k.endswith("_reverse")}, "_l0"  # _read_keys names the rest
    found = sorted({int(m.group(1)) for k in state_dict if (m := re.search(r"_l(\d+)(_reverse)?$", k))})
    if layer is None and len(found) > 1:
        raise ValueError(f"expected one layer (keys *_l0); this state_dict has layers {found}: "
                         "convert each with from_torch(..., layer=k)")
    suffix = f"_l{layer or 0}" + ("_reverse" if reverse else "")
    chosen = {k[: -len(suffix)] + "_l0": v for k, v in state_dict.items() if k.endswith(suffix)}
    if not chosen:
        raise ValueError(f"layer: this state_dict has no layer {layer} (its layers: {found})")
    return chosen, suffix


def _read_keys(state_dict, named):
    keys = list(state_dict)
    unknown = [k for k in keys if k not in KEYS]
    layers = sorted({int(m.group(1)) for k in unknown if (m := re.search(r"_l(\d+)$", k))} - {0})
    if layers:
        raise ValueError(f"expected one layer (keys *_l0); this state_dict has layers {[0] + layers}: "
                         "convert each with from_torch(..., layer=k)")
    if "weight_hr_l0" in unknown:
        raise ValueError(f"expected an LSTM without projection; this state_dict has {named('weight_hr_l0')} "
                         "(proj_size > 0)")
    expected = f"expected the keys {', '.join(map(named, KEYS))} of an nn.{named.module}"
    if unknown:
        raise ValueError(f"{expected}; unknown keys: {', '.join(map(named, unknown))}{_reparametrized(unknown)}")
    missing = [k for k in KEYS[:2] if k not in state_dict]
    if ("bias_ih_l0" in state_dict) != ("bias_hh_l0" in state_dict):
        missing += [k for k in KEYS[2:] if k not in state_dict]
    if missing:
        raise ValueError(f"{expected}; missing: {', '.join(map(named, missing))}")
    arrays = {k: _numpy(named(k), state_dict[k]) for k in KEYS if k in state_dict}
    if len({a.dtype for a in arrays.values()}) > 1:  # a kernel takes parameters of one dtype, as a module holds
        got = ", ".join(f"{named(k)} {a.dtype}" for k, a in arrays.items())
        raise ValueError(f"expected every parameter in one dtype (a module holds one), got {got}")
    return arrays


def _reparametrized(keys):
    """A hint for the keys of a pruned or reparametrized module, whose weights are computed."""
    if any(k.endswith(("_orig", "_mask")) for k in keys):
        return ("; a pruned module keeps weight_orig and weight_mask: make the pruning permanent with "
                "torch.nn.utils.prune.remove(module, name) first")
    if any(k.startswith("parametrizations.") for k in keys):
        return ("; a parametrized module (weight_norm, ...) keeps what computes its weights: bake them in with "
                "torch.nn.utils.parametrize.remove_parametrizations(module, name) first")
    return ""


def _native(a):
    """a in native byte order: '>f8' holds float64 too, and torch.from_numpy takes native arrays alone."""
    return a.astype(a.dtype.newbyteorder("="), copy=False)


def _numpy(key, value):
    if getattr(value, "is_meta", False):
        raise ValueError(f"{key}: a tensor on the meta device holds shapes, no values; load the weights into "
                         "the module first (module.load_state_dict(weights, assign=True), or module.to_empty("
                         "device='cpu') and then load_state_dict), or convert the state_dict they come from")
    if getattr(value, "is_sparse", False):  # its TypeError below would blame the dtype
        raise ValueError(f"{key}: expected a dense tensor, got a sparse one; convert it with .to_dense() first")
    if hasattr(value, "detach"):  # a torch.Tensor
        try:
            value = value.detach().cpu().numpy()
        except TypeError as error:  # bfloat16: no NumPy dtype
            raise ValueError(f"{key}: dtype {value.dtype} has no NumPy counterpart; convert the module "
                             "with .float() or .double() first") from error
    value = np.array(value)  # a copy: the parameters never alias the module's
    if value.dtype.kind not in "fc":
        raise ValueError(f"{key}: expected floating-point values, got dtype {value.dtype}")
    return value


def _sizes(layout, arrays, input_size, hidden_size, named):
    """D and H, after checking every array's shape against them."""
    count = layout.count
    w_hh, w_ih = arrays["weight_hh_l0"], arrays["weight_ih_l0"]
    ih, hh = named("weight_ih_l0"), named("weight_hh_l0")
    if w_hh.ndim != 2 or w_ih.ndim != 2:
        raise ValueError(f"expected 2-D weights, got {ih} {w_ih.shape} and {hh} {w_hh.shape}")
    H = w_hh.shape[1]
    if w_hh.shape[0] != count * H:
        blocks = w_hh.shape[0] // H if H and w_hh.shape[0] % H == 0 else None
        looks = f": {blocks} * H rows, {_OF_COUNT[blocks]}" if blocks in _OF_COUNT else ""
        rows = f"{count} * H" if count > 1 else "H"
        raise ValueError(f"{hh} has shape {tuple(w_hh.shape)}{looks}; expected nn.{named.module}'s "
                         f"({rows}, H) = ({count * H}, {H}), {layout.gates}")
    if hidden_size is not None and H != hidden_size:
        raise ValueError(f"expected hidden_size {hidden_size}, got {H} ({hh} {tuple(w_hh.shape)})")
    D = w_ih.shape[1]
    if input_size is not None and D != input_size:
        raise ValueError(f"expected input_size {input_size}, got {D} ({ih} {tuple(w_ih.shape)})")
    expected = {"weight_ih_l0": (count * H, D), "bias_ih_l0": (count * H,), "bias_hh_l0": (count * H,)}
    for key, shape in expected.items():
        if key in arrays and arrays[key].shape != shape:
            raise ValueError(f"{named(key)}: expected shape {shape} for hidden size H = {H} "
                             f"({count} * H rows, {layout.gates}), got {tuple(arrays[key].shape)}")
    return D, H


# -- kernel -> PyTorch ------------------------------------------------------------------------

def to_torch(cell, params, *, layer=0, reverse=False, bias=True, gradients=False, cell_module=False, prefix=""):
    """A state_dict (of torch tensors) for an nn.LSTM/GRU/RNN from ``cell``'s parameters: those of
    ``layer`` k (keys *_l{k}) in the forward direction, or with ``reverse=True`` the reverse one
    (*_l{k}_reverse); one layer's and direction's entries, to merge into a stack's state_dict.

    Load it with ``module.load_state_dict(...)``; the tensors are copies in the parameters'
    dtype (float16, float32 or float64). ``bias=False`` (for a module without biases) leaves the bias
    keys out, and needs the biases to be zero; their gradients, which backward() gives all the
    same, are left out whatever they are (so a training loop keeps a bias-free module's kernel
    biases at zero by never applying them). ``gradients=True`` converts backward()'s gradients
    instead (to compare with, or set, the module's ``.grad``): a kernel's one bias then gives its
    gradient to both bias_ih and bias_hh, as each of the module's two receives all of it, where
    a parameter goes to bias_ih alone (bias_hh = 0). ``cell_module=True`` gives the keys of an
    nn.LSTMCell, GRUCell or RNNCell (weight_ih, ... without a layer's suffix); ``prefix`` goes before
    every key, for a model that holds the module (``prefix="enc."``). Raises ValueError naming the expected parameters,
    shapes and dtype if ``params`` do not fit, and ImportError if torch is missing.
    """
    name, layout, kernel = _resolve(cell)
    params = _checked_params(name, kernel, params)
    _checked_layer(layer)
    for flag, value in (("reverse", reverse), ("bias", bias), ("gradients", gradients), ("cell_module", cell_module)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{flag}: expected True or False, got {value!r}")
    _checked_prefix(prefix)
    torch = _import_torch()
    w_ih, w_hh, b_ih, b_hh = (params[n] if n else None for n in layout.names)
    if b_hh is None:  # one bias: all of it in bias_ih, none in bias_hh; its gradient is each one's
        b_hh = b_ih.copy() if gradients else np.zeros_like(b_ih)
    values = dict(zip(KEYS, (w_ih, w_hh, b_ih, b_hh)))
    if not bias:
        nonzero = [] if gradients else [n for n in layout.names[2:] if n and params[n].any()]
        if nonzero:
            largest = ", ".join(f"{n} {np.max(np.abs(params[n])):.3g}" for n in nonzero)
            raise ValueError(f"bias=False: a module without biases holds these parameters only if their biases "
                             f"are zero; the largest |entry| of {largest}: set them to zero (init_params draws them) "
                             f"and leave backward()'s bias gradients out of every update")
        values = {k: values[k] for k in KEYS[:2]}
    if cell_module and (layer or reverse):
        raise ValueError("cell_module=True: a cell module is one layer and one direction; expected layer=0, reverse=False")
    suffix = "" if cell_module else f"_l{layer}" + ("_reverse" if reverse else "")
    return OrderedDict((prefix + k[: -len("_l0")] + suffix, torch.from_numpy(np.array(v))) for k, v in values.items())


def _checked_params(name, kernel, params):
    missing = [p for p in kernel.PARAMS if p not in params]
    if missing:  # other keys (a readout's weights) are not the cell's, as a kernel ignores them too
        raise ValueError(f"expected the {name} kernel's parameters {kernel.PARAMS}; missing {missing}")
    arrays = {p: _native(_numpy(p, params[p]) if hasattr(params[p], "detach") else np.asarray(params[p]))
              for p in kernel.PARAMS}  # a tensor as from_torch reads one: bfloat16 refused with a ValueError
    dtypes = sorted({str(a.dtype) for a in arrays.values()})
    if len(dtypes) > 1 or dtypes[0] not in ("float16", "float32", "float64"):
        raise ValueError(f"expected the {name} kernel's parameters in float16, float32 or float64, all of one "
                         f"dtype (a module holds one), got {', '.join(dtypes)}")
    try:  # the kernel's own judgement of the shapes, which names the array at fault (a transposed W_h)
        kernel._checked_params(arrays)
    except ValueError as error:
        raise ValueError(f"the {name} kernel's parameters: {error}") from None
    return arrays


def torch_module(cell, params, *, bias=True):
    """A one-layer nn.LSTM/GRU/RNN (tanh; relu for rnn_relu) in the parameters' dtype, holding
    ``cell``'s parameters; ``bias=False``: a module without biases (the parameters' biases must be zero)."""
    name, layout, kernel = _resolve(cell)
    state_dict = to_torch(cell, params, bias=bias)
    torch = _import_torch()
    H, D = state_dict["weight_hh_l0"].shape[1], state_dict["weight_ih_l0"].shape[1]
    dtype = state_dict["weight_ih_l0"].dtype
    extra = {"nonlinearity": _NONLINEARITY[layout.mode]} if layout.mode in _NONLINEARITY else {}
    module = getattr(torch.nn, layout.module)(D, H, bias=bias, dtype=dtype, **extra)
    module.load_state_dict(state_dict)
    return module


# -- one pair per cell --------------------------------------------------------------------------

def lstm_from_torch(state_dict, **sizes):
    """The lstm kernel's W_x, W_h, b from an nn.LSTM or its state_dict (gates i, f, g, o).

    PyTorch adds two biases; the kernel has one, so ``b = bias_ih_l0 + bias_hh_l0`` (exact
    outputs, but the split is lost). See :func:`from_torch` for the checks."""
    return from_torch("lstm", state_dict, **sizes)


def lstm_to_torch(params):
    """An nn.LSTM state_dict from the lstm kernel's parameters: weight_ih_l0 = W_x,
    weight_hh_l0 = W_h, and the kernel's one bias as ``bias_ih_l0 = b``, ``bias_hh_l0 = 0``.

    So lstm_from_torch(lstm_to_torch(p)) == p exactly."""
    return to_torch("lstm", params)


def gru_from_torch(state_dict, **sizes):
    """The gru kernel's W_x, b_x, U_h, b_h from an nn.GRU or its state_dict (gates r, z, n):
    weight_ih_l0, bias_ih_l0, weight_hh_l0, bias_hh_l0, copied as they are."""
    return from_torch("gru", state_dict, **sizes)


def gru_to_torch(params):
    """An nn.GRU state_dict from the gru kernel's parameters (the inverse of gru_from_torch)."""
    return to_torch("gru", params)


def rnn_from_torch(state_dict, **sizes):
    """The rnn kernel's W_x, W_h, b_x, b_h from an nn.RNN (nonlinearity='tanh') or its state_dict:
    weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, copied as they are. A state_dict cannot
    tell a ReLU RNN from a tanh one; pass the module to have that checked."""
    return from_torch("rnn", state_dict, **sizes)


def rnn_to_torch(params):
    """An nn.RNN (tanh) state_dict from the rnn kernel's parameters (the inverse of rnn_from_torch)."""
    return to_torch("rnn", params)


def rnn_relu_from_torch(state_dict, **sizes):
    """The rnn_relu kernel's W_x, W_h, b_x, b_h from an nn.RNN (nonlinearity='relu') or its
    state_dict, copied as they are; as for rnn, only a module tells its nonlinearity."""
    return from_torch("rnn_relu", state_dict, **sizes)


def rnn_relu_to_torch(params):
    """An nn.RNN (relu) state_dict from the rnn_relu kernel's parameters."""
    return to_torch("rnn_relu", params)
