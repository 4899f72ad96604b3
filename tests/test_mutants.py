"""The gradient check has teeth: every systematic mistake in a kernel's backward pass is caught.

tests/mutants.py makes the mutants: the generated kernel of each cell with one statement of
backward() changed the way people get backpropagation wrong (a term dropped, a sign flipped,
y(1-y) written as y, 1-y**2 as 1+y**2, two gates' adjoints swapped, a carry dropped or stale, a
value read at the wrong step, a weight gradient transposed, a bias or parameter gradient not
summed over the batch or over time). Each mutant runs; lstm_derive.gradcheck.check_kernel must
reject every one. A mutant that raises counts as caught only with a numpy shape error, which
the kernel's own argument checks never raise.
"""

import ast
import collections
import functools

import numpy as np
import pytest

from lstm_derive.generate import KERNELS
from lstm_derive.gradcheck import check_kernel
from lstm_derive.kernels import CELLS

from mutants import Mutant, is_shape_error, load, mutants

# Small, but no size is 1 or equal to another, so that a transposed or batch-sliced gradient
# has the wrong values rather than the right ones by accident; the second sequence ends after one
# step, so that the rows of an ended sequence are judged too.
PROBLEM = dict(T=3, B=2, D=2, H=3, seed=0, scale=1.0, lengths=(3, 1))

# The mistakes the test must make for the cells that have the code for them.
REQUIRED = {
    "drop a term", "drop a carry", "flip a sign", "y*(1 - y) -> y", "1 - y**2 -> 1 + y**2",
    "swap two gates' adjoints", "carry from the wrong step", "read at the wrong step",
    "transposed weight gradient", "bias gradient not summed over the batch",
    "parameter gradient not summed over the batch", "parameter gradient not summed over time",
}


def source_of(cell):
    return (KERNELS / f"{cell}.py").read_text()


@functools.cache  # three tests read each cell's mutants
def mutants_of(cell):
    return mutants(cell, source_of(cell))


def verdict(mutant):
    """"caught", "crashed" (a numpy shape error) or a description of how it got through."""
    try:
        kernel = load(mutant)
        with np.errstate(all="ignore"):
            # check_kernel's two methods one at a time: the second runs only for a mutant the
            # first lets through (the verdict is the same, for a third of the time)
            for method in ("complex", "central"):
                (report,) = check_kernel(kernel, methods=(method,), **PROBLEM)
                if not report.ok:
                    return "caught"
    except Exception as error:  # noqa: BLE001 - the mutant's own failure is what we judge
        if is_shape_error(error):
            return "crashed"
        return f"raised {type(error).__name__}: {error}"
    return "passed the gradient check"


@pytest.mark.parametrize("cell", CELLS)
def test_the_unmutated_kernel_passes_when_loaded_the_same_way(cell):
    original = Mutant(cell, "none", 0, "", "", source_of(cell))
    assert all(r.ok for r in check_kernel(load(original), **PROBLEM))


@pytest.mark.parametrize("cell", CELLS)
def test_every_mutant_of_the_backward_pass_is_caught(cell):
    found = mutants_of(cell)
    assert len(found) >= 10, f"{cell}: only {len(found)} mutants; has the kernel's code changed shape?"
    outcomes = collections.Counter()
    escaped = []
    for mutant in found:
        result = verdict(mutant)
        outcomes[result if result in ("caught", "crashed") else "escaped"] += 1
        if result not in ("caught", "crashed"):
            escaped.append(f"  {mutant}\n    {result}")
    summary = f"{cell}: {len(found)} mutants, {outcomes['caught']} caught by the check, " \
              f"{outcomes['crashed']} by a shape error, {len(escaped)} escaped"
    print(summary)
    assert not escaped, summary + ":\n" + "\n".join(escaped)


def test_every_kind_of_mistake_is_made():
    """The operators still find their statements in the current kernels."""
    by_operator = collections.Counter()
    for cell in CELLS:
        by_operator.update(m.operator for m in mutants_of(cell))
    missing = REQUIRED - set(by_operator)
    assert not missing, f"no mutant of kind {sorted(missing)}; found {dict(by_operator)}"
    assert sum(by_operator.values()) >= 200, dict(by_operator)
    print(f"{sum(by_operator.values())} mutants over {len(CELLS)} cells: {dict(sorted(by_operator.items()))}")


@pytest.mark.parametrize("cell", CELLS)
def test_mutants_change_only_backward(cell):
    """forward() and everything else is untouched, so the numeric gradients are the true ones: the
    text around backward() is the kernel's own, and what stands in its place parses alone as one
    function named backward, so that the module's other statements parse as the kernel's do (with a
    fifth of the module to parse per mutant, not all of it)."""
    source = source_of(cell)
    lines = source.splitlines(keepends=True)
    backward = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "backward")
    first = min([backward.lineno] + [d.lineno for d in backward.decorator_list])
    before, after = "".join(lines[:first - 1]), "".join(lines[backward.end_lineno:])
    for mutant in mutants_of(cell):
        assert mutant.source.startswith(before) and mutant.source.endswith(after), str(mutant)
        body = ast.parse(mutant.source[len(before):len(mutant.source) - len(after)]).body
        assert [(type(n), getattr(n, "name", None)) for n in body] == [(ast.FunctionDef, "backward")], str(mutant)
