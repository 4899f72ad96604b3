"""The text of backward(): the views of the cache's buffers and of the adjoints' buffers, the
products of local derivatives formed for a span of steps just before the loop reaches it, the
loop's step (each pre-activation adjoint written over its gate's value once read, a twin's
gathered for its GEMM), the rows of sequences that have ended passed across it, and the
parameters' and the input's gradients after the loop."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import sympy

from ..derive import MatTerm, Term, adjoint, summed
from ..spec import Affine, column_view
from .forward import _buffers, _gate_views, _invariant_lines, _state_doc
from .printing import (
    _CodePrinter, _assign_tuple, _aux_printer, _col_range, _into, _lines, _mentions, _number_arrays,
    _product_into, _read_only, _tuple, _unpack, _unpack_tuple, _whole, _wrapped,
)


def _adjoint_block_views(a):
    """da_i_seq, da_f_seq = _blocks(dpre_W_seq, 2): views of an affine's adjoint buffer by block."""
    source = f"dpre_{a.name}_seq"
    names = [f"d{b}_seq" for b in a.blocks]
    if len(names) == 1:
        return f"{names[0]} = {source}"
    return _unpack(names, f"_blocks({source}, {len(names)})")


def _backward(k):
    head = _backward_head(k)
    invariants = ["    " + line for line in _invariant_lines(k)]  # those backward() reads stay (_read_only)
    in_loop = [s for s in k.d.steps if k.summed(s) and k.in_loop(s)]
    loop = _backward_loop(k, in_loop)
    gathered = {a.name for a in k.cell.affines if _mentions("\n".join(loop), f"dpre_{a.name}_by")}
    body = ["    " + line for line in _sequence_views(k, gathered) + _zero_lines(k)] + invariants
    body += [f"    {s.adjoint} = np.zeros((B, H), x.dtype)  # summed over the steps in the loop, over the batch after it"
             for s in in_loop]
    body += [f"    {s.adjoint}_zero = np.zeros((B, H), x.dtype)  # ({s.number}) dL/d{s.target} at every step: no "
             f"equation reads {s.target}" for s in k.zero_adjoints]
    body += loop
    body += _backward_gradients(k, in_loop)
    body = _read_only(_unread_aliases_as_comments(body), invariants)
    read = [n for n in _buffers(k) if _mentions("\n".join(body), n)]
    at = head.index(_CACHE_UNPACK)
    head[at:at + 1] = _wrapped(f"    {', '.join(read)} = (", [f'cache["{n}"]' for n in read], ")", bare=True) if read else []
    quiet = ['    with np.errstate(under="ignore"):  # a gradient fading to subnormals is no error']
    return _lines(*head, *quiet, *(f"    {line}" if line else line for line in body))


def _backward_head(k):
    """backward()'s signature, docstring and argument checks, with a mark where the cache's buffers
    are unpacked (_CACHE_UNPACK)."""
    params = k.cell.parameter_names()
    body = [
        "def backward(params, cache, dys=None, dstate=None):",
        *_backward_doc(k),
        f"    {_unpack_tuple(params, '_checked_params(params)')}",
        "    D, H = _sizes(params)",
        f"    x = _checked_cache(cache, D, H, {_tuple(params)})",
        "    T, B = x.shape[:2]",
        '    T_all = cache["T_all"]  # T, or more where forward() stopped at the longest sequence\'s end',
        '    dys = np.zeros((T_all, B, H), x.dtype) if dys is None else _checked("dys", dys, (T_all, B, H), "(T, B, H)", x.dtype)',
        _CACHE_UNPACK,  # the buffers backward() reads, once the rest of it is written
        "    " + _unpack_tuple([f"d{s}_next" for s in k.states], '_checked_state(dstate, B, H, x.dtype, name="dstate")'),
    ]
    why = ('"(it writes the gradients over the gate values it holds)' if k.in_place else
           '"(one call per cache, as in the kernels that write their gradients over it)')
    body += [
        '    if cache["spent"]:',
        '        raise ValueError("cache: backward() has used it up already "',
        f'                         {why}; "',
        '                         "run forward() again")',
        '    cache["spent"][...] = True  # an array, not a flag of the dict: a copy of the dict shares it',
    ]
    return body + [
        "    if T < T_all:  # the steps not run repeat the final state: their dys are its gradient's",
        f"        d{k.cell.output_state}_next, dys = d{k.cell.output_state}_next + _summed(dys[T:], 0), dys[:T]",
    ]


def _backward_doc(k):
    """backward()'s docstring: what it takes and returns, and what it does to the cache."""
    return [
        '    """Backpropagation through time for the forward() call that made cache: the gradients of a loss',
        "    L of its ys and final state.",
        "",
        "    params: the values forward() ran with; their sizes, dtype and a sample of their entries are checked.",
        "    cache: forward()'s, for one call: "
        + ("the gates' gradients are written over the gate values it holds."
           if k.in_place else "a second is refused, as by the kernels that write their\n        gradients over it."),
        "    dys: (T, B, H), dL/dys; None means zeros (a loss of the final state alone). Past a sequence's end",
        "        (forward()'s lengths) its dys reach the state it kept, as its outputs there repeat it.",
        f"    dstate: dL/d(final state), {_state_doc(k, 'd')}; None, or None for one array,",
        "        means zeros.",
        "",
        "    Returns (grads, dx, dstate0), of the parameters' dtype:",
        "    grads: a dict of dL/d(parameter) by the names in PARAMS, each of its parameter's shape.",
        "    dx: (T, B, D), dL/dx; zero past each sequence's end.",
        f'    dstate0: dL/d(initial state), {_state_doc(k, "d")}."""',
    ]


