"""The kernel's plan: the facts about a derivation that the code templates need, worked out once
(``_Kernel``). Which affines' gates are activated together, which blocks are summed and activated
as fused runs, what the forward pass stores and in whose slot, which adjoints the backward loop
computes, the chains of local derivatives whose products are formed before it, the twins that
share one adjoint, the locals formed for a span of steps, and the values that read no state.
``_kernel`` widens the plan's input GEMMs to the affine inputs formed before the loop."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy

from ..derive import Derivation, Term, adjoint, primal
from ..spec import GATE_FUNCTIONS, Affine
from .printing import _CodePrinter, _Numbers, _numbers


def _single(step):
    """Whether an adjoint is one consumer's adjoint times a local derivative."""
    return len(step.terms) == 1 and step.terms[0].adjoint is not None


@dataclass(frozen=True)
class _Chain:
    """dL/d block = local_1 * local_2 * ... * root: the locals from a pre-activation through
    lets with one consumer each, up to the nearest adjoint the loop computes."""

    block: object  # the block's Step
    links: tuple  # (Step, local derivative), from the block outwards
    root: sympy.Symbol

    @property
    def factor(self):
        return sympy.Mul(*(local for _, local in self.links))

    @property
    def numbers(self):
        return [step.number for step, _ in self.links]


@dataclass(frozen=True)
class _FusedRun:
    """Gates v_j = kind(u_j), u_j = a_j + b_j (+ an elementwise part known before the step) over
    the j-th blocks of affines a and b, for j0 <= j < j1 (one block, or adjacent ones): summed and
    activated with one call each, where a's blocks were. Without b (None), u_j = a_j + its part
    known before the step, for two adjacent blocks or more (a light recurrence's f and r)."""

    a: Affine
    b: Affine | None
    j0: int
    j1: int
    kind: str  # "sigmoid" or "tanh"
    pairs: tuple  # (u, v) lets; u is None where the sum has no name (v = sigmoid(a_j + b_j))
    extras: tuple  # per pair, what the sum adds to the two blocks (a peephole's p*h_prev), or 0
    steady: tuple  # per pair, the part of the sum beyond the blocks that no step changes (joins a's bias), or 0

    def reader(self, i):
        """The let that reads the i-th pair's blocks: the sum, or the gate of an unnamed sum."""
        u, v = self.pairs[i]
        return u or v

    @property
    def beyond(self):
        """What the sums' extra parts go beyond, for comments."""
        return "its two blocks" if self.b is not None else "its block"

    def sum_text(self, i, shown):
        """The i-th sum as the script writes it (shown: each node's written form, by id)."""
        u, v = self.pairs[i]
        return f"{u.symbol} = {_CodePrinter().doprint(shown.get(id(u), u.expr))}" if u else sympy.sstr(v.expr.args[0])


