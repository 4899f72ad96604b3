"""The text of the kernel's argument checks: the functions forward(), backward() and the step
functions call on params, x, lengths, a state and the cache, each failure a ValueError that names
the argument, what was expected and what came."""

from __future__ import annotations

from .forward import _cache_items
from .printing import _lines, _tuple, _wrapped


def _validation(k):
    """The kernel's argument checks, one function each: every failure is a ValueError that names the
    argument, what was expected and what came."""
    parts = [_checked_function(k), _shape_advice_function(), _sizes_function(k), _checked_params_function(),
             _checked_input_function(k), _steps_to_run_function(), _STAND_INS, _checked_cache_function(k),
             _fingerprints_function(),
             _checked_state_function(k)]
    return _lines(*(line for part in parts for line in [*part, "", ""]))


def _checked_function(k):
    """_array() and _checked(): an argument as an array in native byte order, of the dtype asked for,
    or a ValueError."""
    _, x_weight = _input_weight(k)
    return [
        "def _array(name, a):",
        '    """np.asarray(a), or a ValueError naming the argument where NumPy cannot read it as an array',
        '    (ragged lists, a tensor that requires grad) or would read it wrong (a masked array)."""',
        '    if type(a) is not np.ndarray and isinstance(a, np.ndarray) and hasattr(a, "mask"):  # np.ma\'s, told without importing np.ma',
        '        raise ValueError(f"{name}: expected an array, got a masked array, whose masked entries would be read as "',
        '                         f"numbers; pass {name}.filled(value) (a padded sequence: its length in lengths)")',
        "    try:",
        "        return np.asarray(a)",
        "    except (ValueError, TypeError, RuntimeError) as error:",
        '        raise ValueError(f"{name}: expected an array, got a {type(a).__name__} NumPy cannot read as one: {error}") from None',
        "",
        "",
        "def _checked(name, a, shape, dims, dtype, sizes=None):",
        '    """a as an array in native byte order, or a ValueError naming the argument, its expected and its',
        f'    actual shape (sizes: a parameter\'s D and H, which the message says were read off {x_weight})."""',
        "    given, a = a, _array(name, a)",
        '    if a.dtype.kind not in "fc":',
        '        to = f"np.{dtype}, the parameters\' dtype" if dtype is not None else "np.float64, say"',
        '        raise ValueError(f"{name}: expected a float or complex array, got dtype {a.dtype}; convert it "',
        '                         f"with .astype({to})")',
        "    if a.shape != shape:",
        f'        read = "" if sizes is None else " (D = {{}} and H = {{}} read off {x_weight})".format(*sizes)',
        '        raise ValueError(f"{name}: expected shape {dims} = {shape}{read}, got {a.shape}" + _shape_advice(name, a.shape, shape))',
        "    a = a.astype(a.dtype.newbyteorder(\"=\"), copy=False)  # \'>f8\' is float64 too; BLAS and out= take native order alone",
        "    if dtype is not None and a.dtype != dtype:",
        '        advice = (f"convert it with .astype(np.{dtype})" if not (a.dtype.kind == "c" and dtype.kind == "f") else',
        '                  "for complex arithmetic (the complex step) make the parameters complex too")  # not drop .imag',
        "        if not isinstance(given, np.ndarray):",
        '            named = name if name.isidentifier() else "it"  # state[h] names an entry, not Python',
        '            advice = f"a {type(given).__name__} reads as {a.dtype}: pass np.asarray({named}, dtype=np.{dtype})"',
        '        raise ValueError(f"{name}: expected dtype {dtype} like the parameters, got {a.dtype}; {advice}")',
        "    return a",
    ]


def _shape_advice_function():
    """_shape_advice(): what to do with an array of a shape near the one expected."""
    return [
        "def _shape_advice(name, got, shape):",
        '    """Advice where got is shape with a leading axis of length 1 (PyTorch\'s h_0 and h_n, for one, are',
        '    (layers, B, H)), or where a state (B, H) came as one vector (H,), a learned initial state."""',
        "    if got == (1, *shape):",
        '        torch = " (PyTorch\'s h_0, c_0, h_n and c_n are (layers, B, H))" if name.startswith(("state", "dstate")) else ""',
        '        return f"; drop the leading axis of length 1 with [0]{torch}"',
        '    if name.startswith("state[") and len(shape) == 2 and got == shape[1:]:',
        '        return f"; one initial state for every sequence goes as np.broadcast_to({name[6:-1]}, {shape})"',
        '    return ""',
    ]