def _backward_loop(k, in_loop):
    """The numbers made once and the loop over the steps, in spans where products are formed
    before the loop reaches them; in_loop: the summed adjoints the loop adds to."""
    products, step = _hoisted_lines(k), _passing_ended(k, _backward_step(k), [s.adjoint for s in in_loop])
    body = ["    " + line for line in _number_arrays(products + step, k.numbers)]
    body += [
        '    ended, masked = cache["ended"], cache["masked"]  # as _steps_to_run() gave them to forward()',
    ]
    if not products:
        return body + ["    for t in reversed(range(T)):"] + ["        " + line for line in step]
    body += [
        "",
        "    # The products of local derivatives read only forward values: they are formed for a span",
        "    # of steps at a time, just before the loop reaches it (one NumPy call per product for many",
        "    # steps when B*H is small, data still in cache when it is large), then scaled in place.",
        "    span = _span(B, H, x.dtype)",
        "    for t1 in range(T, 0, -span):",
        "        t0 = max(t1 - span, 0)",
    ]
    body += ["        " + line for line in products]
    body.append("        for t in reversed(range(t0, t1)):")
    return body + ["            " + line for line in step]


def _backward_gradients(k, in_loop):
    """The weights' and the input's gradients after the loop, the sums of the other parameters'
    and of the lets of parameters alone, and what backward() returns."""
    body = ["", "    # The weights' gradients (sums over time and batch) and the input's: one GEMM each, for all steps"
            + (";" if k.split else ".")]
    body += ["    # a weight whose blocks' adjoints lie in separate buffers takes one per run of adjacent blocks."] * bool(k.split)
    body += ["    " + line for line in _param_gradients(k)]
    body += ["    " + _input_gradient(k),
             "    if T < T_all:  # the steps not run read no x",
             "        dx = np.concatenate([dx, np.zeros((T_all - T, B, D), x.dtype)])"]
    for step in [s for s in k.d.steps if k.summed(s) and s.kind == "let"] + [k.d.step_for(p) for p in k.cell.params]:
        body.append(f"    {_summed_line(k, step, step in in_loop)}")
    grads = ", ".join(f'"{n}": d{n}' for n in k.cell.parameter_names())
    return body + [
        f"    grads = {{{grads}}}",
        f"    return grads, dx, {_tuple(f'd{s}_next' for s in k.states)}",
    ]


_CACHE_UNPACK = "<the cache's buffers>"


def _passing_ended(k, step, sums):
    """The backward step with the rows of sequences that have ended passed across it: the step is
    the identity for them, so the adjoints that reach their new state go to the previous one as they
    are, and what the step's own lines gave those rows (nan even, where a kept state is one the step
    would never make, a zero it divides by) is dropped: their pre-activations' adjoints are zeroed,
    the sums over steps the loop keeps (sums: their names) are restored."""
    arriving = [f"dys[t] + d{s}_next" if s == k.cell.output_state else f"d{s}_next" for s in k.states]
    nexts = [f"d{s}_next" for s in k.states]
    passing = [f"d{s}_passing" for s in k.states]
    out = k.states.index(k.cell.output_state)
    if _kept_as_computed(step, f"d{k.cell.output_state}", arriving[out]):  # the step's own dh is what arrives
        passing[out] = f"d{k.cell.output_state}"
    before = [f"    {p} = {a}" for p, a in zip(passing, arriving) if p.endswith("_passing")]
    before += [f"    {a}_kept = {a}.copy()" for a in sums]
    why = ["# A sequence that has ended: the step is the identity for its rows, so the adjoints that reach",
           "# their new state pass to the previous one as they are, and what the step gives them is dropped."]
    return [
        *([*why, "if masked[t]:", *before] if before else []),
        *step,
        *([] if before else why),
        "if masked[t]:",
        *(f"    {n} = np.where(ended[t], {p}, {n})" for p, n in zip(passing, nexts)),
        *(f"    np.copyto({buffer}[t], 0, where=ended[t])" for buffer in _adjoint_buffers(k)),
        *(f"    np.copyto({a}, {a}_kept, where=ended[t])" for a in sums),
    ]


def _kept_as_computed(step, name, value):
    """Whether the step computes name = value in a line of its own and neither writes into name nor
    assigns it again after: then name, after the step, is value."""
    lines = [line.split("  #")[0].strip() for line in step]
    computed = (f"{name} = {value}", f"np.add({value.replace(' + ', ', ')}, out={name})")  # (_root_into_block)
    at = next((i for i, line in enumerate(lines) if line in computed), None)
    if at is None:
        return False
    assigns = tuple(f"{name} {op}" for op in ("=", "+=", "-=", "*=", "/=")) + (f"{name}[",)
    outs = (f"out={name})", f"out={name},")
    return not any(line.startswith(assigns) or any(o in line for o in outs) for line in lines[at + 1:])


def _adjoint_buffers(k):
    """The buffers that keep the pre-activations' adjoints of every step for after the loop."""
    return [name for a in k.cell.affines for name in
            ([f"d{b}_seq" for b in a.blocks if b not in k.twins] if a.name in k.split else [_step_adjoints(a)])]


def _step_adjoints(a):
    """The name the loop reads an unsplit affine's adjoints by: its one block's (da_seq, as the
    line that scales it), else the whole buffer's."""
    return f"d{a.blocks[0]}_seq" if len(a.blocks) == 1 else f"dpre_{a.name}_seq"


_TWIN_ALIAS = re.compile(r"^(\s*)(\w+(?:, \w+)*) = (\w+(?:, \w+)*)  # (.*) (one adjoint for both blocks of .*)$")


def _unread_aliases_as_comments(lines):
    """A twin's alias (da_hr_seq = da_xr_seq) that no other line reads, as the comment it is."""
    text = "\n".join(lines)
    out = []
    for line in lines:
        m = _TWIN_ALIAS.match(line)
        pairs = list(zip(m.group(2).split(", "), m.group(3).split(", "))) if m else []
        read = [(n, v) for n, v in pairs if _mentions(text, n) > 1]
        if m and not read:
            ours, theirs = (", ".join(n.removesuffix("_seq") for n in g.split(", ")) for g in m.group(2, 3))
            line = f"{m.group(1)}# {m.group(4)} {ours} {'are' if ', ' in ours else 'is'} {theirs}: {m.group(5)}"
        elif m and len(read) < len(pairs):  # only the aliases a line reads
            line = f"{m.group(1)}{_assign_tuple([n for n, _ in read], [v for _, v in read])}  # {m.group(4)} {m.group(5)}"
        out.append(line)
    return out


