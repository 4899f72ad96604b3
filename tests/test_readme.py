"""README shows what the tool prints: the quick start's summary table."""

import argparse
import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from lstm_derive import cli
from lstm_derive import generate as gen
from test_random_cells import assert_a_sequence_of_length_0_adds_nothing

README = Path(__file__).resolve().parents[1] / "README.md"


ERRORS = slice(3, 6)  # the summary's error columns: central, complex and float32
SECONDS = 6


def summary_rows(text):
    """The summary table's rows, without the seconds column (the one that varies by machine)."""
    table = text[text.index("cell           equations"):]
    rows = [line.split() for line in table.splitlines()[2:]]
    rows = rows[:next(i for i, row in enumerate(rows) if not row)]
    return [row[:SECONDS] + row[SECONDS + 1:] for row in rows]


def header_and_legend(text):
    """The summary table's header and rule, and the legend under it, which no machine changes."""
    table = text[text.index("cell           equations"):]
    return table.splitlines()[:2], table.split("\n\n")[1]


def same_but_rounding(shown, printed):
    """Rows equal but for the errors' digits, which follow the machine's BLAS (its summation order):
    those must agree to within a factor of ten, the order of magnitude README's figures claim."""
    def without_errors(row):
        return row[:ERRORS.start] + row[ERRORS.stop:]

    return len(shown) == len(printed) and all(
        without_errors(a) == without_errors(b) and all(map(within_ten_times, a[ERRORS], b[ERRORS]))
        for a, b in zip(shown, printed))


def within_ten_times(shown, printed):
    a, b = sorted([float(shown), float(printed)])
    return b < 10 * a


def same_report_but_rounding(shown, printed):
    """A report's line equal but for its error's digits, which follow the machine's exp and BLAS
    (central differences magnify a last-bit difference in exp to 1e-10 of the loss's scale)."""
    error = r"max rel error (\S+) "
    return (re.sub(error, "", shown) == re.sub(error, "", printed)
            and within_ten_times(re.search(error, shown)[1], re.search(error, printed)[1]))


def test_the_quick_start_summary_is_what_the_main_job_prints(tmp_path, capsys):
    home = tmp_path / "derivations"
    home.mkdir()
    for script in gen.find_scripts(gen.HOME):
        shutil.copy(script, home)
    assert cli.main(["--derivations", str(home)]) == 0
    out = capsys.readouterr().out
    readme = README.read_text(encoding="utf-8")
    assert same_but_rounding(summary_rows(readme), summary_rows(out)), out
    assert header_and_legend(readme) == header_and_legend(out), out
    assert re.search(r"\n(\d+) passed, 0 failed\n", readme).group(1) == str(len(summary_rows(out)))


def test_the_check_kernel_example_prints_what_its_comment_says():
    from lstm_derive.gradcheck import check_kernel
    from lstm_derive.kernels import lstm

    readme = README.read_text(encoding="utf-8")
    call = re.search(r"for report in check_kernel\(lstm, (.*)\):\n\s+print\(report\)\s+# (.*)\n", readme)
    config = dict(eval(f"dict({call.group(1)})"))  # noqa: S307 - README's own example
    printed = str(check_kernel(lstm, **config)[0])
    assert same_report_but_rounding(call.group(2), printed), printed