def _checked_params_function():
    """_checked_params(): the parameters in PARAMS order, of one dtype and consistent shapes."""
    return [
        "def _checked_params(params):",
        '    """The parameters in PARAMS order, all of one float dtype and of consistent shapes."""',
        '    if not hasattr(params, "keys"):',
        '        raise ValueError(f"params: expected a dict of arrays {PARAMS}, got {type(params).__name__}; "',
        '                         "init_params(D, H) makes one")',
        "    missing = [n for n in PARAMS if n not in params]",
        "    if missing:  # other keys (a readout's weights beside the cell's) are not the kernel's concern",
        "        others = [n for n in params if n not in PARAMS]",
        '        raise ValueError(f"params: expected {PARAMS}, missing {missing}" + (f", other keys {others}" if others else "")',
        '                         + "; pass every parameter by its name in PARAMS, as init_params(D, H) gives them")',
        "    D, H = _sizes(params)",
        "    shapes, dims = _param_shapes(D, H), _PARAM_DIMS",
        "    arrays = [_checked(n, params[n], shapes[n], dims[n], None, (D, H)) for n in PARAMS]",
        "    dtypes = [a.dtype for a in arrays]",
        "    if len(set(dtypes)) > 1:  # the one named is the odd one out: the dtype most of them have is expected",
        "        common = max(dtypes, key=dtypes.count)",
        "        for n, a in zip(PARAMS, arrays):",
        "            _checked(n, a, shapes[n], dims[n], common)",
        "    return arrays",
    ]


def _checked_input_function(k):
    """_checked_input(): x (or x_t) of the parameters' dtype and D columns, or a ValueError."""
    _, x_weight = _input_weight(k)
    return [
        'def _checked_input(x, D, dtype, name="x", dims="(T, B, D)"):',
        '    """x as an array (T, B, D) of the parameters\' dtype (x_t of step_forward(): (B, D)), or a',
        '    ValueError that says what is wrong."""',
        "    if x is None:",
        '        raise ValueError(f"{name}: expected an array {dims}, got None")',
        "    try:",
        "        shape = np.shape(x)",
        "    except ValueError:  # ragged lists, or a tuple of arrays such as PyTorch's PackedSequence",
        '        raise ValueError(f"{name}: expected an array {dims}, got a {type(x).__name__} that is none (sequences "',
        '                         "of different lengths go padded into one array, with lengths)") from None',
        '    if len(shape) != dims.count(",") + 1 or shape[-1] != D:',
        '        got = shape if shape else f"a {type(x).__name__}, {x!r:.40}"',
        f'        raise ValueError(f"{{name}}: expected shape {{dims}} with D = {{D}}, the columns of {x_weight}, got {{got}}"',
        '                         + _input_advice(name, shape, D))',
        '    return _checked(name, x, shape, dims, dtype)',
        "",
        "",
        "def _input_advice(name, shape, D):",
        '    """What to do with x (or x_t) of the wrong number of axes, its columns D: one sequence, one step."""',
        "    if not shape or shape[-1] != D:",
        '        return ""',
        '    if name == "x" and len(shape) == 2:',
        '        return "; one sequence (T, D) goes as x[:, np.newaxis], one step of B sequences (B, D) as x[np.newaxis]"',
        '    if name == "x_t" and len(shape) == 1:',
        '        return "; one sequence\'s step (D,) goes as x_t[np.newaxis]"',
        '    if name == "x_t" and len(shape) == 3:',
        '        return "; drop the leading axis of length 1 with [0]" if shape[0] == 1 else "; steps (T, B, D) go to forward()"',
        '    return "; drop the leading axis of length 1 with [0]" if shape[0] == 1 and len(shape) == 4 else ""',
    ]


def _steps_to_run_function():
    """_steps_to_run(): forward()'s reading of lengths: the steps to run and the rows ended at each."""
    return [
        "def _steps_to_run(x, lengths):",
        '    """x up to the longest sequence\'s end; where each sequence has ended, as (T, B, 1) booleans (None',
        "    where none ends before that); and, for each step, whether some sequence has ended by then. A",
        "    ValueError says what is wrong with lengths. The padding is zeroed (in a copy), so that what it",
        '    holds, nan or inf even, reaches no result."""',
        "    if lengths is None:",
        "        return x, None, [False] * len(x)",
        "    lengths = _checked_lengths(lengths, x.shape)",
        "    x = x[:int(lengths.max(initial=0))]",
        "    ended = (np.arange(len(x))[:, np.newaxis] >= lengths)[:, :, np.newaxis]",
        "    masked = ended.any(axis=(1, 2)).tolist()",
        "    if not any(masked):",
        "        return x, None, masked",
        "    return np.where(ended, 0, x), ended, masked",
        "",
        "",
        *_checked_lengths_function(),
        "",
        "",
        *_integer_lengths_function(),
    ]