def _sequence_views(k, gathered):
    """Named views of the buffers: the gates' values and the pre-activations' adjoints; for the
    affines named in gathered, the buffer their blocks' roots are gathered in (_gathered_lines)."""
    lines = []
    for a in sorted(k.cell.affines, key=lambda a: a.name in k.split):  # a twin's buffer comes first
        if a.name in k.split:
            lines += _split_views(k, a)
            continue
        if a.name in k.in_place:
            lines.append(f"dpre_{a.name}_seq = pre_{a.name}_seq  # each gate's adjoint goes over its value, once read")
        else:
            lines.append(f"dpre_{a.name}_seq = np.empty((T, B, {k.size_expr(a)}), x.dtype)")
        lines.append(_adjoint_block_views(a))
        runs = [(j0, j1) for j0, j1, _ in _scaled_runs(k, a) if j1 - j0 > 1]
        if a.name in gathered:
            lines += _roots_buffer(k, a)
        elif runs:
            lines.append(f"dpre_{a.name}_blocks = dpre_{a.name}_seq.reshape(T, B, {len(a.blocks)}, H)"
                         + _blocks_cols(a, runs) + "  # the blocks scaled together in the loop")
        if a.name in k.gates:
            lines.append(_gate_views(k, a))
    return lines


def _split_views(k, a):
    """A split affine's adjoints: each twin a view of its twin's, each other block a buffer of its
    own, and one step's adjoints gathered in dpre_<A> for the GEMM with the weight."""
    twins = [(b, *k.twins[b]) for b in a.blocks if b in k.twins]
    sums = ", ".join(text for _, _, text in twins)
    cite = ", ".join(f"({k.d.step_for(b).number})" for b, _, _ in twins)
    lines = [_assign_tuple([f"d{b}_seq" for b, _, _ in twins], [f"d{twin}_seq" for _, twin, _ in twins])
             + f"  # {cite} one adjoint for both blocks of {sums}"]
    lines += [f"d{b}_seq = {b}_seq  # its adjoint goes over its value, once read" if k.gate_of.get(b) == b
              else f"d{b}_seq = np.empty((T, B, H), x.dtype)" for b in a.blocks if b not in k.twins]
    lines.append(f"dpre_{a.name} = np.empty((B, {k.size_expr(a)}), x.dtype)  # one step's adjoints of "
                 f"{a.name}'s blocks, gathered for the GEMM")
    for part in _split_parts(k, a):  # the gather's views, made once
        names = [part.view(a)] + ([f"{part.source_view()}_seq"] if part.source else [])
        views = [f"dpre_{a.name}[:, {_col_range(part.first, part.end)}]"]
        if part.source:
            views.append(f"dpre_{part.source.name}_seq[..., {part.twin_cols()}]")
        lines.append(_assign_tuple(names, views))
    return lines


@dataclass
class _Part:
    """Blocks first to end - 1 of a split affine, and where their adjoints are: twins in the
    columns of their own affine's buffer from block column on, any other block (source None)
    in a buffer of its own."""

    first: int
    end: int
    source: Affine | None
    column: int = 0

    def twin_cols(self):
        return _col_range(self.column, self.column + self.end - self.first)

    def view(self, a):
        """The name of the view of the part's columns in dpre_<A>, which the loop fills."""
        return column_view(f"dpre_{a.name}", a.blocks[self.first:self.end])

    def source_view(self):
        """The name of the view of the twins' columns in their own affine's adjoint buffer."""
        return column_view(f"dpre_{self.source.name}", self.source.blocks[self.column:self.column + self.end - self.first])

    def at_step(self, a):
        """The part's adjoints at step t (see _split_views)."""
        if self.source is None:
            return f"d{a.blocks[self.first]}_seq[t]"
        return f"{self.source_view()}_seq[t]"

    def flat(self, a):
        if self.source is None:
            return f"d{a.blocks[self.first]}_seq.reshape(T * B, H)"
        return f"dpre_{self.source.name}_flat[:, {self.twin_cols()}]"


def _split_parts(k, a):
    """A split affine's blocks as _Parts: twins adjacent in their own affine make one part."""
    parts = []
    for j, b in enumerate(a.blocks):
        if b not in k.twins:
            parts.append(_Part(j, j + 1, None))
            continue
        twin = k.twins[b][0]
        source = k.affine_of(twin)
        i = source.blocks.index(twin)
        last = parts[-1] if parts else None
        if last and last.source is source and last.end == j and last.column + j - last.first == i:
            last.end = j + 1
        else:
            parts.append(_Part(j, j + 1, source, i))
    return parts


def _gather_lines(k, a):
    """The loop's copies of one step's adjoints of a split affine into dpre_<A>."""
    lines = []
    for part in _split_parts(k, a):
        blocks = a.blocks[part.first:part.end]
        cite = ", ".join(f"({k.d.step_for(b).number})" for b in blocks) + " dL/" + ", ".join(f"d{b}" for b in blocks)
        if part.source is not None:
            cite += ": equal to " + ", ".join(f"d{k.twins[b][0]}" for b in blocks)
        lines.append(f"{part.view(a)}[...] = {part.at_step(a)}  # {cite}")
    return lines


def _scaled_runs(k, a):
    """(first, end, root): runs of adjacent blocks of a whose hoisted chains end at one root,
    scaled by it in the loop with one multiplication."""
    runs = []
    for j, block in enumerate(a.blocks):
        chain = k.hoisted(k.d.step_for(block))
        if chain is None or block in k.twins:
            continue
        if runs and runs[-1][1] == j and runs[-1][2] == chain.root and a.name not in k.split:
            runs[-1] = (runs[-1][0], j + 1, chain.root)
        else:
            runs.append((j, j + 1, chain.root))
    return runs


def _zero_lines(k):
    return [f"{step.adjoint}_seq[...] = 0  # ({step.number}) nothing reads {step.target}"
            for step in k.d.steps if step.kind == "block" and not step.terms]


