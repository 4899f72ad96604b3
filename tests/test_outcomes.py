from lstm_derive.outcomes import _where_it_fails


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