def test_the_use_a_kernel_example_runs():
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## Use a kernel"):]
    first, lengths, bidirectional = re.findall(r"```python\n(.*?)```", section[:section.index("\n## ", 3)], re.S)
    scope = {}
    exec(compile(first, "README: Use a kernel", "exec"), scope)  # noqa: S102 - README's own example
    assert scope["ys"].shape == (5, 2, 4) and scope["grads"]["W_h"].shape == (16, 4)
    exec(compile(lengths, "README: lengths", "exec"), scope)  # noqa: S102
    lstm, params, x = scope["lstm"], scope["params"], scope["x"]
    _, (h, c), _ = lstm.forward(params, x[:2, 1:2])  # row 1 alone, for its 2 steps
    np.testing.assert_allclose(scope["h"][1:2], h, rtol=1e-12)
    np.testing.assert_allclose(scope["c"][1:2], c, rtol=1e-12)
    assert scope["dx"].shape == (6, 3, 3)
    exec(compile(bidirectional, "README: bidirectional", "exec"), scope)  # noqa: S102
    for b, n in enumerate(scope["lengths"]):  # row b reversed, alone
        ys_b, _, cache_b = lstm.forward(scope["backward_params"], x[:n, b:b + 1][::-1])
        _, dx_b, _ = lstm.backward(scope["backward_params"], cache_b, ys_b - 0.5)
        np.testing.assert_allclose(scope["ys_b"][:n, b], ys_b[::-1, 0], rtol=1e-12)
        np.testing.assert_allclose(scope["dx_b"][:n, b], dx_b[::-1, 0], rtol=1e-10, atol=1e-14)


def test_the_report_comparison_rejects_another_order_of_magnitude_or_verdict():
    shown = "central: max rel error 9.2e-11 (tolerance 1e-06), ok"
    assert same_report_but_rounding(shown, "central: max rel error 8.4e-11 (tolerance 1e-06), ok")
    assert not same_report_but_rounding(shown, "central: max rel error 9.2e-12 (tolerance 1e-06), ok")
    assert not same_report_but_rounding(shown, "central: max rel error 9.2e-11 (tolerance 1e-06), 1 element fails")


def test_the_summary_comparison_rejects_another_order_of_magnitude_or_status():
    row = ["lstm", "23", "3", "2.8e-10", "1.8e-15", "3.1e-07", "ok"]
    assert same_but_rounding([row], [["lstm", "23", "3", "1.9e-10", "1.6e-15", "2.2e-07", "ok"]])
    assert not same_but_rounding([row], [["lstm", "23", "3", "3.0e-09", "1.8e-15", "3.1e-07", "ok"]])
    assert not same_but_rounding([row], [["lstm", "23", "3", "2.8e-10", "1.8e-15", "4.0e-06", "ok"]])
    assert not same_but_rounding([row], [["lstm", "23", "3", "2.8e-10", "1.8e-15", "3.1e-07", "FAIL"]])
    assert not same_but_rounding([row], [])