def _product_cuts(k, order):
    """Per product, in this order: (its step number, the index of the link from which on it reads
    a product formed before it, or None, and that product's step number). A chain's first own
    link is shared: a later chain through the same link multiplies its own locals by that product."""
    first, cuts = {}, []  # first: link number -> the step of the first product through it
    for step in order:
        links = k.chains[step.number].links
        cut = next((j for j, (link, _) in enumerate(links) if link.number in first), None)
        cuts.append((step.number, cut, None if cut is None else first[links[cut][0].number].number))
        for link, local in links:
            first.setdefault(link.number, step)
            if local != 1:
                break
    return cuts


def _product_reads(k, order):
    """Per product, in this order: the forward values it reads itself (its links before the
    product it shares), not those the shared product read."""
    reads = []
    for step, (_, cut, _) in zip(order, _product_cuts(k, order)):
        reads.append(set().union(*(local.free_symbols for _, local in k.chains[step.number].links[:cut])))
    return reads


def _temporaries(k, order):
    """How many products of this order wait in a temporary: those over a gate a later one reads."""
    reads = _product_reads(k, order)
    return sum(_read_later(k.gate_of.get(step.target), reads, n) for n, step in enumerate(order))


def _read_later(gate, reads, n):
    """Whether a product after the n-th reads the gate the n-th product goes over (reads: what each
    product reads, _product_reads)."""
    return gate is not None and any(gate in read for read in reads[n + 1:])


def _product_order(k, order, most=6):
    """The order of the span's products with the fewest temporaries (a gate's product waits in
    one while a later product still reads the gate), each sharing what it shares in the given
    order; the given order where no other needs fewer. Up to `most` products, tried exhaustively."""
    best, fewest = order, _temporaries(k, order)
    if len(order) > most or not fewest:
        return order
    same = sorted(_product_cuts(k, order))
    for other in itertools.permutations(order):
        if sorted(_product_cuts(k, other)) == same and (count := _temporaries(k, other)) < fewest:
            best, fewest = list(other), count
    return best


def _hoisted_lines(k):
    """Every hoisted chain's product of local derivatives, for the steps t0 to t1 - 1, in its
    adjoint's buffer.

    Chains through a common let share the product from it to their root: the shortest chains
    go first, and a longer one multiplies its own locals by a buffer that holds the shared
    part. A gate's buffer holds the gate's value until its product overwrites it; a product
    whose gate a later product still reads waits in a temporary until the end."""
    printer = _CodePrinter(k.span_names())
    lines, waiting = [], []
    for gate in k.saved:
        block = next(b for b, g in k.gate_of.items() if g == gate)
        lines.append(f"{gate}_span = {gate}_seq[t0:t1].copy()  # the loop reads {gate}; d{block} goes over it now")
    later = []  # the parts of span locals that the products hold, added once they are formed
    for local, name in k.span_locals.items():
        now, then = _span_local_lines(k, local, name, printer)
        lines += now
        later += then
    hoisted = _product_order(k, sorted((s for s in k.d.steps if k.hoisted(s) and s.target not in k.twins),
                                       key=lambda s: len(_own_links(k.chains[s.number]))))
    reads = _product_reads(k, hoisted)
    targets = {}  # step number -> (code, name) of the buffer its product is formed in
    for n, (step, (_, cut, shared)) in enumerate(zip(hoisted, _product_cuts(k, hoisted))):
        chain, slot = k.chains[step.number], f"{step.adjoint}_seq[t0:t1]"
        gate = k.gate_of.get(step.target)
        target = (slot, str(step.adjoint))
        if _read_later(gate, reads, n):
            target = (f"{step.adjoint}_tmp", str(step.adjoint))
            waiting.append((slot, target[0]))
            lines.append(f"{target[0]} = np.empty_like({slot})  # held apart: {step.adjoint} goes over {gate}, read below")
        targets[step.number] = target
        rest = None if cut is None else targets[shared]
        lines += _product_lines(chain, len(chain.links) if cut is None else cut, rest, target, gate, printer)
    for slot, temporary in waiting:
        lines += [f"{slot} = {temporary}", f"del {temporary}"]
    return lines + later


def _span_local_lines(k, local, name, printer):
    """A span local's lines before the products, and after them: where products formed for the
    span hold part of it (p_o*da_o in dh/dc), that part reads them once they are formed, not the
    gates again; the rest is formed first, while the gates it reads are still there."""
    own, via, own_cite = k.span_parts[local]
    numbers, top, bottoms, between = k.span_cites[local]
    bottom = bottoms[0]
    formed = "read by the loop"  # formed for the span at once, as the comment above the spans says
    if not via and between:  # d, not ∂: the derivative goes through the nodes between, along every path
        return [f"{name} = {printer.doprint(local)}  # {numbers} d{top}/d{bottom} through the nodes between, {formed}"], []
    if not via:
        derivative = " = ".join(f"∂{top}/∂{b}" for b in bottoms)
        return [f"{name} = {printer.doprint(local)}  # {numbers} {derivative}, {formed}"], []
    reads = _CodePrinter({**printer.names, **{chain.block.adjoint: f"{chain.block.adjoint}_seq[t0:t1]"
                                               for _, chain in via}})
    held = summed([Term("", chain.block.adjoint, coef).text(reads) for coef, chain in via])
    names = [str(chain.block.adjoint) for _, chain in via]
    products = f"{names[0]}'s product" if len(names) == 1 else f"{', '.join(names[:-1])}'s and {names[-1]}'s products"
    if not (own.xreplace(k.aux).free_symbols - k.constant):  # nothing of the span's own
        code = held if own == 0 else f"{held} + {printer.doprint(own)}"
        bare = own == 0 and len(via) == 1 and via[0][0] == 1  # a view of the product, which the loop scales
        return [], [f"{name} = {code}{'.copy()' if bare else ''}  # {numbers} d{top}/d{bottom} through {products}, {formed}"]
    copy = ".copy()" if own in printer.names or own.is_Symbol else ""  # a view: its own array
    added = f"{name} -= {held[1:]}" if held.startswith("-") and " " not in held else f"{name} += {held}"
    # d, not ∂, once the paths through the products are in: the sum is no longer one local derivative
    return ([f"{name} = {printer.doprint(own)}{copy}  # {own_cite}; paths through {products} follow"],
            [f"{added}  # {numbers} d{top}/d{bottom} with its paths through {products}"])