def _checked_lengths_function():
    """_checked_lengths(): lengths as B integers from 0 to T, or a ValueError saying what is wrong
    with them in the caller's terms and what to pass."""
    return [
        "def _checked_lengths(lengths, shape):",
        '    """lengths as an integer array of B entries from 0 to T (shape: x\'s, (T, B, D)), or a ValueError',
        '    that says what is wrong with them and what to pass instead."""',
        "    T, B = shape[:2]",
        '    given, lengths = lengths, _array("lengths", lengths)',
        '    wanted = f"lengths: expected {B} integers from 0 to T = {T}, each sequence\'s number of steps"',
        "    if isinstance(given, (str, bytes)):  # NumPy reads a string as one object, not as its characters",
        '        raise ValueError(f"{wanted}, got a {type(given).__name__}, {given!r:.40}, which is not a sequence of "',
        '                         "lengths; pass a list or an array of integers")',
        "    if lengths.ndim == 0:",
        '        if lengths.dtype.kind in "iuf":',
        '            raise ValueError(f"{wanted}, got the single number {lengths.item()}; pass one per "',
        '                             f"sequence (np.full({B}, {lengths.item()}) where all are alike)")',
        '        raise ValueError(f"{wanted}, got a {type(given).__name__}, which NumPy reads as one object, not as "',
        '                         f"numbers; pass a list or an array of integers in the batch\'s order"',
        '                         + ("" if not hasattr(given, "__next__") else " (of an iterator: list(lengths))"))',
        "    if lengths.shape != (B,):",
        '        hint = ("; a (T, B) mask of the steps each sequence runs gives them as mask.sum(axis=0)"',
        '                if lengths.shape == (T, B) else "; pass lengths.ravel()" if lengths.size == B else',
        '                "; pass one for each sequence x[:, b], b from 0 to B - 1")',
        '        raise ValueError(f"lengths: expected one integer per sequence, B = {B} (x is time-major, (T, B, D) = "',
        '                         f"{shape}), got shape {lengths.shape}{hint}")',
        "    lengths = _integer_lengths(lengths)",
        "    outside = np.flatnonzero((lengths < 0) | (lengths > T))",
        "    if outside.size:",
        "        i = outside[0]",
        '        fix = ("x holds T steps: pad x to the longest sequence" if lengths[i] > 0 else',
        '               "a sequence has 0 steps or more")',
        '        raise ValueError(f"lengths: expected each from 0 to T = {T}, got lengths[{i}] = {lengths[i]}; {fix} "',
        '                         f"(of x in chunks, the chunk from step t0 takes np.clip(lengths - t0, 0, T))")',
        "    return lengths.astype(np.int64, copy=False)  # Python's integers (dtype object) and whole floats too, within 0 to T",
    ]