class _Kernel:
    """The facts about a derivation that the code templates need, worked out once."""

    def __init__(self, derivation: Derivation, pre_lets=frozenset()):
        self.d = derivation
        self.pre_lets = pre_lets  # lets formed before the loop that affines read: their GEMMs are there too
        self.cell = cell = derivation.cell
        self.numbers = _Numbers(name for name, _, _ in cell._kernel_names())  # the loops' numbers, named as printed
        self.shown = {id(eq.node): eq.shown for eq in derivation.forward}  # each let as the script writes it
        self.node_number = {id(eq.node): eq.number for eq in derivation.forward}  # node -> (n)
        self.x = cell.inputs[0]
        self.states = list(cell.states)
        self.new_state = {s: let.symbol for s, let in cell.updates.items()}
        self.state_of_new = {v: s for s, v in self.new_state.items()}
        self.let_number = {eq.lhs[0]: eq.number for eq in derivation.forward if eq.rhs is not None}  # let -> (n)
        # applied by xreplace, not subs: for calls, subs finds just what xreplace finds, the calls
        # themselves, at about ten times the cost
        self.aux = self._auxiliaries()
        # vectors some affine reads: their values outlive the loop (the weight gradients read them)
        self.affine_inputs = {v for a in self.cell.affines for v in a.inputs}
        # lets and calls of parameters alone (lam = sigmoid(p)): formed once, their adjoints summed
        self.invariant = self._invariants()
        self.invariant_adjoints = {adjoint(v) for v in self.invariant}
        # gates; gate -> the elementwise part of its pre-activation beyond the block (a peephole's
        # p*c_prev); gate -> the number its block is multiplied by (sigmoid(2*a_i)), where it is not 1
        self.gates, extras, self.coefficients = self._gates()
        # gate -> the part of its extra that no step changes (a forget bias: sigmoid(a_f + 1)); the
        # extras keep the rest
        self.extras, self.steady = self._steady_extras(extras)
        self.gate_lets = {let.symbol for lets in self.gates.values() for let, _ in lets}
        self.by_adjoint = {step.adjoint: step for step in derivation.steps}
        self.loop_lets = self._loop_lets()
        self.chains = self._chains()
        self.stored = self._stored()
        self.placed = self._placements()
        self.fused = self._fused_gates()
        self.bias_folds = self._bias_folds()
        self.negated = self._negated_runs()
        occupants = self._occupants()
        self.in_place = self._in_place(occupants)
        # block -> the value that sits in its slot of pre_<A>_seq, which its adjoint goes over
        self.gate_of = {b: v for b, v in occupants.items() if self.affine_of(b).name in self.in_place}
        self.hoist = self._hoisted_blocks()
        self.twins = self._twins()
        # affines whose adjoints live per block, the twins' in their twin's buffer
        self.split = {self.affine_of(b).name for b in self.twins}
        self.gate_of.update(self._own_slots())
        # block -> the state whose new value it is, as it is (r = a_r): its GEMM writes the state's slot
        self.state_blocks = self._state_blocks()
        self._loop_lines = {}  # step number -> _loop_line(step)
        # local -> its name; its citation ("(9)", "h", "c"); (its own part, [(coefficient, chain)] read from products)
        self.span_locals, self.span_cites, self.span_parts = self._span_locals()
        self.loop_reads = self._loop_reads()
        self.saved = self._saved()
        # the blocks whose every step is known before the loop: those of affines with no loop part
        self.ready = {b for a in self.cell.affines if not self.affine_parts(a)[1] for b in a.blocks}
        self.early = self._early()
        # the calls the backward pass reads that read no state either (softplus(a) in c = exp(softplus(a))*c_prev)
        self.early_calls = {call for call in self.aux if call.free_symbols <= self.ready | self.constant | self.early}

    def _early(self):
        """The lets that read no state, directly or through others, formed for all steps at once
        before the loop (an SRU's gates, of x alone): one NumPy call per operation instead of one
        per step. A value the loop reads must have storage over the steps; gates activated together
        (one affine's, a fused run's) are early all together or not at all."""
        ready = self.ready
        early = set()
        for let in self.cell.lets:
            if (let.symbol not in self.state_of_new and let.symbol not in self.invariant
                    and let.expr.free_symbols <= ready | self.constant | early):
                early.add(let.symbol)
        # activated together: one affine's gates, a fused run's lets
        groups = [{let.symbol for let, _ in lets} for lets in self.gates.values()]
        groups += [{let.symbol for pair in run.pairs for let in pair if let is not None} for run in self.fused]
        over_steps = set(self.stored) | self.gate_lets | {v.symbol for run in self.fused for _, v in run.pairs}
        changed = True
        while changed:  # each drop can drop more: the values that read it, its group
            changed = False
            for let in [let for let in self.cell.lets if let.symbol in early]:
                read_in_loop = any(r.symbol not in early and (
                    r.expr.has(let.symbol) or (isinstance(let.expr, sympy.Function) and r.expr.has(let.expr)))
                    for r in self.cell.lets)
                unstored_for_the_loop = read_in_loop and let.symbol not in over_steps
                group_split = not next((g for g in groups if let.symbol in g), set()) <= early
                reads_a_dropped_one = not let.expr.free_symbols <= ready | self.constant | early
                if unstored_for_the_loop or group_split or reads_a_dropped_one:
                    early.discard(let.symbol)
                    changed = True
        return early

    @functools.cached_property
    def kept_blocks(self):
        """{root: block step} for the blocks whose adjoint is, as it is, a sum the loop computes (da_r = dr
        for r = a_r): the sum is written into the block's storage, where a copy of it was kept."""
        twins = set(self.twins) | {twin for twin, _ in self.twins.values()}
        kept = {}
        for step in self.d.steps:
            chain = self.chains.get(step.number)
            if (step.kind != "block" or chain is None or chain.factor != 1 or not self.in_loop(step)
                    or step.target in twins):
                continue
            root = self.by_adjoint.get(chain.root)
            if root is not None and self.in_loop(root) and not self.summed(root) and len(self.loop_terms(root)) > 1:
                kept[chain.root] = step
        return kept

    @functools.cached_property
    def zero_adjoints(self):
        """The loop's adjoints that are zero at every step: a previous state that no equation reads
        (an SRU's h_prev)."""
        return [s for s in self.d.steps if self.in_loop(s) and not s.terms and not self.summed(s)
                and s.kind not in ("input", "block")]

    def _auxiliaries(self):
        """Function applications the backward pass reads but no let names, kept from the forward
        pass that computes them: tanh(c) -> tanh_c. One that only the backward pass computes, a
        derivative read off a stored output (relu's [h > 0]), is formed there: storing it would
        cost memory and save nothing."""
        calls = set()
        for step in self.d.steps:
            calls |= step.result.atoms(sympy.Function)
        calls = {call for call in calls if not getattr(call, "read_off_output", False)}
        defined = {let.expr for let in self.cell.lets}
        aux, counts = {}, {}
        for call in sorted(calls - defined, key=sympy.default_sort_key):
            arg, func = call.args[0], type(call).__name__
            if isinstance(arg, sympy.Symbol):
                base = f"{func}_{arg}"
            else:  # numbered by function: exp0, softplus0 (names the spec holds for every unnamed call)
                base, counts[func] = f"{func}{counts.get(func, 0)}", counts.get(func, 0) + 1
            aux[call] = sympy.Symbol(base, real=True)
        # calls inside others first (relu(-a) before exp(-relu(-a))): the forward pass computes each
        # from those it holds
        return dict(sorted(aux.items(), key=lambda item: sum(item[0].has(c) for c in aux)))

    def _invariants(self):
        """The lets, and the calls the backward pass reads, of parameters alone: lam = sigmoid(p) is
        the same at every step, an (H,) vector formed once. Its name -> its expression, in order."""
        found = {}
        for let in self.cell.lets:
            if (let.expr.free_symbols <= set(self.cell.params) | set(found)
                    and let.symbol not in self.state_of_new and let.symbol not in self.affine_inputs):
                found[let.symbol] = let.expr
        for call, name in self.aux.items():
            if call.free_symbols <= set(self.cell.params) | set(found):
                found[name] = call
        return found

    def per_step_terms(self, step):
        """A step's terms whose adjoints vary with the step: all but those of lets of parameters
        alone, which the backward pass adds after the loop, once (lam*(1 - lam)*dlam in dp)."""
        return [t for t in step.terms if t.adjoint not in self.invariant_adjoints]

    def late_terms(self, step):
        return [t for t in step.terms if t.adjoint in self.invariant_adjoints]

    def summed(self, step):
        """Whether a step's adjoint is a sum over steps and rows: a parameter's, or a let's of
        parameters alone."""
        return step.kind == "param" or (step.kind == "let" and step.target in self.invariant)

    def _gates(self):
        """Affines whose every block feeds exactly one node, a sigmoid or tanh of that block, or of
        that block plus an elementwise part that reads no block (a peephole: sigmoid(a_i + p_i*c_prev)),
        the block perhaps times a number (sigmoid(2*a_i), where a sigmoid's exp carries it): (affine
        name -> [(let, kind)], gate -> its part beyond the block, gate -> the block's number)."""
        gates, extras, coefficients = {}, {}, {}
        for a in self.cell.affines:
            lets, parts, numbers = [], {}, {}
            for block in a.blocks:
                users = self.cell.readers(block)
                if len(users) != 1 or users[0].symbol in self.state_of_new:
                    break
                let = users[0]
                if not isinstance(let.expr, GATE_FUNCTIONS):
                    break
                number = let.expr.args[0].coeff(block)
                if not number.is_number or number == 0:
                    break
                extra = let.expr.args[0] - number * block
                if extra.free_symbols & set(self.cell.blocks):
                    break
                lets.append((let, type(let.expr).__name__))
                if extra != 0:
                    parts[let.symbol] = extra
                if number != 1:
                    numbers[let.symbol] = number
            else:
                if numbers and all(kind == "tanh" for _, kind in lets):
                    continue  # tanh gates alone are not activated through exp: no factor rides there
                gates[a.name] = lets
                extras.update(parts)
                coefficients.update(numbers)
        return gates, extras, coefficients

    def _steady_extras(self, extras):
        """The parts of gates' extras of parameters and numbers alone, which join the bias of the
        affine's input part once, before the loop, where it has one: (gate -> the rest of its
        extra, gate -> that part)."""
        rest, steady = dict(extras), {}
        for a in self.cell.affines:
            if a.name not in self.gates or not self.affine_parts(a)[0]:
                continue
            for let, _ in self.gates[a.name]:
                part = self._steady_part(extras.get(let.symbol, sympy.S.Zero))
                if part != 0:
                    steady[let.symbol] = part
                    rest[let.symbol] = extras[let.symbol] - part
        return {gate: e for gate, e in rest.items() if e != 0}, steady

    def _steady_part(self, extra):
        """The terms of a pre-activation's extra part of parameters and numbers alone."""
        return sympy.Add(*(t for t in sympy.Add.make_args(extra) if t.free_symbols <= self.constant))

    def complete_after_gemm(self, gate):
        """Whether a gate's pre-activation is complete right after its affine's GEMM (a peephole
        on c_prev is; one on the new c waits for c)."""
        extra = self.extras.get(gate)
        return extra is None or self.known_before_step(extra)

    def known_before_step(self, expr):
        """Whether expr reads only the previous states and parameters, and calls nothing (whose
        value the step would compute first)."""
        early = {self.cell.prev(s) for s in self.states} | self.constant
        return expr.free_symbols <= early and not expr.atoms(sympy.Function)

    def _loop_lets(self):
        """The numbers of the let steps whose adjoints the backward loop computes.

        A let with one consumer only passes that consumer's adjoint on, times a local
        derivative: a pre-activation's adjoint can take the whole product of such locals,
        computed for all steps before the loop (see _chains). The loop computes a let's adjoint
        only when it has several consumers or another adjoint of the loop reads it. A let of
        parameters alone is summed in the loop where its adjoint reads any that vary with the
        step, and after the loop from the others."""
        steps = self.d.steps
        summed = {s.number for s in steps if s.kind == "let" and s.target in self.invariant}
        late = {s.number for s in steps if s.number in summed and not self.per_step_terms(s)}
        loop = {s.number for s in steps if s.kind == "let" and (not _single(s) or s.number in summed)} - late
        changed = True
        while changed:
            changed = False
            readers = [s for s in steps if s.kind in ("state", "carry", "param") or s.number in loop | summed
                       or (s.kind == "block" and not _single(s))]
            for reader in readers:
                for term in reader.terms:
                    step = self.by_adjoint.get(term.adjoint)
                    if step is not None and step.kind == "let" and step.number not in loop | late:
                        if reader.kind == "block" and _single(step) and step.number not in summed:
                            continue  # the block's line reads its chain to the root instead (see loop_terms)
                        loop.add(step.number)
                        changed = True
        return loop

    def _chains(self):
        """Block step number -> its _Chain, for every pre-activation with one consumer."""
        chains = {}
        for step in self.d.steps:
            if step.kind != "block" or not _single(step):
                continue
            links, root = [(step, step.terms[0].local)], step.terms[0].adjoint
            # through lets with one consumer, and through a block whose adjoint is a gate's whole
            # pre-activation's (dr = a_hn*da_xn in a_xn + r*a_hn: da_xr = r*(1 - r)*a_hn*(1 - n**2)*dn)
            while (s := self.by_adjoint.get(root)) is not None and (
                    (s.kind == "let" and s.number not in self.loop_lets) or (s.kind == "block" and _single(s))):
                links.append((s, s.terms[0].local))
                root = s.terms[0].adjoint
            chains[step.number] = _Chain(step, tuple((s, local.xreplace(self.aux)) for s, local in links), root)
        return chains

    def _placements(self):
        """Stored values written into a block's slot of the input GEMM's buffer once the block
        is read: v -> (affine, block), where v = sigmoid(...) or tanh(...) is the block's only
        reader, or reads the let that is (a_r = a_hr + a_xr; r = sigmoid(a_r) sits where a_xr was)."""
        placed, taken = {}, set()
        for a in self.cell.affines:
            if a.name in self.gates or not self.affine_parts(a)[0]:
                continue  # gates sit there already; a loop-only affine has no buffer over the steps
            for b in a.blocks:
                v = self._sole_stored_reader(b)
                if v is not None and b not in self.stored and v not in taken:
                    placed[v] = (a, b)
                    taken.add(v)
                elif b in self.stored:  # a block the backward pass reads as it is (SRU's a_c): kept where it is
                    placed[b] = (a, b)
        return placed

    def _sole_stored_reader(self, symbol, depth=0):
        """The stored sigmoid or tanh that alone reads symbol, directly or through one let."""
        readers = self.cell.readers(symbol)
        if len(readers) != 1 or readers[0].symbol in self.state_of_new:
            return None
        let = readers[0]
        if let.symbol in self.stored and isinstance(let.expr, GATE_FUNCTIONS):
            return let.symbol
        if depth == 0 and let.symbol not in self.stored:
            return self._sole_stored_reader(let.symbol, 1)
        return None

    def _fused_gates(self):
        """Placed gates v_j = f(u_j), u_j = a_j + b_j, with a_j and b_j the j-th blocks of two
        affines (GRU: r, z from a_xr + a_hr, a_xz + a_hz), or u_j = a_j plus a part known before the
        step, or a_j itself (an LSTM's i, f, o where its candidate block is read as it is), as
        _FusedRuns, adjacent ones together."""
        lets = {let.symbol: let for let in self.cell.lets}
        found = {}  # (affine name, j) -> (a, b, kind, u, v, extra)
        for v, (a, block) in self.placed.items():
            if v == block:
                continue
            arg = lets[v].expr.args[0]
            u = lets.get(arg)  # the sum's let, or None for sigmoid(a_xr + a_hr)
            total = u.expr if u is not None else arg
            if total != block and (not isinstance(total, sympy.Add) or block not in total.args):
                continue  # the block itself, or a term of the sum, once (not 2*a00 + a10)
            j = a.blocks.index(block)
            other = [s for s in total.args if s != block and s in self.cell.blocks] if total != block else []
            extra = total - block - sum(other)
            if len(other) > 1 or not self.known_before_step(extra):
                continue  # one other block or none, and the rest known before the step's GEMMs
            b = next((b for b in self.cell.affines if b is not a and other and other[0] in b.blocks
                      and b.blocks.index(other[0]) == j), None)
            if b is not None or not other:
                found[a.name, j] = (a, b, type(lets[v].expr).__name__, u, lets[v], extra)
        runs = []
        for (_, j), (a, b, kind, u, v, extra) in sorted(found.items(), key=lambda item: item[0]):
            steady = self._steady_part(extra) if self.affine_parts(a)[0] else sympy.S.Zero
            last = runs[-1] if runs else None
            if last and last.a is a and last.b is b and last.j1 == j and last.kind == kind:
                runs[-1] = _FusedRun(a, b, last.j0, j + 1, kind, last.pairs + ((u, v),),
                                     last.extras + (extra - steady,), last.steady + (steady,))
            else:
                runs.append(_FusedRun(a, b, j, j + 1, kind, ((u, v),), (extra - steady,), (steady,)))
        # one affine's tanh gates alone pay only together: each by itself is activated as written; a
        # sigmoid by itself saves the negation (_negated_runs)
        return [run for run in runs if run.b is not None or len(run.pairs) > 1 or run.kind == "sigmoid"]

    def _bias_folds(self):
        """The fused runs whose second affine's bias joins the first's input bias once: the run's
        blocks of the second affine are read by the run's sums only (GRU: b_hr, b_hz join b_x)."""
        folds = []
        for run in self.fused:
            b = run.b
            if b is None or self.affine_parts(b)[0] or len(b.biases) != 1:
                continue
            blocks = b.blocks[run.j0:run.j1]
            if all(block not in self.stored and self.cell.readers(block) == [run.reader(i)]
                   for i, block in enumerate(blocks)):
                folds.append(run)
        return folds

    def _negated_runs(self):
        """The fused sigmoid runs: the rows of their first affine's weights and biases carry the -1
        of exp(-a), once per call (GRU's W_x for r, z), and the step subtracts the second affine's
        blocks (-a_r = -(a_xr + b_hr) - U_hr h_prev): no step negates the sums. Safe, as a run's
        blocks of its first affine are placed (_placements): the run's sums alone read them, and
        the backward pass does not."""
        return [run for run in self.fused if run.kind == "sigmoid"]

    def negated_blocks(self, a):
        """The indices of a's blocks that a negated run (_negated_runs) sums first."""
        return {j for run in self.negated if run.a is a for j in range(run.j0, run.j1)}

    def _twins(self):
        """Blocks of a loop-only affine whose adjoints equal those of an in-place affine's blocks,
        both only summed (a_r = a_hr + a_xr): block -> (its twin, the sum as text). The twin's buffer
        holds the one adjoint for both."""
        twins = {}
        for run in self.fused:
            a, b = run.a, run.b
            if b is None or a.name not in self.in_place or b.name in self.in_place or self.affine_parts(b)[0]:
                continue
            for i, j in enumerate(range(run.j0, run.j1)):
                ca, cb = (self.hoisted(self.d.step_for(block)) for block in (a.blocks[j], b.blocks[j]))
                if ca and cb and (ca.factor, ca.root) == (cb.factor, cb.root):
                    twins[b.blocks[j]] = (a.blocks[j], run.sum_text(i, self.shown))
        return twins

    def _state_blocks(self):
        """The blocks that are a new state's value as they are (a projection's r = a_r), of one-block
        affines with a part in the loop, read by nothing else: block -> the state's new value. The
        block's GEMM writes straight into the state's storage, where a buffer of its own would be
        copied there at every step."""
        found = {}
        for a in self.cell.affines:
            if len(a.blocks) != 1 or not self.affine_parts(a)[1] or a.name in self.gates or a.name in self.in_place:
                continue
            block, readers = a.blocks[0], self.cell.readers(a.blocks[0])
            if (len(readers) == 1 and readers[0].expr == block and readers[0].symbol in self.state_of_new
                    and block not in self.stored and block not in self.affine_inputs):
                found[block] = readers[0].symbol
        return found

    def _own_slots(self):
        """The stored blocks of split affines that are not twins: each adjoint goes over its
        block's values once read (GRU: da_hn over a_hn)."""
        return {b: b for a in self.cell.affines if a.name in self.split for b in a.blocks
                if b not in self.twins and b in self.stored and b not in self.affine_inputs}

    def _occupants(self):
        """block -> the value the forward pass writes in its slot of pre_<A>_seq: its gate's, or a
        value placed there."""
        occupants = {b: let.symbol for a in self.cell.affines if a.name in self.gates
                     for b, (let, _) in zip(a.blocks, self.gates[a.name])}
        occupants.update({b: v for v, (_, b) in self.placed.items()})
        return occupants

    def _in_place(self, occupants):
        """The affines whose pre-activation adjoints the backward pass writes over the values in
        their slots: every block has one, and no affine reads it (its weight gradient would, after)."""
        return {a.name for a in self.cell.affines
                if all(b in occupants and occupants[b] not in self.affine_inputs for b in a.blocks)}

    def _hoisted_blocks(self):
        """The blocks whose chain products are formed outside the loop: all whose locals read
        forward values. A gate the loop still reads is saved for the span first (see _saved)."""
        return {chain.block.target for chain in self.chains.values() if chain.factor.free_symbols}

    def _saved(self):
        """The gates the loop reads although their products go over them: copied per span."""
        return sorted(set(self.gate_of.values()) & self.loop_reads, key=str)

    def _span_locals(self):
        """Local derivatives of the loop's own adjoints that cost operations (o*(1 - tanh_c**2)
        in dc), formed with the products for a span of steps: (local -> the name of its values,
        local -> (its equations, the consumer, the node): "(9)", "h", "c")."""
        if not self.hoist:
            return {}, {}, {}
        # a local of parameters alone (1 + p) is no sequence: the loop reads it as it is
        forward = (set(self._forward_symbols()) | set(self.aux.values())) - self.constant
        found, cites, parts = {}, {}, {}
        for step in self.d.steps:
            if step.kind == "input" or not self.in_loop(step) or (step.kind == "block" and _single(step)):
                continue
            terms, term_parts, _ = self._loop_line(step)
            for term, part in zip(terms, term_parts):
                local = term.adjoint is not None and term.local
                if (local is not False and local.xreplace(self.aux).free_symbols & forward
                        and sympy.count_ops(local) > 0 and not (-local).is_Symbol):
                    numbers = self._folded_numbers(step, term.adjoint) | {step.number}
                    if local in found:  # the same local in another equation (∂h/∂m = ∂h/∂c): cited there too
                        known, consumer, targets, between = cites[local]
                        cites[local] = (known | numbers, consumer, targets + [str(step.target)], between)
                        continue
                    found[local] = f"d{term.consumer}_d{step.target}_span"
                    # through lets the loop does not form (c's f = sigmoid(a_f)): no local derivative of one equation
                    cites[local] = (numbers, str(term.consumer), [str(step.target)], numbers != {step.number})
                    parts[local] = (*part, f"({step.number}) ∂{term.consumer}/∂{step.target}")
        return found, {local: (_numbers(sorted(n)), c, t, b) for local, (n, c, t, b) in cites.items()}, parts

    def inlined(self, step):
        """The equations of the lets the loop does not form that the step's terms pass through."""
        return self._loop_line(step)[2]

    def _folded_numbers(self, step, root):
        """The equations of the products loop_terms folded into the step's factor of root."""
        chains = [self.product_of(t.adjoint) for t in step.terms]
        folded = {n for chain in chains if chain and chain.root == root for n in chain.numbers}
        return folded | self.inlined(step)

    def product_of(self, adjoint):
        """The chain of a pre-activation adjoint whose product is formed before the loop (a twin's
        is its twin's), or None."""
        s = self.by_adjoint.get(adjoint)
        if s is None or s.kind != "block":
            return None
        if s.target in self.twins:
            s = self.d.step_for(self.twins[s.target][0])
        return self.hoisted(s)

    def _loop_reads(self):
        """The forward values the backward loop reads."""
        forward = set(self._forward_symbols()) | set(self.aux.values())
        reads = set()
        for step in self.d.steps:
            if step.kind == "input" or (step.kind in ("let", "param") and not self.in_loop(step)):
                continue
            chain = self.chains.get(step.number)
            if chain is not None:
                if step.target not in self.hoist:
                    reads |= chain.factor.free_symbols & forward
                continue
            for term in self.loop_terms(step):
                if term.adjoint is not None and term.local not in self.span_locals:
                    reads |= term.local.xreplace(self.aux).free_symbols & forward
        return reads - self.constant

    def loop_terms(self, step):
        """The terms of a loop line. A pre-activation adjoint whose product is formed before the
        loop (p_o*da_o, da_o = o*(1 - o)*tanh_c * dh) becomes that product's factors times its root,
        and terms of one adjoint are summed: dc = (p_o*o*(1 - o)*tanh_c + o*(1 - tanh_c**2))*dh
        + dc_next, whose factor of dh is formed for a span of steps at once, like any local."""
        return self._loop_line(step)[0]

    def _loop_line(self, step):
        """loop_terms(step); per term, its part read off forward values and the parts that products
        hold: (o*(1 - tanh_c**2), [(p_o, da_o's chain)]) for the factor of dh in dc; and the
        equations of the lets the loop does not form that the terms pass through."""
        if step.number in self._loop_lines:
            return self._loop_lines[step.number]
        terms, parts, inlined = [], [], set()
        for t in self.per_step_terms(step):
            # a let the loop does not form passes its one consumer's adjoint on: its chain up to
            # the nearest adjoint the loop has (da_f = f*(1 - f)*df + ..., df = h_prev*dh: dh)
            while (let := self.by_adjoint.get(t.adjoint)) is not None and let.kind == "let" and not self.in_loop(let):
                inlined.add(let.number)
                t = Term(primal(let.terms[0].adjoint), let.terms[0].adjoint, t.local * let.terms[0].local)
            chain = self.product_of(t.adjoint)
            part = (t.local, [])
            if chain:  # the consumer named for the root: dh_dc_span, the factor of dh in dc
                # a coefficient of parameters alone can wait for the product; another may read a
                # gate the product goes over
                steady = t.local.free_symbols <= self.constant
                part = (sympy.S.Zero, [(t.local, chain)]) if steady else (t.local * chain.factor, [])
                t = Term(primal(chain.root), chain.root, t.local * chain.factor)
            same = next((j for j, u in enumerate(terms) if t.adjoint is not None and u.adjoint == t.adjoint), None)
            if same is None:
                terms.append(t)
                parts.append(part)
            else:
                terms[same] = Term(primal(t.adjoint), t.adjoint, terms[same].local + t.local)
                parts[same] = (parts[same][0] + part[0], parts[same][1] + part[1])
        self._loop_lines[step.number] = terms, parts, inlined
        return self._loop_lines[step.number]

    def hoisted(self, step):
        """The chain of a block step whose product is computed before the loop, or None."""
        return self.chains[step.number] if step.target in self.hoist else None

    def in_loop(self, step):
        """Whether the backward loop computes this step's adjoint with its own line."""
        if step.kind == "let":
            return step.number in self.loop_lets
        if step.kind == "param":
            return not self.after_loop(step)
        return step.kind != "input" and not (step.kind == "block" and self.hoisted(step))

    def after_loop(self, step):
        """Whether a parameter's gradient reads only pre-activations' adjoints (dp_i = c_prev*da_i),
        which outlive the loop in their buffers: a sum over every step and row at once, after it."""
        overwritten = set(self.gate_of.values())  # by then their slots hold adjoints
        return step.kind == "param" and all(
            self.by_adjoint.get(t.adjoint) is not None and self.by_adjoint[t.adjoint].kind == "block"
            and not t.local.free_symbols & overwritten for t in self.per_step_terms(step))

    def _stored(self):
        """Per-step forward values the backward pass reads, beyond the states and the buffers."""
        forward = {let.symbol for let in self.cell.lets} - self.gate_lets - set(self.state_of_new) - set(self.invariant)
        for a in self.cell.affines:
            forward |= set(a.blocks)
        needed = set()
        for step in self.d.steps:
            needed |= step.result.xreplace(self.aux).free_symbols & forward
        for a in self.cell.affines:
            needed |= {v for v in a.inputs if v in forward}
        return sorted(needed, key=str) + sorted(set(self.aux.values()) - set(self.invariant), key=str)

    def affine_of(self, block):
        return next(a for a in self.cell.affines if block in a.blocks)

    def affine_parts(self, a: Affine):
        """(input weights, loop weights): the input, and the lets formed before the loop, are done
        before it, the rest inside."""
        pre = [(w, v) for w, v in zip(a.weights, a.inputs) if v == self.x or v in self.pre_lets]
        loop = [(w, v) for w, v in zip(a.weights, a.inputs) if v != self.x and v not in self.pre_lets]
        return pre, loop

    def size_expr(self, a: Affine):
        return f"{len(a.blocks)} * H" if len(a.blocks) > 1 else "H"

    def shape_of(self, name):
        """A parameter's shape as code: (4 * H, D) for a weight of x, (H,) for a vector."""
        for a in self.cell.affines:
            for w, v in zip(a.weights, a.inputs):
                if w == name:
                    return f"({self.size_expr(a)}, {'D' if v == self.x else 'H'})"
            if name in a.biases:
                return f"({self.size_expr(a)},)"
        return "(H,)"

    def prev_state(self, symbol):
        name = str(symbol)
        if name.endswith("_prev") and name[:-5] in self.states:
            return name[:-5]
        return None

    @property
    def constant(self):
        """The values that do not change with the step: parameters and lets of them alone."""
        return set(self.cell.params) | set(self.invariant)

    def sequence(self, symbol, span=False):
        """The code for a forward value at every step, a (T, B, H) array or view; with span, at
        the steps t0 to t1 - 1. A value of parameters alone is its (H,) vector."""
        if symbol in self.constant:
            return str(symbol)
        if self.prev_state(symbol):
            return f"{self.prev_state(symbol)}_seq[{'t0:t1' if span else ':-1'}]"
        if symbol in self.state_of_new:
            return f"{self.state_of_new[symbol]}_seq[{'t0 + 1:t1 + 1' if span else '1:'}]"
        return f"{symbol}_seq" + ("[t0:t1]" if span else "")

    def at_step(self, symbol):
        """The code for a forward value at step t."""
        if self.prev_state(symbol):
            return f"{self.prev_state(symbol)}_seq[t]"
        if symbol in self.state_of_new:
            return f"{self.state_of_new[symbol]}_seq[t + 1]"
        return f"{symbol}_seq[t]"

    def span_names(self):
        """Maps every forward symbol and auxiliary call to its code over a span of steps."""
        names = {}
        for symbol in self._forward_symbols():
            names[symbol] = self.sequence(symbol, span=True)
        for call, name in self.aux.items():
            names[call] = names[name] = self.sequence(name, span=True)  # a local holds tanh(a) as tanh_a
        return names

    def _forward_symbols(self):
        symbols = [self.cell.prev(s) for s in self.states] + list(self.cell.params)
        for node in self.cell.nodes:
            symbols += node.blocks if isinstance(node, Affine) else [node.symbol]
        return symbols


def _kernel(derivation):
    """The _Kernel whose input GEMMs, before the loop, also take every affine input formed there (a
    MinimalRNN's z, which reads x alone): each such input can make more blocks, and so more values,
    known before the loop, so this repeats until nothing more joins (or a new plan would leave an
    input it counts on to the loop, where it stays as it was)."""
    k = _Kernel(derivation)
    while True:
        early_inputs = {v for a in k.cell.affines for v in a.inputs if v in k.early} | k.pre_lets
        if early_inputs == k.pre_lets:
            return k
        wider = _Kernel(derivation, frozenset(early_inputs))
        if not wider.pre_lets <= wider.early:
            return k
        k = wider