def _own_links(chain):
    return [(link, local) for link, local in chain.links if local != 1]


def _product_lines(chain, cut, rest, target, gate, printer):
    """The chain's product of locals into target (code, name): the links before cut, a line per
    local that cites its equation, times rest (code, name), which holds the product of the
    links from cut on."""
    plain, step = _CodePrinter(), chain.block
    (into, _), (rest_code, rest_name) = target, rest or (None, None)
    factor = plain.doprint(chain.factor)
    factor = f"({factor})" if isinstance(chain.factor, sympy.Add) else factor
    lines = [f"# {step.adjoint} = {factor} * {chain.root}: "
             f"the product now, times {chain.root} in the loop"]
    links = [(link, local) for link, local in chain.links[:cut] if local != 1]
    cite_rest = ", ".join(f"({link.number})" for link, local in chain.links[cut:] if local != 1)
    if rest is not None and not links:
        return [f"{_whole(into)} = {rest_code}  # ({step.number}) the same product as {rest_name}"]
    over_gate = gate is not None and not into.endswith("_tmp")
    if over_gate and any(gate in local.free_symbols for _, local in links[1:]):
        cite = ", ".join(f"({link.number})" for link, _ in links)  # the gate is read to the end
        factor = printer.doprint(sympy.Mul(*(local for _, local in links)))
        return lines + [f"{_whole(into)} = {factor}" + (f"*{rest_code}" if rest else "") + f"  # {cite}"]
    for n, (link, local) in enumerate(links):
        cite = f"  # ({link.number}) ∂{link.terms[0].consumer}/∂{link.target}"
        if n:
            lines.append(f"{into} *= {printer.doprint(local)}{cite}")
        elif rest is not None and len(links) == 1:
            return lines + [f"np.multiply({printer.doprint(local)}, {rest_code}, out={into}){cite}, "
                            f"times {cite_rest} from {rest_name}"]
        elif over_gate:  # one statement: every read of the gate happens before the write
            lines.append(_at_once(into, local, printer) + cite)
        else:
            code = _into(into, local, printer)  # more than one line: the citation heads them all
            lines += [code[0] + cite + (":" if len(code) > 1 else "")] + code[1:]
    if rest is not None:
        lines.append(f"{into} *= {rest_code}  # {cite_rest}: the product {rest_name} holds")
    return lines


def _at_once(target, expr, printer):
    """target = expr as one statement, safe when expr reads the memory target is."""
    if isinstance(expr, sympy.Mul):
        return _product_into(target, expr, printer)
    return f"{_whole(target)} = {printer.doprint(expr)}"


def _backward_step(k):
    """One step of the backward loop, in the derivation's order but for two moves: the carries
    that need no GEMM come before those through the weights, and an affine's pre-activation
    adjoints come as late as they can, just before the first line that multiplies them by a
    weight, so that each is written over its gate's value after the step's reads of it."""
    nodes = [s for s in k.d.steps if s.kind not in ("carry", "input")]
    carries = sorted((s for s in k.d.steps if s.kind == "carry"), key=lambda s: any(t.adjoint is None for t in s.terms))
    order = _StepEntries(k)
    for step in nodes + carries:
        if step.kind == "block":
            order.wait(k.affine_of(step.target))
        elif k.in_loop(step):
            order.add_blocks_read_by(step)
            order.add_affines_multiplied_by(step)
            order.add_line(step)
    order.add_pending()
    body = [line for line, _, _ in order.entries if line]
    body.append(_assign_tuple([f"d{s}_next" for s in k.states], [f"d{s}_prev" for s in k.states]))
    return _step_loads(k, order.entries) + body


class _StepEntries:
    """The backward step's entries in order, each (line, forward values read, gate written over),
    and the affines whose pre-activation adjoints wait (pending) for the first line that reads them
    or multiplies them by a weight."""

    def __init__(self, k):
        self.k, self.printer = k, _step_printer(k)
        self.entries = []
        self.pending = []  # affines whose blocks the derivation has reached, in that order
        self.emitted = set()  # the names of the affines whose blocks' adjoints are all in the step
        self.done = set()  # the block adjoints in the step (p*da_i in dc_prev reads da_i before its affine's turn)

    def wait(self, a):
        """a's block adjoints wait for their first reader."""
        if a not in self.pending and a.name not in self.emitted:
            self.pending.append(a)

    def add_line(self, step):
        """The step's own line, which writes over no gate (a block's adjoint does, in add_blocks)."""
        block = self.k.kept_blocks.get(step.adjoint)
        if block is not None:
            self.entries += [(line, _reads(self.k, step), None) for line in _root_into_block(self.k, step, block, self.printer)]
            return
        self.entries.append((_adjoint_line(self.k, step, self.printer), _reads(self.k, step), None))

    def add_blocks(self, a, blocks):
        """The lines of these blocks' adjoints (see _block_entries)."""
        self.entries += _block_entries(self.k, a, self.printer, blocks)
        self.done |= {adjoint(b) for b in blocks}

    def add_blocks_read_by(self, step):
        """The pending block adjoints the step's line reads, with those scaled in a run with them."""
        read = {t.adjoint for t in self.k.loop_terms(step)} - self.done
        for a in list(self.pending):
            blocks = _with_runs(self.k, a, [b for b in a.blocks if adjoint(b) in read])
            if not blocks:
                continue
            self.add_twins_of([a])  # a twin's adjoint is final before it is read
            self.add_blocks(a, blocks)
            if a.name in self.k.split:  # gathered for its GEMM already: not again
                self.emitted.add(a.name)
                self.pending.remove(a)

    def add_affines_multiplied_by(self, step):
        """The pending affines whose weights the step's line multiplies their adjoints by."""
        weights = {t.local.affine for t in step.terms if t.adjoint is None}
        due = [a for a in self.pending if a.name in weights]
        sources = _twin_source_names(self.k, due)
        due.sort(key=lambda a: a.name not in sources)  # a due affine that holds another's twins goes first
        self.add_twins_of(due)  # a twin's adjoint is final before it is gathered
        for a in due:
            self.add_blocks(a, [b for b in a.blocks if adjoint(b) not in self.done])
            self.emitted.add(a.name)
            self.pending.remove(a)

    def add_pending(self):
        """The adjoints still waiting: those of affines whose weights no line of the step multiplies
        (an affine of x alone: dx's GEMM does, after the loop)."""
        for a in self.pending:
            self.add_blocks(a, [b for b in a.blocks if adjoint(b) not in self.done])

    def add_twins_of(self, affines):
        """The twins of the affines' blocks, from the buffers that hold them: those alone, as another
        block of such a buffer may read what these affines' weights are about to give (da01 = v1'*dv1,
        dv1 = A2^T [da20; da21] with da20 the twin of da00)."""
        for src in _twin_sources(self.k, affines, self.emitted):
            blocks = [b for b in _twin_blocks(self.k, src, affines) if adjoint(b) not in self.done]
            if blocks:
                self.add_blocks(src, blocks)
            if all(adjoint(b) in self.done for b in src.blocks):
                self.emitted.add(src.name)
                if src in self.pending:
                    self.pending.remove(src)