def _integer_lengths_function():
    """_integer_lengths(): lengths of B entries as integers, or a ValueError naming an entry that is
    not one."""
    return [
        "def _integer_lengths(lengths):",
        '    """lengths (B,) as whole numbers: integers, Python\'s beyond int64 (dtype object) as they are, and',
        "    floats that are whole (a float tensor's lengths, np.array([3.0, 5.0])), which the caller converts",
        "    once they are known to lie within 0 to T; or a ValueError naming the first entry that is not a",
        '    whole number of steps, or the dtype."""',
        '    if lengths.dtype.kind in "iu" or not lengths.size:  # [] for B = 0 reads as an empty float array',
        "        return lengths",
        "    if lengths.dtype == object:  # Python's integers beyond int64, or entries of several types",
        "        wrong = [i for i, n in enumerate(lengths) if not _whole(n)]",
        "        if not wrong:",
        "            return lengths",
        "        i = wrong[0]",
        '        raise ValueError(f"lengths: expected integers, got lengths[{i}] = {lengths[i]!r} of type "',
        '                         f"{type(lengths[i]).__name__}; pass each sequence\'s number of steps as an integer")',
        '    if lengths.dtype.kind == "b":',
        '        raise ValueError("lengths: expected integers, got dtype bool, which are not numbers of steps; for "',
        '                         "one step that some sequences take (True) and others not, pass running.astype(int)")',
        '    if lengths.dtype.kind == "c":  # .astype(int) would drop the imaginary parts with a warning',
        '        raise ValueError(f"lengths: expected integers, got dtype {lengths.dtype}; pass lengths.real.astype(int) "',
        '                         "where every imaginary part is 0")',
        '    if lengths.dtype.kind != "f":',
        '        raise ValueError(f"lengths: expected integers, got dtype {lengths.dtype}; convert them with .astype(int)")',
        "    with np.errstate(invalid=\"ignore\"):  # nan and inf are not whole: named below",
        "        broken = np.flatnonzero(~np.isfinite(lengths) | (lengths != np.round(lengths)))",
        "    if broken.size:",
        "        i = broken[0]",
        '        raise ValueError(f"lengths: expected integers, got lengths[{i}] = {lengths[i]}, not a whole number "',
        '                         "of steps; pass each sequence\'s number of steps as an integer")',
        "    return lengths",
        "",
        "",
        "def _whole(n):",
        '    """Whether n, an entry of an object array of lengths, is a whole number of steps (not a bool)."""',
        "    if isinstance(n, (bool, np.bool_)):",
        "        return False",
        "    return isinstance(n, (int, np.integer)) or isinstance(n, (float, np.floating)) and float(n).is_integer()",
    ]


def _checked_cache_function(k):
    """_checked_cache(): backward()'s check that its cache is forward()'s, from these parameters and x."""
    keys = [item.split('"')[1] for item in _cache_items(k)][1:]  # the first, "cell", is checked first
    return [
        "def _checked_cache(cache, D, H, arrays):",
        '    """The cache\'s x, or a ValueError unless forward() of this cell made it with these parameters',
        '    (arrays, in PARAMS order) and x is as forward() left it, as far as their sizes, dtype and',
        '    _fingerprints() tell."""',
        '    made = cache.get("cell") if isinstance(cache, dict) else None',
        "    if made != CELL:",
        '        got = f"the cache of {made}" if made else type(cache).__name__',
        "        if isinstance(cache, tuple) and len(cache) == 3 and isinstance(cache[2], dict):",
        '            got += ", forward()\'s whole result: pass its third item, the cache"',
        '        raise ValueError(f"cache: expected what forward() of {CELL} returned, got {got}")',
        *_wrapped("    kept = (", [f'"{n}"' for n in keys], ")"),
        "    missing = [n for n in kept if n not in cache]",
        "    if missing:  # a cache pickled by another version of this kernel, say",
        '        raise ValueError(f"cache: expected what forward() of {CELL} returned, got a dict of {CELL} without "',
        '                         f"{missing}, which this kernel\'s forward() keeps: run forward() again")',
        '    x, dtype = cache["x"], arrays[0].dtype',
        '    if (x.shape[2], cache["H"], x.dtype) != (D, H, dtype):',
        '        raise ValueError(f"params: D = {D}, H = {H}, dtype {dtype}, but forward() made the cache with "',
        '                         f"D = {x.shape[2]}, H = {cache[\'H\']}, dtype {x.dtype}: pass the same parameters")',
        '    for name, kept, now in zip(PARAMS + ("x",), cache["fingerprints"], _fingerprints(arrays, x)):',
        "        if kept == now or np.array_equal(kept, now, equal_nan=True):  # a list holds NaN != NaN",
        "            continue",
        '        if name == "x":  # a batch buffer refilled before backward(), say',
        '            raise ValueError("x: changed since forward() ran (a weighted sum of its entries differs): the cache holds x "',
        '                             "itself, not a copy; change x only after backward(), or give forward() a copy")',
        '        raise ValueError(f"params: {name} is not what forward() ran with (a sample of its entries differs): "',
        '                         "pass the parameters forward() had, unchanged (update them after backward())")',
        "    return x",
    ]


