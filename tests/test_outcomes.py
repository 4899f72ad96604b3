from lstm_derive.gradcheck import Mismatch, Report
from lstm_derive.outcomes import Outcomes, _where_it_fails


def test_what_parts_the_problems_is_a_size_or_kind_they_all_have_and_the_others_lack():
    sizes = dict(B=2, D=3, H=3, scale=1.0)
    one_step = [dict(T=1, **sizes), dict(T=3, lengths=(1, 0), **sizes)]  # a carry is never read
    longer = [dict(T=3, lengths=(2, 1), **sizes), dict(T=2, **sizes)]
    assert _where_it_fails(longer, one_step) == "a sequence of 2 or more steps"
    assert _where_it_fails(one_step, longer) == ""  # T = 1 and T = 3 on both sides
    assert _where_it_fails(longer, []) == ""  # failing everywhere: nothing to part
    assert _where_it_fails([dict(T=4, **sizes)], [dict(T=2, **sizes)]) == "T >= 4"  # without lengths: T's
    assert _where_it_fails([dict(T=4, lengths=(4, 4), **sizes)], [dict(T=3, lengths=(2, 1), **sizes)]) == (
        "T >= 4 (and, the same problems here, a sequence of 4 or more steps)")
    assert _where_it_fails([dict(T=2, **sizes), dict(T=4, **sizes)], [dict(T=1, **sizes)]) == "T >= 2"  # the least


def _report(method, failing=(), **failures):
    """A report of one method whose elements of the arrays named in failing are wrong."""
    return Report(method, 1e-6, errors={"W": 0.5 if "W" in failing else 0.0, "b": 0.5 if "b" in failing else 0.0},
                  mismatches=[Mismatch(name, (0,), 1.0, 2.0, 0.5) for name in failing], **failures)


def test_the_summary_ranks_what_fails_by_the_problems_it_fails_on_most_first():
    outcomes, sizes = Outcomes("cell", 3, redraws=10), dict(B=1, D=1, H=1, scale=1.0)
    outcomes.add(dict(T=1, **sizes), [_report("central", ["W"], wrong_shapes=["dW: (1,)"])])
    for T in (2, 3):
        outcomes.add(dict(T=T, **sizes), [_report("central", ["b"], directional="off"), _report("complex", ["b"])])
    assert not outcomes.ok
    lines = outcomes.lines()
    assert lines[1] == ("cell: the gradients that fail, and on how many of the 3 problems: db 2 (central, complex), "
                        "dW 1 (central)")
    assert lines[-1] == ("cell: what else fails, and on how many of the 3 problems: the check along a random direction "
                         "2, results of the wrong shape or dtype 1")


def test_the_headline_gives_each_methods_largest_error_over_every_problem_and_array():
    outcomes, sizes = Outcomes("cell", 2, redraws=10), dict(T=1, B=1, D=1, H=1, scale=1.0)
    for error in (2e-7, 5e-7):
        outcomes.add(sizes, [Report("central", 1e-6, errors={"W": error, "b": error / 10})])
    assert outcomes.lines() == ["cell: passed; the largest errors over 2 problems: central 5.0e-07"]


def test_a_problem_that_overflowed_is_said_once_as_not_judged_not_again_as_what_else_fails():
    outcomes, sizes = Outcomes("cell", 1, redraws=10), dict(T=1, B=1, D=1, H=1, scale=1.0)
    overflowed = [Report(m, 1e-6, unjudged="forward() gave inf", overflowed=True) for m in ("central", "complex")]
    outcomes.add(sizes, overflowed)
    lines = outcomes.lines()
    assert lines[0] == "cell: FAILED; the largest errors over 1 problem: central -, complex -"
    assert len(lines) == 2 and lines[1].startswith("cell: 1 of the 1 problems could not be judged at all")


def test_a_problem_whose_gradients_are_all_0_is_said_so_where_another_method_failed_on_something_else():
    outcomes, sizes = Outcomes("cell", 1, redraws=2), dict(T=1, B=1, D=1, H=1, scale=1.0)
    outcomes.add(sizes, [Report("central", 1e-6, vacuous=True), Report("float32", 1e-3, forward="outputs off")])
    assert outcomes.lines()[-1].startswith(
        "cell: on 1 of the 1 problems every gradient was exactly 0, on each of 3 draws")


def test_one_method_failing_where_the_others_pass_fails_the_cell():
    outcomes, sizes = Outcomes("cell", 1, redraws=10), dict(T=1, B=1, D=1, H=1, scale=1.0)
    outcomes.add(sizes, [Report("central", 1e-6, errors={"W": 1e-8}), Report("float32", 1e-3, forward="outputs off")])
    assert not outcomes.ok
    assert outcomes.lines()[0].startswith("cell: FAILED;")