def _step_printer(k):
    """The printer of the backward step's lines: dy as the step's dys, a kept call by its name, a
    weight's term as its GEMM, a block's adjoint at the step."""
    names = {sympy.Symbol("dy", real=True): "dys[t]"}
    names.update({call: str(name) for call, name in k.aux.items()})
    for a in k.cell.affines:
        for w, v in zip(a.weights, a.inputs):  # x's gradient is one GEMM after the loop
            if v != k.x:
                names[MatTerm(a, v)] = f"np.dot({f'dpre_{a.name}' if a.name in k.split else f'{_step_adjoints(a)}[t]'}, {w})"
    names.update({adjoint(b): f"{adjoint(b)}_seq[t]" for a in k.cell.affines for b in a.blocks})
    return _CodePrinter(names, arrays=k.numbers)


def _step_loads(k, entries):
    """The step's views of the forward values it reads, a copy of one that a line writes an adjoint
    over before another line reads it; entries: (line, values read, gate written over)."""
    copies, written = set(), set()
    for _, reads, writes in entries:
        copies |= reads & written
        written |= {writes} - {None}
    block_of = {gate: block for block, gate in k.gate_of.items()}
    return [f"{s} = {s}_span[t - t0]" if s in k.saved else
            f"{s} = {k.at_step(s)}" + (f".copy()  # d{block_of[s]} goes over it before the step's last read"
                                       if s in copies else "") for s in sorted(k.loop_reads, key=str)]


def _with_runs(k, a, blocks):
    """The blocks and those scaled with them in one run; every block of a split affine (its
    adjoints are gathered for the GEMM together)."""
    if not blocks or a.name in k.split:
        return list(a.blocks) if blocks else []
    runs = [a.blocks[j0:j1] for j0, j1, _ in _scaled_runs(k, a)]
    return [b for b in a.blocks if b in blocks or any(b in run and set(run) & set(blocks) for run in runs)]


def _twin_blocks(k, src, affines):
    """src's blocks that are twins of the affines' blocks, with those scaled in one run with them."""
    return _with_runs(k, src, [k.twins[b][0] for a in affines for b in a.blocks
                               if b in k.twins and k.twins[b][0] in src.blocks])


def _twin_source_names(k, due):
    """The names of the affines whose buffers hold twins of the due affines' blocks."""
    return {k.affine_of(k.twins[b][0]).name for a in due if a.name in k.split for b in a.blocks if b in k.twins}


def _twin_sources(k, due, emitted):
    """The affines whose buffers hold twins of the due affines' blocks, not yet in the loop."""
    names = _twin_source_names(k, due)
    return [a for a in k.cell.affines if a.name in names - emitted and a not in due]


def _reads(k, step):
    """The forward values a loop line reads."""
    chain = k.chains.get(step.number)
    if chain is not None:
        return set(chain.factor.free_symbols)
    return {s for t in k.loop_terms(step) if t.adjoint is not None and t.local not in k.span_locals
            for s in t.local.xreplace(k.aux).free_symbols}


def _block_entries(k, a, printer, blocks):
    """The loop's lines for the adjoints of some of an affine's blocks (with the runs they are
    scaled in), as (line, reads, gate written)."""
    entries = [(line, set(), None) for line in _scaled_lines(k, a, printer, blocks)]
    for block in blocks:
        step = k.d.step_for(block)
        if k.in_loop(step):
            entries.append((_adjoint_line(k, step, printer), _reads(k, step), k.gate_of.get(block)))
    if a.name in k.split:
        entries += [(line, set(), None) for line in _gather_lines(k, a)]
    return entries


def _roots_buffer(k, a):
    """The buffer a step's roots are gathered in, side by side as the blocks' adjoints lie in a
    row, and its views by run, made once (see _gathered_lines)."""
    runs, printer = _scaled_runs(k, a), _step_printer(k)
    views = [f"dpre_{a.name}_by.reshape(B, {len(a.blocks)}, H)[:, {j0}:{j1}]" if j1 - j0 > 1
             else f"dpre_{a.name}_by[:, {_col_range(j0, j1)}]" for j0, j1, _ in runs]
    names = [column_view(f"dpre_{a.name}_by", a.blocks[j0:j1]) for j0, j1, _ in runs]
    factors = "; ".join(f"{printer.doprint(root)} for {', '.join(map(str, a.blocks[j0:j1]))}" for j0, j1, root in runs)
    return [f"dpre_{a.name}_by = np.empty((B, {k.size_expr(a)}), x.dtype)  # each block's loop factor "
            f"({factors})", _assign_tuple(names, views)]


def _gathers(k, a, blocks):
    """Whether the step scales a's blocks by gathering their roots in a row (_gathered_lines): all
    at once, by more than one root. Each run's blocks are a strided view of the row, slower to
    multiply by its root (broadcast over a run's blocks) than the contiguous row by a copy of the
    roots (2x at B = 32, H = 128 for lstm's run of three): the copies cost less than they save
    (lstm 0.93-0.96 of the time at B = 1, lstm_cifg's three lone blocks 0.96-0.99)."""
    runs = _scaled_runs(k, a)
    return (a.name not in k.split and len(runs) > 1 and sum(j1 - j0 for j0, j1, _ in runs) == len(a.blocks)
            and set(a.blocks) <= set(blocks))