def _fingerprints_function():
    """_fingerprints(): what backward() compares to tell arrays changed since forward() from those it
    ran with."""
    return [
        "_SAMPLE_INDICES = {}  # (size, columns) -> the flat indices sampled in arrays of that shape: found once",
        "_WEIGHTS = {}  # (n, axis) -> n weights in [1, 2), no two alike: found once",
        "_STRIDES = (0.6180339887498949, 0.41421356237309515, 0.7320508075688772)  # steps, rows, columns: unlike",
        "",
        "",
        "def _fingerprints(arrays, x):",
        '    """What backward() compares with forward()\'s: sixteen values of each parameter array, spread over',
        "    its rows and columns (a stride prime to the number of columns), enough to tell another layer's",
        "    parameters, or these updated in place; and a sum of every entry of x, in float32 at least, each",
        "    weighted by the product of its step's, row's and column's weights, since a sample of a one-hot",
        "    or padded x sees zeros alone: another batch, even one that moves the same values to other",
        "    steps, rows or columns, gives another sum. In a few microseconds for the parameters; for x one",
        '    pass over it, the same sum in any memory order."""',
        "    out = []",
        "    for a in arrays:",
        "        key = (a.size, a.shape[-1])",
        "        indices = _SAMPLE_INDICES.get(key)  # get, not [key]: another thread may clear the dict",
        "        if indices is None:",
        "            if len(_SAMPLE_INDICES) > 256:  # starts afresh: ever new shapes do not grow it without bound",
        "                _SAMPLE_INDICES.clear()",
        "            step = max(1, a.size // 16)",
        "            while step > 1 and np.gcd(step, a.shape[-1]) != 1:",
        "                step -= 1",
        "            indices = _SAMPLE_INDICES[key] = np.arange(0, min(a.size, 16 * step), step)",
        "        out.append(a.flat[indices].tolist())  # in any memory order; ravel() copies all of a transposed a",
        "    wide = np.result_type(x.dtype, np.float32)  # in float16 the sum overflows at 65504, and weights collide",
        "    weights = [_weights(n, axis).astype(wide, copy=False) for axis, n in enumerate(x.shape)]",
        "    with np.errstate(over=\"ignore\", invalid=\"ignore\"):  # an x of inf or huge values sums to inf both times",
        "        by_row = _weighted_rows(x, weights[2], wide)",
        '        out.append(np.einsum("tb,t,b->", by_row, weights[0], weights[1]).item())',
        "    return out",
        "",
        "",
        "def _weighted_rows(x, weights, wide):",
        '    """The (T, B) sums of x times the columns\' weights, in C order whatever x\'s memory order: einsum adds',
        "    a row's columns in one order where they are adjacent and in another where they are strided, a sum",
        "    over its result in the order of that result's memory, and a pickled or deep-copied cache holds x",
        '    in C order. einsum, not BLAS: the same sum every time."""',
        "    T, B, D = x.shape",
        "    if x.strides[2] == x.itemsize or D < 2:",
        '        return np.einsum("tbd,d->tb", x, weights, dtype=wide, order="C")',
        "    by_row = np.empty((T, B), wide)",
        "    steps = max(1, 2**20 // max(1, B * D * x.itemsize))  # a MiB of x at a time, copied into C order",
        "    for t0 in range(0, T, steps):",
        "        part = np.ascontiguousarray(x[t0:t0 + steps])",
        '        np.einsum("tbd,d->tb", part, weights, dtype=wide, out=by_row[t0:t0 + steps])',
        "    return by_row",
        "",
        "",
        "def _weights(n, axis):",
        '    """n weights in [1, 2), each unlike the others: 1 plus the fractional parts of the multiples of an',
        "    irrational number, another for each axis of x (steps, rows, columns), so that no product of a",
        '    step\'s and a row\'s weight is another\'s with the two swapped (a batch transposed)."""',
        "    weights = _WEIGHTS.get((n, axis))",
        "    if weights is None:",
        "        if len(_WEIGHTS) > 256:",
        "            _WEIGHTS.clear()",
        "        weights = _WEIGHTS[n, axis] = 1 + np.arange(n) * _STRIDES[axis] % 1",
        "    return weights",
    ]