def test_the_cell_of_ones_own_passes_the_check(tmp_path, capsys):
    """The README's sLSTM-like my_cell.py, checked as its command says, on drawn problems too."""
    script = tmp_path / "my_cell.py"
    script.write_text(_my_cell())
    assert cli.main(["check", str(script), "--problems", "12"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_a_sequence_of_length_0_from_a_state_the_cell_never_makes_gives_finite_gradients(tmp_path):
    """my_cell.py divides by its normaliser n, which a step never makes 0, and by which a sequence of
    length 0 from the zero state keeps n = 0."""
    (tmp_path / "my_cell.py").write_text(_my_cell())
    assert cli.main(["generate", str(tmp_path / "my_cell.py"), "--out", str(tmp_path)]) == 0
    assert_a_sequence_of_length_0_adds_nothing(gen.import_kernel(tmp_path / "slstm.py"))


def test_the_cell_of_ones_own_runs_in_float32_as_in_float64_at_the_smallest_sizes(tmp_path):
    """At H = 1 its gates' buffer has rows of 16 bytes in float32, at H = 2 of 64 bytes in float64:
    there NumPy 2.4's np.negative(a, out=a) on a block's column read the wrong elements, and the
    sigmoid of the gate the kernel activates alone came out wrong."""
    from lstm_derive.gradcheck import check_kernel
    (tmp_path / "my_cell.py").write_text(_my_cell())
    assert cli.main(["generate", str(tmp_path / "my_cell.py"), "--out", str(tmp_path)]) == 0
    kernel = gen.import_kernel(tmp_path / "slstm.py")
    for H in (1, 2, 3):
        for seed in range(3):
            reports = check_kernel(kernel, T=4, B=3, H=H, seed=seed, methods=("central", "float32"))
            assert all(r.ok for r in reports), (H, seed, reports)


def _my_cell():
    """README's my_cell.py."""
    readme = README.read_text(encoding="utf-8")
    return re.search(r"For instance `my_cell.py`.*?```python\n(.*?)```", readme, re.S).group(1)


def test_the_cells_whose_backward_leaves_the_cache_as_it_was_are_those_named():
    """README names the cells whose backward() writes nothing over the cache (no gate sits in the
    pre-activations' buffer); every other cell's writes its gradients there. All refuse a second
    backward() on one cache."""
    import copy
    import importlib

    from lstm_derive.gradcheck import random_problem
    from lstm_derive.kernels import CELLS
    named = re.search(r"\(every cell here but ([^)]*)\)", README.read_text(encoding="utf-8")).group(1)
    untouched = set()
    for name in CELLS:
        k = importlib.import_module(f"lstm_derive.kernels.{name}")
        p = random_problem(k)
        cache = k.forward(p.params, p.x, p.state)[2]
        before = copy.deepcopy(cache)
        k.backward(p.params, cache, p.dys, p.dstate)
        with pytest.raises(ValueError, match="has used it up"):
            k.backward(p.params, cache, p.dys, p.dstate)
        arrays = [n for n, v in before.items() if isinstance(v, np.ndarray) and n != "spent"]
        if all(np.array_equal(before[n], cache[n]) for n in arrays):
            untouched.add(name)
    assert set(re.findall(r"`(\w+)`", named)) == untouched


def test_the_seed_derivation_excerpt_is_what_the_script_prints(capsys):
    """Every line of README's excerpt of `python derivations/lstm_seed.py`, in its order."""
    from lstm_derive import explain

    text = README.read_text()
    start = text.index("```\n  (8) dh = ")
    shown = [line for line in text[start + 4:text.index("```", start + 4)].splitlines() if line != "  ..."]
    explain(gen.load_cell(gen.HOME / "lstm_seed.py"))
    printed = capsys.readouterr().out.splitlines()
    at = [printed.index(line) for line in shown]  # ValueError names a line the script does not print
    assert at == sorted(at)


def test_the_seed_key_lines_are_the_documents_own():
    """README's display equations of the seed's LSTM, each a line of derivations/lstm_seed.md."""
    shown = re.findall(r"^\$\$\n(.*?)\n\$\$$", README.read_text(), re.M)
    document = (gen.HOME / "lstm_seed.md").read_text().splitlines()
    assert len(shown) == 6 and all(line in document for line in shown), [s for s in shown if s not in document]


def readme_commands():
    """README's shell commands, one a line, each `&&`'s parts apart, without their comments."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    lines = [line.split("  #")[0] for block in blocks for line in block.splitlines()]
    return [shlex.split(part) for line in lines for part in line.split("&&") if part.strip()]


def test_readme_s_lstm_derive_commands_are_ones_it_takes():
    commands = [words[1:] for words in readme_commands() if words[0] == "lstm-derive"]
    assert len(commands) >= 6
    for argv in commands:
        cli._parser().parse_args(argv)  # SystemExit(2) names the command or option it lacks


class Parsed(Exception):
    """Raised in place of running a script, once its arguments have parsed."""


def test_readme_s_python_scripts_exist_and_take_the_options_it_gives(monkeypatch):
    parse = argparse.ArgumentParser.parse_args

    def parse_only(parser, args=None, namespace=None):
        raise Parsed(parse(parser, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    commands = [words[1:] for words in readme_commands() if words[0] == "python"]
    for script, *argv in commands:
        path = README.parent / script
        assert path.is_file(), script
        if script.startswith(("examples/", "benchmarks/")):
            monkeypatch.syspath_prepend(str(path.parent))
            spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            with pytest.raises(Parsed):
                module.main(argv)


def test_the_character_counts_readme_gives_for_itself_are_its_own():
    """charlm.py trains on README, whose text states how many characters it has and their bits."""
    text = README.read_text(encoding="utf-8")
    about, bits = re.search(r"On this README \(about (\d+) distinct characters, ([\d.]+) bits each", text).groups()
    distinct = len(set(text))
    assert abs(distinct - int(about)) <= int(about) // 10, distinct
    assert f"{np.log2(distinct):.1f}" == bits, distinct


def test_readme_s_links_name_files_of_the_repository():
    links = re.findall(r"\]\(([^)#\s]+)\)", README.read_text(encoding="utf-8"))
    assert len(links) >= 20
    assert [link for link in links if not (README.parent / link).exists()] == []


def test_the_layout_names_every_module_and_nothing_that_is_not_there():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Layout\n\n```\n(.*?)```", text, re.S).group(1)
    named = {line.split()[0] for line in block.splitlines() if line[:1].strip()}
    assert [path for path in sorted(named) if not (README.parent / path).exists()] == []
    package = README.parent / "lstm_derive"
    modules = {f"lstm_derive/{p.name}" for p in package.glob("*.py") if not p.name.startswith("__")}
    packages = {f"lstm_derive/{p.parent.name}/" for p in package.glob("*/__init__.py")}
    assert sorted((modules | packages) - named) == []


def test_the_lstm_script_shown_is_derivations_lstm_py_without_its_docstring_and_note():
    text = README.read_text(encoding="utf-8")
    shown = re.search(r"`derivations/lstm.py`, without its docstring and its note:\n\n```python\n(.*?)```",
                      text, re.S).group(1)
    script = (gen.HOME / "lstm.py").read_text(encoding="utf-8")
    body = script[script.index('"""', 3) + 3:].lstrip("\n")
    note = re.search(r"\ncell\.note\(.*?\)\n\n", body, re.S)
    assert shown == body[:note.start() + 1] + body[note.end():]


def _examples(monkeypatch, name):
    """An example script's module, imported as the examples import each other: from their folder."""
    monkeypatch.syspath_prepend(str(README.parent / "examples"))
    return importlib.import_module(name)


def test_the_toy_table_is_what_toy_py_prints_for_both_cells(monkeypatch):
    """Every row of README's toy table, both columns: the lstm column too, which no other test reads."""
    toy = _examples(monkeypatch, "toy")
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| iteration | lstm_seed"):]
    table = table[:table.index("\n\n")]
    rows = re.findall(r"^\| +(\d+) \| ([\d.e+-]+) \| ([\d.e+-]+) \|$", table, re.M)
    losses = {cell: toy.toy_losses(cell) for cell in ("lstm_seed", "lstm")}
    assert len(rows) >= 4
    printed = [(i, f"{losses['lstm_seed'][int(i)]:.3e}", f"{losses['lstm'][int(i)]:.3e}") for i, _, _ in rows]
    assert rows == printed


def _vanishing_row(vanishing, cell, forget_bias=0.0):
    """The figures of vanishing.py's row of a cell, at its defaults: the norms at k = 1, 5, 10, 25,
    50, 100 and the factor per step."""
    mean = vanishing.measure(cell, 100, 32, 5, 16, forget_bias).mean(axis=0)
    return ([vanishing._norm_text(mean[100 - k]) for k in (1, 5, 10, 25, 50, 100)]
            + [vanishing._factor_text(vanishing.per_step_factor(mean, 100))])


def test_the_vanishing_table_is_what_vanishing_py_prints(monkeypatch):
    vanishing = _examples(monkeypatch, "vanishing")
    text = README.read_text(encoding="utf-8")
    table = text[text.index("|          cell |     k=1 |"):]
    rows = re.findall(r"^\| +(\w+) \|(.*)\|$", table[:table.index("\n\n")], re.M)[1:]  # [1:]: the rule
    from lstm_derive.kernels import CELLS
    assert sorted(cell for cell, _ in rows) == sorted(CELLS)
    for cell, figures in rows:
        assert [f.strip() for f in figures.split("|")] == _vanishing_row(vanishing, cell), cell


def test_the_forget_bias_figures_are_what_vanishing_py_gives(monkeypatch):
    """The factors per step README gives for --forget-bias 1 and 3, and the norms it quotes."""
    vanishing = _examples(monkeypatch, "vanishing")
    text = " ".join(README.read_text(encoding="utf-8").split())
    once = re.search(r"with `--forget-bias 1` the factor per step is ([\d.]+) for lstm \(k = 100: ([\d.e+-]+)\), "
                     r"([\d.]+) for lstm_seed, ([\d.]+) for gru and ([\d.]+) for lstm_cifg", text)
    lstm = _vanishing_row(vanishing, "lstm", 1.0)
    assert [once[1], once[2]] == [lstm[-1], lstm[5]]
    others = [_vanishing_row(vanishing, cell, 1.0)[-1] for cell in ("lstm_seed", "gru", "lstm_cifg")]
    assert [once[3], once[4], once[5]] == others
    thrice = re.search(r"with `--forget-bias 3` it is ([\d.]+) for lstm: the gradient at k = 100 \(([\d.]+)\) is as "
                       r"large as at k = 1, after a dip to (\d+\.\d+)", text)
    *norms, factor = [float(f) for f in _vanishing_row(vanishing, "lstm", 3.0)]
    assert (float(thrice[1]), thrice[2], thrice[3]) == (factor, f"{norms[-1]:.2f}", f"{min(norms):.2f}")
    assert norms[-1] >= norms[0]


def test_the_sample_figures_are_what_check_kernel_judges():
    """README's cost of a large problem: its element count, and how many sample=20 judges."""
    from lstm_derive.gradcheck import check_kernel
    from lstm_derive.kernels import lstm

    text = " ".join(README.read_text(encoding="utf-8").split())
    T, B, D, H, total, judged, sample = re.search(
        r"lstm at T = (\d+), B = (\d+), D = (\d+), H = (\d+): (\d+) elements, (\d+) judged with `sample=(\d+)`",
        text).groups()
    report = check_kernel(lstm, T=int(T), B=int(B), D=int(D), H=int(H), sample=int(sample), methods=("central",))[0]
    assert f"over a sample of {judged} of {total} elements, ok" in str(report), report


def test_a_file_edited_by_hand_is_not_written_over_and_a_stale_one_is_named_as_it_is_rewritten(tmp_path, capsys,
                                                                                               monkeypatch):
    """As README says: the main job and generate name each stale file they rewrite; a generated file
    edited by hand, its header kept, is refused by both, named, and `generate --check` shows the edit."""
    from test_cli import a_package, as_generated

    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    kernel = kernels / "sigmoid_rnn.py"
    generated = kernel.read_text()
    text = README.read_text(encoding="utf-8")
    assert "names each one beside its progress line" in text and "one edited by hand since it was generated" in text
    for command in [], ["generate"]:
        as_generated(kernel, generated.replace("import numpy as np", "import numpy as np  # an older generation"))
        capsys.readouterr()
        assert cli.main(["--derivations", str(home), *command]) == 0
        assert kernel.read_text() == generated
        printed = capsys.readouterr()
        assert re.search(r"^wrote .*sigmoid_rnn\.py$", printed.out + printed.err, re.M)
    for command, status in ([], 2), (["generate"], 2):
        kernel.write_text(generated + "# a line added by hand\n")
        capsys.readouterr()
        assert cli.main(["--derivations", str(home), "generate", "--check"]) == 1
        out = capsys.readouterr().out
        assert "\n-# a line added by hand\n" in out and "(on disk, edited by hand)" in out
        assert cli.main(["--derivations", str(home), *command]) == status
        assert kernel.read_text() == generated + "# a line added by hand\n"  # kept
        printed = capsys.readouterr()
        assert "sigmoid_rnn.py was edited by hand after lstm-derive wrote it" in printed.out + printed.err