def _gathered_lines(k, a, printer):
    """Every block of a times its root with one multiplication of the step's row, the roots
    copied side by side first."""
    runs, steps = _scaled_runs(k, a), [k.d.step_for(b) for b in a.blocks]
    lines = [f"{column_view(f'dpre_{a.name}_by', a.blocks[j0:j1])}[...] = {printer.doprint(root)}"
             + ("[:, np.newaxis]" if j1 - j0 > 1 else "") for j0, j1, root in runs]
    lines[0] += "  # the whole row in one product, not one per strided run"
    cite = ", ".join(f"({s.number})" for s in steps)
    what = ", ".join(str(s.adjoint) for s in steps) + _through(_completed(k, steps))
    return lines + [f"dpre_{a.name}_seq[t] *= dpre_{a.name}_by  # {cite} dL/{what}"]


def _scaled_lines(k, a, printer, blocks):
    """The loop's part of the hoisted chains: each run of blocks times its root, in place."""
    if _gathers(k, a, blocks):
        return _gathered_lines(k, a, printer)
    lines, runs = [], _scaled_runs(k, a)
    view = _blocks_cols(a, [(j0, j1) for j0, j1, _ in runs if j1 - j0 > 1])
    for j0, j1, root in runs:
        if not set(a.blocks[j0:j1]) & set(blocks):
            continue
        steps = [k.d.step_for(b) for b in a.blocks[j0:j1]]
        cite = ", ".join(f"({s.number})" for s in steps)
        what = ", ".join(str(s.adjoint) for s in steps) + _through(_completed(k, steps))
        r = printer.doprint(root)
        if j1 - j0 == 1:
            lines.append(f"{steps[0].adjoint}_seq[t] *= {r}  # {cite} dL/{what}")
        else:
            whole = view or (j0, j1) == (0, len(a.blocks))  # the view is this run
            cols = "" if whole else f", :, {j0}:{j1}"
            lines.append(f"dpre_{a.name}_blocks[t{cols}] *= {r}[:, np.newaxis]  # {cite} dL/{what}")
    return lines


def _completed(k, steps):
    """The equations along the blocks' chains, past the blocks' own, whose adjoints the line that
    multiplies the root in completes: da_i = i(1 - i)*g * dc forms no di = g*dc, and the line's
    `*= dc` finishes (13) as well as (14). The factors are cited where the products are formed."""
    passed = {link.number for s in steps for link, _ in k.chains[s.number].links}
    return passed - {s.number for s in steps}


def _through(numbers):
    """", through (13)": the equations whose adjoints a line completes without forming them, after
    the ones it names (the document's table reads them too)."""
    return f", through {', '.join(f'({n})' for n in sorted(numbers))}" if numbers else ""


def _blocks_cols(a, runs):
    """The view's block range when one run of blocks is scaled together (made once, not sliced at
    every step): "[:, :, 0:3]"; "" when it is all blocks or there are several runs."""
    if len(runs) != 1 or runs[0] == (0, len(a.blocks)):
        return ""
    return f"[:, :, {runs[0][0]}:{runs[0][1]}]"


def _loop_cite(k, step):
    """A loop line's comment: its equation, and those of the lets it passes through without forming
    them (da = (...)*dh with dsigmoid_a = a*dh inlined: "(6) dL/da, through (5)"), where no local
    formed for the span holds their factors (that line cites them)."""
    inlined = k.inlined(step) if any(t.local not in k.span_locals for t in k.loop_terms(step)) else set()
    return f"({step.number}) dL/d{step.target}{_through(inlined)}"


def _step_code(k, step, printer, terms=None):
    """The step's sum of terms (or of these of its terms) as the textbook orders it, a local formed
    for the span by name."""
    terms = [f"{k.span_locals[t.local]}[t - t0]*{printer.doprint(t.adjoint)}" if t.local in k.span_locals
             else t.text(printer) for t in (k.loop_terms(step) if terms is None else terms)]
    return summed(terms)


def _adjoint_line(k, step, printer):
    where = f"  # {_loop_cite(k, step)}"
    code = _step_code(k, step, printer)
    if step.kind == "block":
        chain = k.chains.get(step.number)
        if step in k.kept_blocks.values():  # its root's line wrote it (_root_into_block)
            return ""
        if chain is not None:  # a constant product of locals (any other is hoisted): -da for f = 1 - i
            cite = ", ".join(f"({n})" for n in chain.numbers)
            return f"{step.adjoint}_seq[t] = {printer.doprint(chain.factor * chain.root)}  # {cite} dL/d{step.target}"
        if not step.terms:
            return ""
        terms = k.loop_terms(step)
        if len(terms) == 1 and terms[0].local in k.span_locals:  # into its storage, with no temporary
            local = f"{k.span_locals[terms[0].local]}[t - t0]"
            return f"np.multiply({local}, {printer.doprint(terms[0].adjoint)}, out={step.adjoint}_seq[t]){where}"
        return f"{step.adjoint}_seq[t] = {code}{where}"
    if k.summed(step):  # this step's share of the sum over time; the batch's is taken once, after
        if len(k.loop_terms(step)) == 1 and code.startswith("-"):
            return f"{step.adjoint} -= {code[1:]}  # ({step.number}) dL/d{step.target}"
        return f"{step.adjoint} += {code}  # ({step.number}) dL/d{step.target}"
    if step in k.zero_adjoints:  # one array of zeros for every step (no line writes into it)
        return f"{step.adjoint} = {step.adjoint}_zero{where}"
    if not step.terms:
        return f"{step.adjoint} = np.zeros((B, H), x.dtype){where}"
    return f"{step.adjoint} = {code}{where}"


def _root_into_block(k, step, block, printer):
    """dr = da_r_seq[t] and the sum dr's terms make, into it: da_r = dr with no copy of dr."""
    (first, second, *rest), name = [_step_code(k, step, printer, [t]) for t in k.loop_terms(step)], step.adjoint
    into = (f"np.subtract({first}, {second[1:]}, out={name})" if second.startswith("-")
            else f"np.add({first}, {second}, out={name})")
    return [f"{name} = {block.adjoint}_seq[t]  # ({block.number}) dL/d{block.target} = dL/d{step.target}: one array",
            f"{into}  # {_loop_cite(k, step)}",
            *(f"{name} -= {term[1:]}" if term.startswith("-") else f"{name} += {term}" for term in rest)]