def _checked_state_function(k):
    """_checked_state(): a state (or dstate) tuple as arrays (B, H), None meaning zeros."""
    arrays = f"{len(k.states)} array{'s' if len(k.states) > 1 else ''}"
    return [
        'def _checked_state(state, B, H, dtype, name="state"):',
        '    """The state tuple as arrays (B, H); None, or None for one array, means zeros. Copies: with T = 0,',
        '    backward() returns its dstate as the initial state\'s gradient, which must not be the caller\'s array."""',
        "    if state is None:",
        "        return tuple(np.zeros((B, H), dtype) for _ in STATES)",
        "    if not isinstance(state, (tuple, list)):",
        f'        raise ValueError(f"{{name}}: expected a tuple of {arrays} {{STATES}}, got {{type(state).__name__}}; "',
        f'                         "pass {_tuple(k.states)}")',
        "    if len(state) != len(STATES):",
        f'        raise ValueError(f"{{name}}: expected {arrays} {{STATES}}, got {{len(state)}}; pass {_tuple(k.states)}")',
        '    return tuple(np.zeros((B, H), dtype) if a is None else _checked(f"{name}[{s}]", a, (B, H), "(B, H)", dtype).copy()',
        "                 for s, a in zip(STATES, state))",
    ]


def _input_weight(k):
    """The first affine reading x, and its weight of x."""
    a = next(a for a in k.cell.affines if k.x in a.inputs)
    return a, a.weights[a.inputs.index(k.x)]


def _sizes_function(k):
    """_sizes(params): D and H read off the input's weight in the first affine reading x, and H
    checked against a weight of an H-sized input, so that a wrong shape is blamed on both."""
    a, w = _input_weight(k)
    count, rows = len(a.blocks), k.size_expr(a)
    lines = ["def _sizes(params):",
             '    """D and H, read off the weights."""',
             f'    {w} = _array("{w}", params["{w}"]).shape']
    refusal = f'        raise ValueError(f"{w}: expected shape ({rows}, D), got {{_weight_shape(params[\'{w}\'], {w})}}")'
    if count > 1:
        lines += [f"    if len({w}) != 2 or {w}[0] % {count}:", refusal, f"    D, H = {w}[1], {w}[0] // {count}"]
    else:
        lines += [f"    if len({w}) != 2:", refusal, f"    D, H = {w}[1], {w}[0]"]
    other = next(((b, u) for b in k.cell.affines for u, v in zip(b.weights, b.inputs) if v != k.x), None)
    if other:
        b, u = other
        u_rows = k.size_expr(b)
        lines += [f'    {u} = _array("{u}", params["{u}"]).shape',
                  f"    if len({u}) == 2 and {u}[1] != H:",
                  f'        raise ValueError(f"{w} {{{w}}} and {u} {{{u}}} disagree on H: expected {w} ({rows}, D) '
                  f'and {u} ({u_rows}, H)")']
    return lines + ["    return D, H", "", "", *_WEIGHT_SHAPE]


_WEIGHT_SHAPE = (
    "def _weight_shape(given, shape):",
    '    """A weight\'s shape as a refusal names it: the value where it is no array, with the advice for an',
    '    extra leading axis of length 1."""',
    "    if not shape:",
    '        return "None" if given is None else f"a {type(given).__name__}, {given!r:.40}"',
    '    return f"{shape}; drop the leading axis of length 1 with [0]" if len(shape) == 3 and shape[0] == 1 else f"{shape}"',
)


# A sequence of no steps keeps its initial state, which may hold anything (inf marking a slot not in
# use), but the loop steps every row and masks the ended ones after.
_STAND_INS = (
    "def _stand_in_rows(states, ended):",
    '    """The rows of the sequences of no steps whose initial state is not finite, and their values in',
    "    each state (None where there are none). In states, copies, those rows take a running sequence's",
    "    values: the loop computes them and drops the result, and with inf or nan NumPy would warn of",
    '    invalid values at every step, in backward() too, and for nothing."""',
    "    if ended is None:",
    "        return None",
    "    finite = np.all([np.isfinite(s).all(axis=1) for s in states], axis=0)",
    "    rows = np.flatnonzero(ended[0, :, 0] & ~finite)",
    "    if not rows.size:",
    "        return None",
    "    kept = tuple(s[rows] for s in states)",
    "    running = np.argmin(ended[0, :, 0])  # there is one: the loop runs",
    "    for s in states:",
    "        s[rows] = s[running]",
    "    return rows, kept",
    "",
    "",
    "def _with_initial_rows(ys, final, unrun):",
    '    """ys and the final state with the rows _stand_in_rows() stood in for given back their initial',
    '    state, which they keep: ys in a read-only copy."""',
    "    rows, kept = unrun",
    "    ys = ys.copy()",
    "    ys[:, rows] = kept[STATES.index(OUTPUT)]",
    "    ys.flags.writeable = False",
    "    for s, initial in zip(final, kept):",
    "        s[rows] = initial",
    "    return ys, final",
)