def _summed_line(k, step, in_loop):
    """dp after the loop: the sum of what the loop added up, or of the steps' terms at once, plus
    the terms that read adjoints of lets of parameters alone (lam*(1 - lam)*dlam), once."""
    p = step.target
    total = next((g.number for g in k.d.param_grads if g.name == str(p)), None)
    if total is None:  # a let's: the sum is its own line's
        cite = f"({step.number}) dL/d{p}" + (", summed over the steps and rows" if in_loop else "")
    else:  # a parameter's: the loop added up its equation's terms, or they are summed here
        cite = (f"({total})" if in_loop else f"({step.number}), ({total})") + f" dL/d{p}"
    parts = [f"_summed({step.adjoint}, 0)" if in_loop else _summed_after(k, step)]
    late = k.late_terms(step)
    parts += [t.text(_aux_printer(k)) for t in late]
    if late:  # sum(local*dlam(t, b)) = local*sum(dlam(t, b)): the local is the same at every step
        cite += f", {' and '.join(str(t.adjoint) for t in late)} summed first"
    code = summed(parts, empty="np.zeros(H, x.dtype)")
    return f"{step.adjoint} = {code}  # {cite}"


def _summed_after(k, step):
    """dp = the sum over steps and rows of a parameter's terms, each local*da with da in its
    buffer: one einsum per term (no product of the two (T, B, H) arrays is made; a local that is
    an expression of sequences is), a number or a parameter's factor taken out of the sum."""
    names = {s: k.sequence(s) for s in k._forward_symbols()}
    names.update({name: k.sequence(name) for name in k.aux.values()})  # the locals hold tanh(u) as tanh_u
    printer, parts = _CodePrinter(names), []
    for t in k.per_step_terms(step):
        local = t.local.xreplace(k.aux)
        outside, inside = local.as_independent(*(local.free_symbols - k.constant), as_Add=False)
        local = f"_before_ends({printer.doprint(inside)}, ended)"
        total = (f"_summed_products({local}, {t.adjoint}_seq)" if inside != 1
                 else f"_summed({t.adjoint}_seq, (0, 1))")
        factor = f"({printer.doprint(outside)})" if isinstance(outside, sympy.Add) else printer.doprint(outside)
        parts.append(total if outside == 1 else "-" + total if outside == -1 else f"{factor}*{total}")
    return summed(parts, empty="")


def _param_gradients(k):
    cell, lines, done = k.cell, [], set()
    for a in cell.affines:
        if a.name not in k.split:
            lines.append(f"dpre_{a.name}_flat = dpre_{a.name}_seq.reshape(T * B, {k.size_expr(a)})")
    for g in k.d.param_grads:
        where = f"  # ({g.number}) dL/d{g.name}"
        a = next((a for a in cell.affines if a.name == g.affine), None)
        if a is not None and a.name in k.split and (g.kind == "weight" or g.name == a.biases[0]):
            lines += _split_gradient(k, a, g, done)
        elif g.kind == "weight":
            lines.append(f"d{g.name} = dpre_{g.affine}_flat.T @ {_flat_values(k, g.vector)}{where}")
        elif g.kind == "bias":
            if g.name == a.biases[0]:
                lines.append(f"d{g.name} = _summed(dpre_{a.name}_flat, 0){where}")
            else:
                lines.append(f"d{g.name} = d{a.biases[0]}.copy(){where}")
        done.add(g.name)
    return lines


def _split_gradient(k, a, g, done):
    """A split affine's weight or first bias gradient, a run of block rows at a time from where
    their adjoints are; done holds the bias gradients already computed, whose sums it reuses."""
    where, parts = f"  # ({g.number}) dL/d{g.name}", _split_parts(k, a)
    if g.kind == "bias":
        sums = [_known_sum(part, done) or f"_summed({part.flat(a)}, 0)" for part in parts]
        return [f"d{g.name} = np.concatenate([{', '.join(sums)}]){where}"]
    values, rows = _flat_values(k, g.vector), "D" if g.vector == k.x else "H"
    lines = [f"d{g.name} = np.empty(({k.size_expr(a)}, {rows}), x.dtype){where}, by runs of blocks:"]
    if g.vector != k.x and len(parts) > 1:  # guarded once (_before_ends), read by every run
        lines.append(f"{g.name}_input = {values}  # ({g.number}) {g.vector}, as every run reads it")
        values = f"{g.name}_input"
    return lines + [f"np.matmul({part.flat(a)}.T, {values}, out=d{g.name}[{_col_range(part.first, part.end)}])"
                    f"  # ({g.number}) the rows of {', '.join(b.name for b in a.blocks[part.first:part.end])}"
                    for part in parts]


def _known_sum(part, done):
    """The twins' bias gradient where their own affine's is computed already, or None."""
    source = part.source
    if source is not None and source.biases and source.biases[0] in done:
        return f"d{source.biases[0]}[{part.twin_cols()}]"
    return None


def _flat_values(k, vector):
    """The (T * B, D or H) values a weight's gradient reads: x, zeroed past the ends already, or a
    state or let, through _before_ends. x in C order: NumPy before 2.0 multiplies a strided x
    without BLAS, adding in another order, so that a pickled cache (x in C order) gave other
    last bits; a C-ordered x is not copied."""
    if vector == k.x:
        return "np.ascontiguousarray(x).reshape(T * B, D)"
    return f"_before_ends({k.sequence(vector)}, ended).reshape(T * B, H)"


def _input_gradient(k):
    step = next(s for s in k.d.steps if s.kind == "input")
    terms = [f"dpre_{a.name}_flat @ {w}" for a in k.cell.affines for w, v in zip(a.weights, a.inputs) if v == k.x]
    return f"dx = ({' + '.join(terms)}).reshape(T, B, D)  # ({step.number}) dL/d{k.x}"
