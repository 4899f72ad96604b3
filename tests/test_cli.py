"""`lstm-derive check`: it checks the kernel a script generates, wherever the script lives."""

import errno
import io
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

from lstm_derive import cli, gradcheck, terminal
from lstm_derive import generate as gen
from lstm_derive.gradcheck import DEFAULT_METHODS

REPORTS = len(DEFAULT_METHODS)  # lines per problem: central, complex and float32

# An Elman RNN with a sigmoid: not any packaged cell's equations.
SIGMOID_RNN = '''
from lstm_derive import Cell, sigmoid

cell = Cell("{name}", title="Elman RNN (sigmoid)")
x = cell.input("x")
h_prev = cell.state("h")
(a,) = cell.affine("W", [x, h_prev], blocks=["a"])
cell.update(h=sigmoid(a))
'''


def write_cell(directory, name):
    directory.mkdir(exist_ok=True)
    script = directory / f"{name}.py"
    script.write_text(textwrap.dedent(SIGMOID_RNN.format(name=name)), encoding="utf-8")
    return script


def as_generated(path, text):
    """Writes text at path as lstm-derive would have generated it (its checksum line made afresh),
    not as an edit by hand: an older generation, or one of a script since removed."""
    body = re.sub(r"(?m)^.*lstm-derive's checksum .*\n", "", text)
    path.write_text(gen.Target.sealed(path, body).text)


def a_package(tmp_path, monkeypatch, *cells):
    """(derivations, kernels): a package's two folders under tmp_path, the first holding the cells'
    scripts, both taken by generate for the package's own."""
    home, kernels = tmp_path / "derivations", tmp_path / "kernels"
    for name in cells:
        write_cell(home, name)
    kernels.mkdir()
    monkeypatch.setattr(gen, "HOME", home)
    monkeypatch.setattr(gen, "KERNELS", kernels)
    return home, kernels


def test_check_takes_a_script_of_ones_own(tmp_path, capsys):
    script = write_cell(tmp_path / "mine", "sigmoid_rnn")
    assert cli.main(["check", str(script)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == REPORTS * len(cli.CHECKS) + 3  # a line per method and check; the cell's; the count
    assert out[-3].startswith("sigmoid_rnn: passed; the largest errors over 4 problems: central ")
    assert out[-2:] == ["", "1 passed, 0 failed"]
    assert all(line.startswith("sigmoid_rnn (") and line.endswith(", ok") for line in out[:-3])
    assert not (tmp_path / "mine" / "sigmoid_rnn.md").exists()  # nothing written beside the script


def test_check_reads_the_script_not_a_stale_package_kernel(tmp_path, capsys, monkeypatch):
    """A cell of derivations/ whose packaged kernel is stale: what is checked is what its script
    generates now, and a note says the package's copy is stale."""
    home, kernels = tmp_path / "derivations", tmp_path / "kernels"
    write_cell(home, "rnn")  # a sigmoid: the packaged rnn kernel (tanh) is stale for it
    kernels.mkdir()
    (kernels / "rnn.py").write_text((gen.KERNELS / "rnn.py").read_text())
    monkeypatch.setattr(gen, "HOME", home)
    monkeypatch.setattr(gen, "KERNELS", kernels)
    checked = []
    monkeypatch.setattr(gradcheck, "check_kernel",
                        lambda kernel, **config: checked.append(pathlib.Path(kernel.__file__).read_text()) or [])
    assert cli.main(["--derivations", str(home), "check", "rnn"]) == 0
    assert "kernels/rnn.py is stale" in capsys.readouterr().err.replace("\\", "/")
    assert checked and all("h = sigmoid(a)" in text for text in checked)


def test_check_of_two_scripts_of_one_cell_name_says_so_not_that_the_kernel_is_stale(tmp_path, capsys, monkeypatch):
    """A copy of a script, edited, in derivations/: the package's kernel was said to be stale, where
    it is the other script's, and fresh."""
    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    script = home / "sigmoid_rnn.py"
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    copy = home / "a_copy.py"
    copy.write_text(script.read_text().replace("sigmoid(a)", "sigmoid(a)**2"))
    capsys.readouterr()
    for cells in ([], [str(copy)]):
        cli.main(["--derivations", str(home), "check", *cells])
        err = capsys.readouterr().err
        assert "is stale" not in err, err
        assert (f"note: {copy} and {script} both build the cell 'sigmoid_rnn', and the package holds one kernel of "
                f"that name ({kernels / 'sigmoid_rnn.py'}); checking what {copy} generates; rename one cell") in err


def test_check_of_a_fresh_packaged_cell_says_nothing_more(capsys):
    assert cli.main(["--derivations", str(gen.HOME), "check", "rnn"]) == 0
    assert capsys.readouterr().err == ""


def test_check_fails_on_a_wrong_gradient(tmp_path, capsys, monkeypatch):
    """The kernel's dW_x off by 1%: every check reports it, element by element, and the exit status is 1."""
    script = write_cell(tmp_path, "sigmoid_rnn")
    emitted = cli._emitted_kernel

    def off_by_one_percent(*args):
        name, kernel, hint = emitted(*args)
        right = kernel.backward

        def backward(*a, **k):
            grads, dx, dstate = right(*a, **k)
            return dict(grads, W_x=grads["W_x"] * 1.01), dx, dstate
        kernel.backward = backward
        return name, kernel, hint

    monkeypatch.setattr(cli, "_emitted_kernel", off_by_one_percent)
    assert cli.main(["check", str(script)]) == 1
    out = capsys.readouterr().out
    assert len(re.findall(r"elements? fails?, worst first", out)) == 2 * len(cli.CHECKS) and "dW_x[0,0]" in out


DIVIDING = """
from lstm_derive import Cell, sigmoid, tanh

cell = Cell("dividing", title="h divided by a state that can near zero")
x = cell.input("x")
h_prev, n_prev = cell.state("h"), cell.state("n"{positive})
a, i = cell.affine("W", [x, h_prev], blocks=["a", "i"])
n = cell.let("n_new", n_prev + sigmoid(i))
cell.update(h=tanh(a) / n, n=n)
"""


@pytest.mark.parametrize("positive", ["", ", positive=True"])
def test_a_failing_cell_that_divides_by_a_state_is_told_of_positive_states(tmp_path, capsys, monkeypatch, positive):
    """Drawn around zero, the state can put a step near the pole: said where the checks fail, unless declared positive."""
    script = tmp_path / "dividing.py"
    script.write_text(DIVIDING.format(positive=positive))
    monkeypatch.setattr(cli, "_print_checks", lambda *args: False)
    assert cli.main(["check", str(script)]) == 1
    hint = ("dividing: it divides by a value that reads the state n, which the checks draw around zero, where a "
            "step can be at a pole; if n stays above zero, declare it (cell.state('n', positive=True))")
    assert (hint in capsys.readouterr().out) == (not positive)


def test_check_names_an_unknown_cell(tmp_path, capsys):
    write_cell(tmp_path, "sigmoid_rnn")
    assert cli.main(["--derivations", str(tmp_path), "check", "lstm"]) == 2
    assert "no cell 'lstm'" in capsys.readouterr().err


def test_a_cell_is_found_by_its_own_name_where_its_script_is_named_otherwise(tmp_path, capsys):
    """A script renamed, or its cell: the summary and the kernel name the cell, and so may the
    commands; a script of the folder that fails is passed over in the search."""
    folder = tmp_path / "cells"
    write_cell(folder, "sigmoid_rnn").rename(folder / "renamed.py")
    (folder / "broken.py").write_text("raise RuntimeError('half edited')\n")
    assert cli.main(["--derivations", str(folder), "check", "sigmoid_rnn"]) == 0
    assert "sigmoid_rnn: passed" in capsys.readouterr().out
    assert cli.main(["--derivations", str(folder), "show", "sigmoid_rnn"]) == 0
    assert "Elman RNN (sigmoid)" in capsys.readouterr().out
    assert cli.main(["--derivations", str(folder), "check", "neither"]) == 2
    assert "no cell 'neither' in " in capsys.readouterr().err


def test_show_takes_a_script_of_ones_own(tmp_path, capsys):
    script = write_cell(tmp_path, "sigmoid_rnn")
    assert cli.main(["show", str(script)]) == 0
    assert "sigmoid" in capsys.readouterr().out


def test_check_reports_a_broken_script_and_checks_the_others(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("from lstm_derive import Cell\ncell = Cell('broken')\nx = cell.input('x')\n", encoding="utf-8")
    script = write_cell(tmp_path, "sigmoid_rnn")
    assert cli.main(["check", str(broken), str(script)]) == 2
    captured = capsys.readouterr()
    assert "cell 'broken' has no state" in captured.err
    assert captured.out.count("sigmoid_rnn (") == REPORTS * len(cli.CHECKS)


@pytest.mark.parametrize("in_the_way", ["a directory", "not text"])
def test_check_of_a_package_cell_whose_kernel_file_is_unreadable_says_so(tmp_path, capsys, monkeypatch, in_the_way):
    """check compares the package's copy with what the script generates now: a directory there is
    an error message, a file that is no text is stale; neither is a traceback."""
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    if in_the_way == "a directory":
        (kernels / "rnn.py").mkdir()
    else:
        (kernels / "rnn.py").write_bytes(b"\xff\xfe")
    monkeypatch.setattr(gen, "KERNELS", kernels)
    status = cli.main(["check", "rnn"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if in_the_way == "a directory":
        assert status == 2 and "rnn.py: cannot read it" in captured.err
    else:
        assert status == 0 and "is stale; checking what" in captured.err


def test_a_cell_name_that_is_a_script_here_gets_a_hint(tmp_path, capsys, monkeypatch):
    write_cell(tmp_path, "sigmoid_rnn")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--derivations", str(tmp_path / "none"), "show", "sigmoid_rnn"]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "cells").mkdir()
    assert cli.main(["--derivations", str(tmp_path / "cells"), "show", "sigmoid_rnn"]) == 2
    assert "for the script sigmoid_rnn.py, give its path" in capsys.readouterr().err


def test_the_main_job_on_a_folder_of_ones_own_leaves_the_package_alone(tmp_path, capsys):
    home = tmp_path / "derivations"
    write_cell(home, "sigmoid_rnn")
    before = {p.name: p.read_text() for p in gen.KERNELS.glob("*.py")}
    assert cli.main(["--derivations", str(home)]) == 0
    out = capsys.readouterr().out
    assert "1 passed, 0 failed" in out and "checked in a scratch directory" in out
    # the advice is for a folder, as the run was, not for one script
    assert f"; `lstm-derive --derivations {shlex.quote(str(home))} generate --out DIR` writes these cells' " in out, out
    assert {p.name: p.read_text() for p in gen.KERNELS.glob("*.py")} == before
    assert sorted(p.name for p in home.iterdir()) == ["sigmoid_rnn.py"]


def test_the_main_jobs_advice_on_a_folder_of_ones_own_is_a_command_that_writes_its_files(tmp_path, monkeypatch,
                                                                                         capsys):
    """`generate SCRIPT --out DIR` was advised for a folder, where `generate --out DIR` is what writes it."""
    monkeypatch.chdir(tmp_path)
    write_cell(tmp_path / "derivations", "first_rnn"), write_cell(tmp_path / "derivations", "second_rnn")
    assert cli.main([]) == 0
    advice = re.search(r"`lstm-derive (.*) --out DIR` writes these cells' kernels and documents\)\n", capsys.readouterr().out)
    assert advice and advice.group(1) == "generate", advice
    assert cli.main([*advice.group(1).split(), "--out", "build"]) == 0
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == [
        "first_rnn.md", "first_rnn.py", "second_rnn.md", "second_rnn.py"]


def test_a_reader_that_stops_early_ends_the_run_quietly_and_cleanly(tmp_path):
    """`lstm-derive check | head -1`: exit status 141 as after SIGPIPE, no traceback, no scratch left."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    run = subprocess.Popen([sys.executable, "-m", "lstm_derive", "check", "rnn", "lstm"], cwd=gen.HOME.parent,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.stdout.readline().startswith(b"rnn (")
    run.stdout.close()
    assert run.wait(timeout=120) == 141
    assert run.stderr.read() == b""
    assert list(tmp_path.iterdir()) == []


def test_a_kernel_that_crashes_fails_its_check_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    crashing, fine = write_cell(tmp_path, "crashing"), write_cell(tmp_path, "fine")
    emitted = cli._emitted_kernel

    def crash_one(script, scratch, claimed):
        name, kernel, hint = emitted(script, scratch, claimed)
        if name == "crashing":
            def backward(*args, **kwargs):
                raise NameError("name 'tanh_p' is not defined")
            kernel.backward = backward
        return name, kernel, hint

    monkeypatch.setattr(cli, "_emitted_kernel", crash_one)
    assert cli.main(["check", str(crashing), str(fine)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if " FAIL: " in line] == [  # said once, though it raises on every problem
        f"crashing ({', '.join(f'{k}={v}' for k, v in config.items())}) FAIL: the kernel raised NameError: "
        "name 'tanh_p' is not defined" for config in cli.CHECKS[:1]]
    assert sum(line.startswith("fine (") and line.endswith(", ok") for line in out) == REPORTS * len(cli.CHECKS)
    assert "crashing: FAILED; the largest errors over 4 problems: none, the kernel raised on every problem" in out
    assert "crashing: on 4 of the 4 problems, the kernel raised NameError: name 'tanh_p' is not defined" in out


def test_a_broken_script_in_the_folder_is_reported_and_the_others_are_checked(tmp_path, capsys):
    home = tmp_path / "derivations"
    write_cell(home, "sigmoid_rnn")
    (home / "helpers.py").write_text("SCALE = 2\n")  # builds no cell
    assert cli.main(["--derivations", str(home)]) == 2
    out = capsys.readouterr().out
    assert "\n1 passed, 0 failed, 1 not derived (helpers.py)\n" in out  # as check counts it
    assert any(line.startswith("helpers.py ") and line.rstrip().endswith("ERROR") for line in out.splitlines())
    assert "helpers.py: " in out and "builds exactly one Cell; this one builds 0" in out
    assert "(a helper that scripts import? name it _helpers.py: a folder's run passes over _*.py)\n" in out


def test_the_main_jobs_summary_fits_80_columns_a_word_a_column(tmp_path, capsys):
    """The table was 106 columns wide, and wrapped in an 80-column terminal; its headers of several
    words ("param arrays", "central rel err") did not split on spaces into its columns."""
    home = tmp_path / "derivations"
    write_cell(home, "sigmoid_peephole")  # longer than any packaged cell's name
    (home / "helpers.py").write_text("SCALE = 2\n")  # an ERROR row
    assert cli.main(["--derivations", str(home)]) == 2
    table, legend = capsys.readouterr().out.strip("\n").split("\n\n")[:2]
    header, rule, *rows = table.splitlines()
    assert header.split() == ["cell", "equations", "params", "central", "complex", "float32", "seconds", "status"]
    assert [len(row.split()) for row in rows] == [8, 8] and len(rule.split()) == 8
    assert legend.startswith("params: parameter arrays; central, complex, float32: ")
    assert max(len(line) for line in [*table.splitlines(), *legend.splitlines()]) <= 80, table + legend


def test_check_and_generate_over_a_folder_go_past_a_broken_script(tmp_path, capsys):
    """As the summary run does: the broken script is reported, the others are checked or written."""
    home = tmp_path / "cells"
    write_cell(home, "sigmoid_rnn")
    (home / "helpers.py").write_text("SCALE = 2\n")
    assert cli.main(["--derivations", str(home), "check"]) == 2
    out, err = capsys.readouterr()
    assert out.endswith("\n1 passed, 0 failed, 1 not derived (helpers.py)\n")
    assert "helpers.py: a derivation script builds exactly one Cell" in err
    out_dir = tmp_path / "build"
    assert cli.main(["--derivations", str(home), "generate", "--out", str(out_dir)]) == 2
    out, err = capsys.readouterr()
    assert sorted(p.name for p in out_dir.iterdir()) == ["sigmoid_rnn.md", "sigmoid_rnn.py"]
    assert err.endswith("1 of 2 scripts failed, and nothing of theirs was written\n")


def test_the_stale_hint_names_the_folder_it_was_given(tmp_path, capsys):
    home = tmp_path / "cells"
    write_cell(home, "sigmoid_rnn")
    assert cli.main(["--derivations", str(home), "generate", "--check", "--out", str(tmp_path / "build")]) == 1
    assert f"run `lstm-derive --derivations {home} generate --out {tmp_path / 'build'}`" in capsys.readouterr().err


def test_generate_into_the_package_says_a_failing_script_stops_the_others_files_too(tmp_path, monkeypatch, capsys):
    """The error names the failing script alone: that the others' files were not written either,
    and how to write them, is said after it; with --check, which writes nothing, it is not."""
    home, kernels = tmp_path / "derivations", tmp_path / "kernels"
    write_cell(home, "sigmoid_rnn")
    kernels.mkdir()
    (home / "broken.py").write_text("raise RuntimeError('half edited')\n")
    monkeypatch.setattr(gen, "HOME", home)
    monkeypatch.setattr(gen, "KERNELS", kernels)
    assert cli.main(["--derivations", str(home), "generate"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "lstm-derive: nothing was written: into the package, generate writes the files of every script given or of "
        "none (fix this one, or move it out of derivations/ meanwhile)")
    assert list(kernels.iterdir()) == []
    assert cli.main(["--derivations", str(home), "generate", "--check"]) == 2
    assert "nothing was written" not in capsys.readouterr().err
    # a cell given by name: the package's index still lists every script's cell
    assert cli.main(["--derivations", str(home), "generate", "sigmoid_rnn"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"lstm-derive: nothing was written: the package's list of its kernels, {kernels / '__init__.py'}, names the "
        "cell of every script in derivations/, one each (fix the script, or move it out of derivations/ meanwhile)")
    assert list(kernels.iterdir()) == []


def test_a_cell_renamed_to_anothers_name_writes_over_neither_nor_the_package_index(tmp_path, monkeypatch, capsys):
    """A script's cell renamed to the cell of another script: generated by name, it wrote its
    kernel over the other's and an index that listed the name twice; the main job wrote that index."""
    home, kernels = tmp_path / "derivations", tmp_path / "kernels"
    write_cell(home, "first"), write_cell(home, "second")
    kernels.mkdir()
    monkeypatch.setattr(gen, "HOME", home)
    monkeypatch.setattr(gen, "KERNELS", kernels)
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    before = {p.name: p.read_text() for p in [*kernels.iterdir(), *home.glob("*.md")]}
    (home / "second.py").write_text((home / "second.py").read_text().replace('Cell("second"', 'Cell("first"'))
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # the scripts named as typed from here
    assert cli.main(["--derivations", "derivations", "generate", "second"]) == 2
    assert "derivations/first.py and derivations/second.py both build the cell 'first'" in capsys.readouterr().err
    assert cli.main(["--derivations", str(home)]) == 2
    assert {p.name: p.read_text() for p in [*kernels.iterdir(), *home.glob("*.md")]} == before


def test_generate_check_names_every_stale_file_after_the_diffs_as_typed_from_here(tmp_path, monkeypatch, capsys):
    """A kernel's diff runs to hundreds of lines: the closing line names the stale files again,
    each as the user would type it from the working directory, the missing and the orphaned too."""
    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    script = home / "sigmoid_rnn.py"
    script.write_text(script.read_text().replace("sigmoid(a)", "sigmoid(a + 1)"))
    (home / "sigmoid_rnn.md").unlink()
    (kernels / "gone.py").write_text((kernels / "sigmoid_rnn.py").read_text())
    capsys.readouterr()
    assert cli.main(["--derivations", str(home), "generate", "--check"]) == 1
    captured = capsys.readouterr()
    assert "--- kernels/sigmoid_rnn.py (on disk)" in captured.out
    assert "derivations/sigmoid_rnn.md: missing\nkernels/gone.py: generated, but no derivation script" in captured.out
    assert captured.err.startswith("3 generated file(s) stale (kernels/sigmoid_rnn.py, derivations/sigmoid_rnn.md, "
                                   "kernels/gone.py); run `lstm-derive --derivations "), captured.err


def test_generated_files_do_not_depend_on_the_directory_the_command_ran_in(tmp_path, monkeypatch, capsys):
    home = tmp_path / "cells"
    write_cell(home, "sigmoid_rnn")
    monkeypatch.chdir(home)
    assert cli.main(["generate", "sigmoid_rnn.py", "--out", "build"]) == 0
    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", "cells/sigmoid_rnn.py", "--check", "--out", "cells/build"]) == 0
    assert cli.main(["generate", str(home / "sigmoid_rnn.py"), "--check", "--out", str(home / "build")]) == 0
    assert "run `lstm-derive generate sigmoid_rnn.py --out build`" in (home / "build" / "sigmoid_rnn.py").read_text()


def test_a_directory_given_as_a_cell_says_where_directories_go(tmp_path, capsys):
    write_cell(tmp_path / "cells", "sigmoid_rnn")
    assert cli.main(["check", str(tmp_path / "cells")]) == 2
    assert f"lstm-derive --derivations {tmp_path / 'cells'} ..." in capsys.readouterr().err


def test_check_takes_more_problems_drawn_the_same_every_run(tmp_path, capsys):
    script = write_cell(tmp_path / "mine", "sigmoid_rnn")
    assert cli.main(["check", str(script), "--problems", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == REPORTS * 5 + 3 and all(line.endswith(", ok") for line in out[:-3])
    assert re.fullmatch(r"sigmoid_rnn: passed; the largest errors over 5 problems: central \S+, complex \S+, "
                        r"float32 \S+", out[-3]), out[-3]
    assert cli.checks(5)[:len(cli.CHECKS)] == cli.CHECKS and cli.checks(5) == cli.checks(5)
    assert len({tuple(c.items()) for c in cli.checks(5)}) == 5
    assert [c["seed"] for c in cli.checks(5)] == list(range(5))  # no drawn problem repeats a fixed one's seed
    with pytest.raises(SystemExit):
        cli.main(["check", str(script), "--problems", "0"])
    assert "expected a whole number of at least 1, got '0'" in capsys.readouterr().err


def test_the_first_check_crosses_the_backward_passs_spans(tmp_path):
    """A kernel wrong only where a span ends before the sequence does (a product formed over the
    first steps of the sequence, not over the span's t0..t1) passes a check in one span and fails
    with CHECKS[0]."""
    source = (gen.KERNELS / "lstm.py").read_text()
    wrong = source.replace("dh_dc_span = o_seq[t0:t1]*(1 - tanh_c_seq[t0:t1]**2)",
                           "dh_dc_span = o_seq[:t1 - t0]*(1 - tanh_c_seq[:t1 - t0]**2)")
    assert wrong != source
    (tmp_path / "wrong_lstm.py").write_text(wrong)
    kernel = gen.import_kernel(tmp_path / "wrong_lstm.py")
    one_span = {k: v for k, v in cli.CHECKS[0].items() if k != "span"}
    assert all(r.ok for r in cli._reports(kernel, one_span)[1])
    assert not all(r.ok for r in cli._reports(kernel, cli.CHECKS[0])[1])
    assert kernel._span(2, 4, float) > 100  # the default span is restored


def test_show_writes_a_scripts_document_for_the_folder_it_will_go_to(tmp_path, capsys):
    script = write_cell(tmp_path / "mine", "sigmoid_rnn")
    assert cli.main(["show", str(script), "--markdown", "--out", str(tmp_path / "docs")]) == 0
    shown = capsys.readouterr().out
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "docs")]) == 0
    assert shown == (tmp_path / "docs" / "sigmoid_rnn.md").read_text(encoding="utf-8")


def test_show_says_out_is_not_for_the_packages_own_scripts(capsys):
    assert cli.main(["show", str(gen.HOME / "rnn.py"), "--markdown", "--out", "elsewhere"]) == 0
    out, err = capsys.readouterr()
    assert out == (gen.HOME / "rnn.md").read_text(encoding="utf-8")
    assert "rnn.py is one of the package's own scripts" in err and "--out is for scripts of your own" in err


def test_a_folder_without_scripts_is_refused_and_removes_nothing(tmp_path, capsys):
    """Not a run over the package's derivations/: no kernel of the package is an orphan of it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    before = sorted(gen.KERNELS.glob("*.py")) + sorted(gen.HOME.glob("*.md"))
    for command in ([], ["generate"], ["generate", "--check"], ["check"]):
        assert cli.main(["--derivations", str(empty), *command]) == 2, command
        assert f"no derivation scripts in {empty}" in capsys.readouterr().err
    assert cli.main(["--derivations", str(empty), "show", "lstm"]) == 2
    assert f"no cell 'lstm' in {empty}: no script lstm.py there (it holds no derivation scripts)" in capsys.readouterr().err
    assert sorted(gen.KERNELS.glob("*.py")) + sorted(gen.HOME.glob("*.md")) == before


def test_a_broken_script_among_the_packages_own_leaves_the_summary(tmp_path, monkeypatch, capsys):
    """The package's index cannot be written while a script fails; the summary still comes, the
    failing script a row of it."""
    home = tmp_path / "derivations"
    write_cell(home, "sigmoid_rnn")
    (home / "broken.py").write_text("raise RuntimeError('half edited')\n")
    monkeypatch.setattr(gen, "HOME", home)
    monkeypatch.setattr(gen, "KERNELS", tmp_path / "kernels")
    (tmp_path / "kernels").mkdir()
    assert cli.main(["--derivations", str(home)]) == 2
    out = capsys.readouterr().out
    assert "\n1 passed, 0 failed, 1 not derived (broken.py)\n" in out


def test_a_run_over_the_packages_own_scripts_lists_their_kernels_in_the_package_index(tmp_path, monkeypatch, capsys):
    """A script added to derivations/ is importable as lstm_derive.kernels.<cell> after `lstm-derive`."""
    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    assert cli.main(["--derivations", str(home)]) == 0
    assert 'CELLS = ("sigmoid_rnn",)' in (kernels / "__init__.py").read_text()


@pytest.mark.parametrize("broken", [False, True])
def test_the_main_job_removes_the_files_of_a_script_that_is_gone_unless_a_script_fails(tmp_path, monkeypatch, capsys,
                                                                                         broken):
    """As `generate` does: otherwise the main job passes, and `generate --check` then fails on the
    kernel and document a removed script left. A failing script's own files would look the same."""
    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    gone = [kernels / "gone.py", home / "gone.md"]  # as a script gone.py, since removed, left them
    for path in gone:
        as_generated(path, (kernels / "sigmoid_rnn.py").read_text().replace("sigmoid_rnn", "gone"))
    if broken:
        (home / "broken.py").write_text("raise RuntimeError('half edited')\n")
    assert cli.main(["--derivations", str(home)]) == (2 if broken else 0)
    err = capsys.readouterr().err
    assert [path.exists() for path in gone] == [broken, broken]
    assert ("removed" in err) == (not broken)
    assert cli.main(["--derivations", str(home), "generate", "--check"]) == (2 if broken else 0)


def test_an_installation_without_derivations_says_where_they_are(tmp_path, monkeypatch, capsys):
    """Installed from a wheel, the package has no derivations/ beside it: the message says so."""
    monkeypatch.setattr(gen, "HOME", tmp_path / "site-packages" / "derivations")
    monkeypatch.chdir(tmp_path)
    for command in ([], ["check"], ["generate", "--check"]):
        assert cli.main(command) == 2
        assert "no derivations/ here, and this installation has none beside it" in capsys.readouterr().err


def test_an_installation_without_derivations_checks_a_script_given_by_its_path(tmp_path, monkeypatch, capsys):
    """pip install . brings no derivations/; a script of one's own needs none, and the same script
    named twice (my_rnn.py, ./my_rnn.py) is checked once."""
    script = tmp_path / "my_rnn.py"
    script.write_text((gen.HOME / "rnn.py").read_text().replace('Cell("rnn"', 'Cell("my_rnn"'))
    monkeypatch.setattr(gen, "HOME", tmp_path / "site-packages" / "derivations")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "my_rnn.py", "./my_rnn.py"]) == 0
    out = capsys.readouterr().out
    assert out.count("my_rnn: passed") == 1 and "1 passed, 0 failed" in out
    assert cli.main(["generate", "my_rnn.py"]) == 2
    assert "holds only the kernels of its own cells, whose scripts come with a clone" in capsys.readouterr().err
    assert cli.main(["--derivations", "my_rnn.py", "check"]) == 2
    assert "my_rnn.py: is a file, not a directory of derivation scripts" in capsys.readouterr().err


def test_an_interrupt_while_the_modules_load_ends_quietly(monkeypatch, capsys):
    def interrupted(command):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load", interrupted)
    assert cli.main(["check", "rnn"]) == 130
    assert capsys.readouterr().err == "lstm-derive: interrupted\n"


# A Ctrl-C while a module loads, at the first import of it, and the command run as its console
# script runs it (importing the entry point's module, then calling its function) or as
# python -m lstm_derive.
INTERRUPTED_IMPORT = """
import importlib, os, runpy, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            os.kill(os.getpid(), signal.SIGINT)

sys.meta_path.insert(0, Interrupt())
sys.argv = ["lstm-derive", "check", "rnn"]
if {entry_point!r}:
    module, function = {entry_point!r}.split(":")
    sys.exit(getattr(importlib.import_module(module), function)())
runpy.run_module("lstm_derive", run_name="__main__")
"""


@pytest.mark.parametrize("console_script", [True, False])
# argparse: one that cli itself imports; datetime: one that NumPy's C code imports, which turns the
# KeyboardInterrupt into an ImportError
@pytest.mark.parametrize("module", ["argparse", "numpy", "datetime", "sympy"])
@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="Windows: no signal mask to hold a Ctrl-C back")
def test_an_interrupt_while_the_command_loads_ends_quietly(module, console_script):
    pyproject = (gen.PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    entry_point = re.search(r'^lstm-derive = "(.+)"$', pyproject, re.M).group(1) if console_script else ""
    code = INTERRUPTED_IMPORT.format(module=module, entry_point=entry_point)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=gen.PACKAGE.parent, preexec_fn=_as_from_a_terminal)
    assert (run.returncode, run.stderr) == (130, "lstm-derive: interrupted\n"), run.stderr


def _as_from_a_terminal():
    """A Ctrl-C delivered as from a terminal, whatever the suite inherited: a script's shell that runs
    it in the background (`pytest &`) ignores SIGINT in it, and so would the command run here."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_a_derivation_script_piped_into_a_reader_that_stops_early_ends_quietly():
    """`python derivations/lstm.py | head -1`: explain() ends without a traceback."""
    run = subprocess.Popen([sys.executable, str(gen.HOME / "lstm.py")], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    run.stdout.close()  # before the script prints: its every write meets a closed pipe
    run.wait(timeout=120)
    err = run.stderr.read()
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err


def test_a_derivation_script_with_a_clashing_name_says_so_in_one_line(tmp_path):
    """`python my_cell.py` where the whole cell is wrong (a state y, whose adjoint dy is the kernel's):
    explain() prints the message as the command line does, without a traceback, status 2."""
    script = tmp_path / "ycell.py"
    script.write_text(textwrap.dedent("""
        from lstm_derive import Cell, explain, tanh
        cell = Cell("ycell", title="A state named y")
        x, y_prev = cell.input("x"), cell.state("y")
        (a,) = cell.affine("W", [x, y_prev], blocks=["a"])
        cell.update(y=tanh(a))
        explain(cell)
    """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("lstm-derive: ") and "state 'y' makes the kernel name 'dy'" in run.stderr
    assert len(run.stderr.splitlines()) == 1 and run.stdout == ""


@pytest.mark.parametrize("command", [[], ["check"], ["generate"], ["show"]])
def test_the_version_is_printed_and_help_answers_without_numpy_or_sympy(command):
    run = subprocess.run([sys.executable, "-m", "lstm_derive", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == "lstm-derive 0.1.0\n"
    code = (f"import sys\nfrom lstm_derive import cli\ntry:\n    cli.main({[*command, '--help']})\nexcept SystemExit:\n"
            "    pass\nprint([module for module in ('numpy', 'sympy') if module in sys.modules])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.endswith("\n[]\n") and "usage: lstm-derive" in run.stdout


def test_a_script_that_exits_is_a_script_that_failed(tmp_path, capsys):
    """sys.exit() in a script (or argparse reading lstm-derive's own arguments) ends neither the
    run nor its summary: the script is not derived, and the others are checked."""
    cells = tmp_path / "cells"
    write_cell(cells, "sigmoid_rnn")
    (cells / "exits.py").write_text("import sys\nfrom lstm_derive import Cell\nsys.exit(0)\n", encoding="utf-8")
    assert cli.main(["check", str(cells / "exits.py")]) == 2
    assert "exits.py:3: SystemExit: 0" in capsys.readouterr().err
    assert cli.main(["--derivations", str(cells)]) == 2
    assert "1 passed, 0 failed, 1 not derived (exits.py)" in capsys.readouterr().out


def test_a_scripts_helpers_beside_it_import(tmp_path, capsys):
    """_*.py beside the scripts are helpers: a script imports them as `python script.py` would."""
    cells = tmp_path / "cells"
    script = write_cell(cells, "sigmoid_rnn")
    (cells / "_names.py").write_text("TITLE = 'from a helper'\n", encoding="utf-8")
    script.write_text("from _names import TITLE\n" + script.read_text(encoding="utf-8"), encoding="utf-8")
    assert cli.main(["--derivations", str(cells), "check"]) == 0
    assert str(cells) not in sys.path  # put back as it was


def test_an_error_in_a_helper_names_the_helpers_line_and_the_scripts_call(tmp_path, capsys, monkeypatch):
    """A node a helper module makes is refused at the helper's line, and the script's line that
    called the helper is named too: the helper may serve several calls."""
    (tmp_path / "_gates.py").write_text("from lstm_derive import sigmoid\n\n\n"
                                        "def gate(cell, name, a):\n    return cell.let(name, sigmoid(a) + abs(a))\n")
    script = tmp_path / "three.py"
    script.write_text("from lstm_derive import Cell, tanh\nfrom _gates import gate\n\n"
                      'cell = Cell("three", title="t")\nx, h_prev = cell.input("x"), cell.state("h")\n'
                      '(a,) = cell.affine("W", [x, h_prev], blocks=["a"])\n'
                      'f = gate(cell, "f", a)\ncell.update(h=tanh(f))\n')
    assert cli.main(["check", str(script)]) == 2
    assert f"{tmp_path / '_gates.py'}:5 (called from {script}:7): 'f' uses Abs" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # the helper spelt as the script is, beside it
    assert cli.main(["check", "three.py"]) == 2
    assert "lstm-derive: _gates.py:5 (called from three.py:7): 'f' uses Abs" in capsys.readouterr().err


def test_a_derivation_that_takes_long_says_it_is_still_at_it(tmp_path, capsys, monkeypatch):
    """Past SLOW seconds a line on stderr says the command is still deriving; a quick one says nothing."""
    import time as clock

    script = write_cell(tmp_path, "sigmoid_rnn")
    targets_for = gen.targets_for
    assert cli.main(["check", str(script), "--problems", "1"]) == 0  # well under SLOW
    assert "still deriving" not in capsys.readouterr().err
    monkeypatch.setattr(cli, "SLOW", 0.05)
    monkeypatch.setattr(gen, "targets_for", lambda *args, **kw: (clock.sleep(0.5), targets_for(*args, **kw))[1])
    assert cli.main(["check", str(script), "--problems", "1"]) == 0
    assert "lstm-derive: still deriving sigmoid_rnn.py (a large cell takes a while) ..." in capsys.readouterr().err


def test_a_derivation_that_takes_minutes_gives_its_time_so_far_now_and_then(tmp_path, capsys, monkeypatch):
    """One line at SLOW seconds and then silence for minutes looked like a hang: every SLOW_EVERY
    seconds after it, a line gives the time so far (a quick cell's silence is the test above's)."""
    import time as clock

    script = write_cell(tmp_path, "sigmoid_rnn")
    targets_for = gen.targets_for
    monkeypatch.setattr(cli, "SLOW", 0.1)
    monkeypatch.setattr(cli, "SLOW_EVERY", 0.2)
    monkeypatch.setattr(gen, "targets_for", lambda *args, **kw: (clock.sleep(0.9), targets_for(*args, **kw))[1])
    start = clock.monotonic()
    assert cli.main(["check", str(script), "--problems", "1"]) == 0
    took = clock.monotonic() - start  # past 0.9 s by the derivation's own time, which a busy machine stretches
    lines = [line for line in capsys.readouterr().err.splitlines() if "still deriving" in line]
    assert lines[0] == "lstm-derive: still deriving sigmoid_rnn.py (a large cell takes a while) ...", lines
    assert 2 <= len(lines[1:]) <= (took - 0.1) / 0.2 and all(re.fullmatch(
        r"lstm-derive: still deriving sigmoid_rnn\.py \d+ s so far \.\.\.", line) for line in lines[1:]), lines


def test_the_time_so_far_is_said_at_the_first_mark_then_at_every_interval_and_not_after_the_block():
    import time as clock

    said = []
    start = clock.monotonic()
    with cli._said_while_slow(lambda seconds, first: said.append((seconds, first)), 0.2, 0.3):
        clock.sleep(1.0)
    took = clock.monotonic() - start
    clock.sleep(0.4)
    # the marks 0.2, 0.5, 0.8 (1.1 ...) s that the block outlived, each said at or after its time: a busy
    # machine may say one late, never early, and none once the block is over
    marks = [0.2 + 0.3 * k for k in range(10) if 0.2 + 0.3 * k < took]
    assert [first for _, first in said] == [True] + [False] * (len(said) - 1) and 2 <= len(said) <= len(marks), said
    assert all(mark - 1e-3 <= seconds for (seconds, _), mark in zip(said, marks)), said
    with cli._said_while_slow(said.append, 0.2, 0.3):
        pass
    clock.sleep(0.3)
    assert len(said) == 3


def test_a_file_that_is_no_python_is_refused_as_such(tmp_path, capsys):
    (tmp_path / "notes.md").write_text("# notes\n")
    assert cli.main(["check", str(tmp_path / "notes.md")]) == 2
    assert f"{tmp_path / 'notes.md'}: expected a derivation script or kernel module (a .py file)" in capsys.readouterr().err


def test_two_scripts_of_one_cell_name_are_refused_not_written_over_each_other(tmp_path, capsys):
    cells = tmp_path / "cells"
    first = write_cell(cells, "sigmoid_rnn")
    (cells / "again.py").write_text(first.read_text(encoding="utf-8"), encoding="utf-8")
    assert cli.main(["--derivations", str(cells), "generate", "--out", str(tmp_path / "out")]) == 2
    assert "both make sigmoid_rnn.py (cells of the same name, 'sigmoid_rnn')" in capsys.readouterr().err
    assert cli.main(["--derivations", str(cells)]) == 2
    assert "1 passed, 0 failed, 1 not derived" in capsys.readouterr().out
    assert cli.main(["--derivations", str(cells), "check"]) == 2  # the second is not checked in the first's place
    assert "both make sigmoid_rnn.py" in capsys.readouterr().err
    assert cli.main(["generate", str(first), str(first), "--out", str(tmp_path / "once")]) == 0
    assert capsys.readouterr().out.endswith("2 files generated, 2 changed\n")  # one script given twice is one


def test_generate_takes_cells_by_name_and_refuses_a_file_for_out(tmp_path, capsys):
    assert cli.main(["generate", "rnn", "--check"]) == 0
    assert capsys.readouterr().out == "3 generated files are fresh\n"  # its kernel, document and the index
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    script = write_cell(tmp_path / "mine", "sigmoid_rnn")
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "a_file")]) == 2
    assert "--out " + str(tmp_path / "a_file") + ": a file, not a directory" in capsys.readouterr().err


def test_generate_check_names_missing_files_without_printing_them(tmp_path, capsys):
    script = write_cell(tmp_path / "mine", "sigmoid_rnn")
    assert cli.main(["generate", "--check", str(script), "--out", str(tmp_path / "my out")]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{tmp_path / 'my out' / name}: missing" for name in ("sigmoid_rnn.py", "sigmoid_rnn.md")]
    assert f"--out '{tmp_path / 'my out'}'`" in captured.err  # a path with a space, quoted for the shell


def test_an_option_after_the_command_gets_a_hint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["check", "--derivations", str(tmp_path)])
    assert "--derivations goes before the command" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_to_a_full_disk_ends_with_one_line():
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "lstm_derive", "show", "rnn"], stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    assert run.returncode == 1 and run.stderr == "lstm-derive: cannot write the output (No space left on device)\n"


def test_help_says_what_the_exit_statuses_mean(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "Exit status: 0 all checked and fresh; 1 a check failed" in " ".join(capsys.readouterr().out.split())


def test_check_help_gives_the_fixed_checks_steps_and_scales(capsys):
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, key in (("--steps", "T"), ("--scale", "scale")):
        defaults = re.search(rf"{option} \S+ [^(]*\(default: ([^;]*?), and [^;]* for those drawn\)", text).group(1)
        assert [float(n) for n in re.findall(r"[\d.]+", defaults)] == [c[key] for c in cli.CHECKS], defaults


def test_the_main_jobs_progress_is_on_stderr_and_its_summary_on_stdout(tmp_path, capsys):
    cells = tmp_path / "cells"
    write_cell(cells, "sigmoid_rnn")
    assert cli.main(["--derivations", str(cells)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("[1/1] sigmoid_rnn.py: deriving, generating, checking ...")
    assert captured.out.startswith("\ncell ") and "[1/1]" not in captured.out


HANDWRITTEN = """
import numpy as np
from lstm_derive.kernels import rnn

STATES, PARAMS, init_params = rnn.STATES, rnn.PARAMS, rnn.init_params


def forward(params, x, state=None):
    return rnn.forward(params, x, state)


def backward(params, cache, dys, dstate=None):
    grads, dx, dstate0 = rnn.backward(params, cache, dys, dstate)
    grads["b_h"] = grads["b_h"] * {factor}
    return grads, dx, dstate0
"""


@pytest.mark.parametrize("factor, status", [(1, 0), (1.01, 1)])
def test_check_takes_a_kernel_module_written_by_hand(tmp_path, capsys, factor, status):
    """A module with forward() and backward() is checked as it stands, on the same problems as a
    cell's kernel; one bias gradient 1% off fails, naming it."""
    kernel = tmp_path / "my_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor=factor))
    assert cli.main(["check", str(kernel), "--problems", "3"]) == status
    out = capsys.readouterr().out
    assert out.count("my_rnn (T=") == 3 * REPORTS or status  # three problems: the module's name
    assert "span=" not in out  # a hand-written kernel has no spans to cut
    assert ("db_h[" in out and "0 passed, 1 failed (my_rnn)" in out) if status else "1 passed, 0 failed" in out
    assert ("my_rnn: the gradients that fail, and on how many of the 3 problems: db_h 3 (central, complex)\n" in out) == bool(status)


def test_a_kernel_that_raises_on_one_problem_is_judged_on_the_others(tmp_path, capsys):
    """A kernel that breaks at H = 1 alone, and gets a bias gradient 1% wrong elsewhere: the problems
    after the one it raised on still run, and the summary names both mistakes."""
    kernel = tmp_path / "odd_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor='(1.01 if grads["b_h"].size > 1 else np.ones((2, 2)) @ np.ones(3))'))
    assert cli.main(["check", str(kernel)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL: the kernel raised ValueError in backward(), odd_rnn.py:14") == 1, out
    assert "odd_rnn: the gradients that fail, and on how many of the 4 problems: db_h 3 (central, complex)\n" in out, out
    assert "odd_rnn: on 1 of the 4 problems, the kernel raised ValueError in backward(), odd_rnn.py:14" in out, out
    assert "odd_rnn (T=12" in out  # the problem after it ran


def test_an_interrupted_check_says_where_the_kernel_was_and_sums_up_the_problems_before(tmp_path, capsys):
    """Ctrl-C on a kernel that hangs at 12 steps (raised here where the signal would land): the
    problem, the kernel's line, and the three problems checked before it."""
    kernel = tmp_path / "my_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor=1).replace(
        "    return rnn.forward(params, x, state)",
        "    if len(x) == 12:\n        raise KeyboardInterrupt\n    return rnn.forward(params, x, state)"))
    assert cli.main(["check", str(kernel)]) == 130
    captured = capsys.readouterr()
    assert "my_rnn (T=12, B=2, D=2, H=2, seed=3, scale=1.0) interrupted in forward(), my_rnn.py:10\n" in captured.out
    assert re.search(r"\nmy_rnn: interrupted on problem 4; the largest errors over the 3 before it: central \S+, "
                     r"complex \S+, float32 \S+\n", captured.out), captured.out
    assert "passed" not in captured.out and captured.err == "lstm-derive: interrupted\n"


def sleeping_kernel(path, seconds):
    """HANDWRITTEN whose first forward() over 12 steps sleeps first: one problem that takes long."""
    path.write_text(HANDWRITTEN.format(factor=1).replace(
        "    return rnn.forward(params, x, state)",
        f"    if len(x) == 12 and not slept:\n        slept.append(time.sleep({seconds}))\n"
        "    return rnn.forward(params, x, state)").replace("import numpy as np", "import time\nimport numpy as np\n"
                                                              "slept = []"))
    return path


def test_a_problem_that_takes_long_says_it_is_still_being_checked(tmp_path, capsys, monkeypatch):
    """On stderr, as a derivation's: it went to stdout, so that `check > report.txt` left the terminal
    silent and put the notice in the report."""
    kernel = sleeping_kernel(tmp_path / "my_rnn.py", 0.3)
    monkeypatch.setattr(cli, "CHECKS", cli.CHECKS[3:])  # the problem of 12 steps alone
    assert cli.main(["check", str(kernel)]) == 0  # well under SLOW_CHECK
    assert "still checking" not in "".join(capsys.readouterr())
    monkeypatch.setattr(cli, "SLOW_CHECK", 0.1, raising=False)
    assert cli.main(["check", str(kernel)]) == 0
    out, err = capsys.readouterr()
    assert "still checking" not in out
    assert ("lstm-derive: still checking my_rnn (T=12, B=2, D=2, H=2, seed=3, scale=1.0) after 0.1 s (every element "
            "costs five runs of forward()); Ctrl-C stops it and says where in the kernel it was\n") in err, err


@pytest.mark.parametrize("methods, cost", [(["complex"], " (every element costs one run of forward())"),
                                           (["central", "float32"], " (every element costs four runs of forward())")])
def test_the_still_checking_notice_counts_the_runs_of_the_methods_asked_for(tmp_path, capsys, monkeypatch, methods, cost):
    """It said five runs whatever --methods asked for; the float32 run is one call for all elements."""
    kernel = sleeping_kernel(tmp_path / "my_rnn.py", 0.3)
    monkeypatch.setattr(cli, "CHECKS", cli.CHECKS[3:])  # the problem of 12 steps alone
    monkeypatch.setattr(cli, "SLOW_CHECK", 0.1)
    assert cli.main(["check", str(kernel), "--methods", *methods]) == 0
    assert (f"lstm-derive: still checking my_rnn (T=12, B=2, D=2, H=2, seed=3, scale=1.0) after 0.1 s{cost}; "
            "Ctrl-C stops it and says where in the kernel it was\n") in capsys.readouterr().err


def test_a_problem_that_takes_minutes_gives_its_time_so_far_now_and_then(tmp_path, capsys, monkeypatch):
    """The notice came once, then a check of `--steps 200` was silent for minutes: every SLOW_EVERY
    seconds after it, a line gives the time so far, as a derivation's do."""
    kernel = sleeping_kernel(tmp_path / "my_rnn.py", 0.7)
    monkeypatch.setattr(cli, "CHECKS", cli.CHECKS[3:])  # the problem of 12 steps alone
    monkeypatch.setattr(cli, "SLOW_CHECK", 0.1)
    monkeypatch.setattr(cli, "SLOW_EVERY", 0.2)
    assert cli.main(["check", str(kernel)]) == 0
    problem = "my_rnn (T=12, B=2, D=2, H=2, seed=3, scale=1.0)"  # the others may pass 0.1 s on a busy machine
    lines = [line for line in capsys.readouterr().err.splitlines() if problem in line]
    assert lines[0].startswith(f"lstm-derive: still checking {problem} after 0.1 s "), lines
    assert len(lines[1:]) >= 2 and all(re.fullmatch(
        rf"lstm-derive: still checking {re.escape(problem)} \d+ s so far \.\.\.", line) for line in lines[1:]), lines


def test_the_summary_says_what_parts_the_problems_a_gradient_fails_on_from_the_others(tmp_path, capsys):
    """A sum over the batch taken as its mean is right for one row alone; a gradient wrong on every
    problem has nothing to part."""
    kernel = tmp_path / "my_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor="1 / len(dys[0])"))
    assert cli.main(["check", str(kernel), "--problems", "12"]) == 1
    out = capsys.readouterr().out
    assert "\nmy_rnn: db_h fails on every problem with B >= 2, and on no other\n" in out, out
    kernel.write_text(HANDWRITTEN.format(factor=1.01))
    assert cli.main(["check", str(kernel), "--problems", "12"]) == 1
    out = capsys.readouterr().out
    assert "my_rnn: the gradients that fail, and on how many of the 12 problems: db_h 12" in out
    assert "on every problem with" not in out, out


def test_a_gradient_carried_back_over_too_few_steps_fails_on_the_long_problems_alone_and_is_said_to(tmp_path, capsys):
    source = (pathlib.Path(__file__).parent.parent / "examples" / "handwritten_rnn.py").read_text()
    right = "dh = da[t] @ W_h  # on to h_prev"
    assert right in source
    kernel = tmp_path / "truncated_rnn.py"
    kernel.write_text(source.replace(right, "dh = da[t] @ W_h * (t > len(x) - 6)  # BPTT truncated at 5 steps"))
    assert cli.main(["check", str(kernel), "--problems", "12"]) == 1
    out = capsys.readouterr().out
    assert "truncated_rnn: dW_x, dW_h, db, dx, dh0 fail on every problem with T >= 12, and on no other\n" in out, out


def test_an_error_raised_on_every_problem_with_its_own_sizes_is_said_once(tmp_path, capsys):
    """ys returned (B, T, H): each problem's message names its own shapes, one error all the same."""
    kernel = tmp_path / "my_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor=1).replace(
        "    return rnn.forward(params, x, state)",
        "    ys, final, cache = rnn.forward(params, x, state)\n    return ys.swapaxes(0, 1), final, cache"))
    assert cli.main(["check", str(kernel), "--problems", "12"]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL: the kernel raised") == 1 and out.count("the kernel raised") == 2, out
    assert re.search(r"\nmy_rnn: on (\d+) of the 12 problems, the kernel raised ValueError: forward\(\) returned ys of "
                     r"shape \(3, 4, 4\): expected \(T, B, H\) = \(4, 3, 4\) \(on the others, the same of their own "
                     r"sizes\)\n", out), out
    assert re.search(r"\nmy_rnn: .* fails? on every problem with .*, and on no other of the \d+ that ran\n", out), out


def test_check_fails_a_derivative_wrong_only_where_the_cell_saturates(tmp_path, capsys):
    """tanh' = 1 - h**2 floored at 1e-6, against vanishing gradients: right for |a| below 7.6 and
    wrong beyond, which the default problems reach."""
    source = (pathlib.Path(__file__).parent.parent / "examples" / "handwritten_rnn.py").read_text()
    right = "da[t] = (1 - h[t + 1] ** 2) * dh"
    assert right in source
    kernel = tmp_path / "floored_rnn.py"
    kernel.write_text(source.replace(right, "da[t] = np.maximum(1 - h[t + 1] ** 2, 1e-6) * dh"))
    assert cli.main(["check", str(kernel)]) == 1
    assert "floored_rnn: the gradients that fail" in capsys.readouterr().out


def test_the_summary_says_once_which_of_the_losss_terms_the_gradients_fail_with(tmp_path, capsys):
    kernel = tmp_path / "my_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor=1).replace("rnn.backward(params, cache, dys, dstate)",
                                                           "rnn.backward(params, cache, dys, None)"))
    assert cli.main(["check", str(kernel)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\nmy_rnn: on 4 of the 4 problems, with dys = 0 \(the final state's term alone\) the gradients "
                     r"fail along a random direction, with dstate = 0 .* backward\(\) mishandles dstate", out), out


def test_the_summary_says_which_methods_fail_and_what_that_suggests_once(tmp_path, capsys):
    """A forward that drops x's imaginary part, which the complex step alone sees: the summary names
    it beside the gradient, and the hint each problem's report gives, once, with its count."""
    kernel = tmp_path / "my_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor=1).replace(
        "return rnn.forward(params, x, state)", "return rnn.forward(params, x.real.astype(x.dtype), state)"))
    assert cli.main(["check", str(kernel)]) == 1
    out = capsys.readouterr().out
    assert "my_rnn: the gradients that fail, and on how many of the 4 problems: dx 4 (complex)\n" in out
    summary = out[out.index("my_rnn: FAILED"):]
    assert summary.count("central differences agree with the kernel where the complex step does not") == 1
    assert "my_rnn: on 4 of the 4 problems, central differences agree" in summary


def test_a_method_that_judged_no_element_states_no_error(tmp_path, capsys):
    """A forward that returns only real parts gives the complex step nothing to read: the summary
    has no complex error to state, which is not an error of 0."""
    kernel = tmp_path / "real_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor=1).replace(
        "    return rnn.forward(params, x, state)",
        "    ys, final, cache = rnn.forward(params, x, state)\n"
        "    return ys.real.astype(ys.dtype), tuple(f.real.astype(f.dtype) for f in final), cache"))
    assert cli.main(["check", str(kernel)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"real_rnn: FAILED; the largest errors over 4 problems: central \S+, complex -, float32 ", out), out
    assert "no imaginary part reaches the loss" in out


def test_steps_lengthen_every_problem_and_find_what_only_a_long_sequence_shows(tmp_path, capsys):
    """A hand-written kernel wrong past 12 steps (a chunk's carry, say) passes the problems of 1 to
    12 steps, and fails with --steps 16; a sequence of every step keeps every step. Wrong past 5,
    it fails the fixed problem of 12 steps."""
    kernel = tmp_path / "long_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor="(1.01 if len(dys) > 12 else 1)"))
    assert cli.main(["check", str(kernel), "--problems", "6"]) == 0
    assert cli.main(["check", str(kernel), "--problems", "6", "--steps", "16"]) == 1
    kernel.write_text(HANDWRITTEN.format(factor="(1.01 if len(dys) > 5 else 1)"))
    assert cli.main(["check", str(kernel)]) == 1
    assert "db_h[" in capsys.readouterr().out
    assert [c["T"] for c in cli.checks(6, steps=8)] == [8] * 6
    assert cli.checks(2, steps=8)[0]["lengths"] == (8, 1, 0) and cli.checks(2, steps=2)[0]["lengths"] == (2, 1, 0)


def test_a_cell_that_divides_by_zero_at_any_weights_is_not_said_to_overflow(tmp_path, capsys):
    """h = tanh(a)/relu(a) is 0/0 or x/0 wherever a <= 0, however small the weights: a smaller --scale
    cannot help, and the summary says what can be the cause instead."""
    script = tmp_path / "divrelu.py"
    script.write_text("from lstm_derive import Cell, relu, tanh\n"
                      'cell = Cell("divrelu")\n'
                      'x, h_prev = cell.input("x"), cell.state("h")\n'
                      '(a,) = cell.affine("W", [x, h_prev], blocks=["a"])\n'
                      "cell.update(h=tanh(a) / relu(a))\n")
    assert cli.main(["check", str(script)]) == 1
    out = capsys.readouterr().out
    assert "at weights 1000 times smaller too: no --scale avoids it (a division by a value that can be 0" in out
    assert "overflowing" not in out


def test_scale_sets_every_problems_weights_and_a_cell_that_overflows_is_said_to(tmp_path, capsys):
    """h = exp(a) overflows at scale 3, and over 12 steps at scale 1: those problems are judged at no element, and the cell fails,
    saying so and what to do; at --scale 0.1 every problem is judged, and it passes."""
    script = tmp_path / "c_exp.py"
    script.write_text("from lstm_derive import Cell, exp\n"
                      'cell = Cell("c_exp", title="exp")\n'
                      'x, h_prev = cell.input("x"), cell.state("h")\n'
                      '(a,) = cell.affine("W", [x, h_prev], blocks=["a"])\n'
                      "cell.update(h=exp(a))\n")
    assert cli.main(["check", str(script)]) == 1
    captured = capsys.readouterr()
    assert ("c_exp: 2 of the 4 problems could not be judged at all, the forward pass overflowing on them; "
            "a smaller --scale checks the cell where it does not") in captured.out
    assert "Warning" not in captured.err  # the overflow is the report's to say
    assert "no --scale avoids it" not in captured.out
    assert cli.main(["check", str(script), "--scale", "0.1"]) == 0
    assert {c["scale"] for c in cli.checks(6, scale=0.1)} == {0.1}
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(SystemExit):
            cli.main(["check", str(script), "--scale", bad])
        assert f"--scale: expected a finite number above 0, got '{bad}'" in capsys.readouterr().err


def test_a_kernel_module_that_raises_is_named_with_its_function_and_line(tmp_path, capsys):
    kernel = tmp_path / "bad_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor="np.ones(99)"))
    assert cli.main(["check", str(kernel)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: the kernel raised ValueError in backward(), bad_rnn.py:14: operands could not be broadcast" in out, out


def test_a_kernel_module_lacking_part_of_the_interface_says_what_a_kernel_defines(tmp_path, capsys):
    kernel = tmp_path / "half.py"
    kernel.write_text("def forward(params, x, state=None):\n    pass\n\n\ndef backward(params, cache, dys):\n    pass\n")
    assert cli.main(["check", str(kernel)]) == 2
    err = capsys.readouterr().err
    assert "lstm-derive: half.py has no init_params, STATES, PARAMS: a kernel defines forward(params, x, state)" in err


def test_a_kernel_module_that_raises_on_import_is_named_with_its_line(tmp_path, capsys):
    kernel = tmp_path / "broken_kernel.py"
    kernel.write_text("import numpy as np\n\n\ndef forward(params, x, state=None):\n    pass\n\n\n"
                      "def backward(params, cache, dys):\n    pass\n\n\nSTATES = np.nosuch\n")
    assert cli.main(["check", str(kernel)]) == 2
    err = capsys.readouterr().err
    assert f"{kernel}:12: importing this kernel module raised AttributeError" in err, err


def test_check_runs_the_methods_asked_for(tmp_path, capsys):
    """A kernel for float64 alone fails float32; --methods central complex leaves it out."""
    kernel = tmp_path / "f64_rnn.py"
    kernel.write_text(HANDWRITTEN.format(factor=1).replace(
        "    return rnn.forward(params, x, state)",
        "    assert np.asarray(x).dtype != np.float32, 'float64 alone'\n    return rnn.forward(params, x, state)"))
    assert cli.main(["check", str(kernel)]) == 1
    out = capsys.readouterr().out
    assert ("float32: cannot judge (on float32 input, the kernel raised AssertionError in forward(), f64_rnn.py:9: "
            "float64 alone)") in out, out  # where in the module: its function and line
    assert ("float32 -\nf64_rnn: what else fails, and on how many of the 4 problems: elements that could not be judged "
            "4\n\n0 passed, 1 failed (f64_rnn)") in out  # no error figure where none was judged
    assert cli.main(["check", str(kernel), "--methods", "central", "complex"]) == 0
    out = capsys.readouterr().out
    assert "float32" not in out and out.count(" central: ") == len(cli.CHECKS) == out.count(" complex: ")
    assert cli.main(["check", str(kernel), "--methods", "float32"]) == 2  # it judges no formula: no "passed" alone
    assert "--methods float32 alone compares a kernel with its own float64 run" in capsys.readouterr().err


def test_written_files_are_named_relative_to_the_working_directory(tmp_path, capsys, monkeypatch):
    script = write_cell(tmp_path / "mine", "sigmoid_rnn")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "build")]) == 0
    out = capsys.readouterr().out
    assert "wrote build/sigmoid_rnn.py\nwrote build/sigmoid_rnn.md\n" in out, out
    assert gen.shown(pathlib.Path("/")) == pathlib.Path("/")  # outside it: as given


def test_a_cell_given_after_methods_is_said_to_go_before_them(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["check", "--methods", "central", "my_cell.py"])
    assert stop.value.code == 2
    assert "--methods takes the words after it, and 'my_cell.py' is no method" in capsys.readouterr().err


def _relu_cell(directory, name, update):
    script = directory / f"{name}.py"
    script.write_text("from lstm_derive import Cell, relu\n"
                      f'cell = Cell("{name}")\n'
                      'x, h_prev = cell.input("x"), cell.state("h")\n'
                      '(a,) = cell.affine("W", [x], blocks=["a"])\n'
                      'u = cell.param("u")\n'
                      f"cell.update(h={update})\n", encoding="utf-8")
    return script


def test_a_problem_on_which_every_gradient_is_0_is_drawn_again(tmp_path, capsys):
    """An IndRNN's relu is off at both steps of the size-1 problem at seed 2: every gradient is 0
    there, the numeric ones too, and the check judged nothing; it is drawn again, and passes."""
    script = _relu_cell(tmp_path, "indrnn", "relu(a + u*h_prev)")
    assert cli.main(["check", str(script)]) == 0
    out = capsys.readouterr().out
    assert ("indrnn (T=2, B=1, D=1, H=1, seed=2, scale=1.0) every gradient is exactly 0 on this problem, which "
            "judges nothing: drawn again with seed 1002") in out
    judged = [line for line in out.splitlines() if "seed=1002" in line]
    assert len(judged) == REPORTS and all(line.endswith(", ok") for line in judged)
    assert "nothing was judged" not in out


def test_a_cell_whose_every_gradient_is_0_fails_as_judging_nothing(tmp_path, capsys):
    """h = relu(-relu(a + u*h_prev)) is 0 whatever its inputs: no draw gives a gradient to judge, but the
    first problem's sequence of 0 steps, whose final state is its initial one."""
    script = _relu_cell(tmp_path, "dead", "relu(-relu(a + u*h_prev))")
    assert cli.main(["check", str(script)]) == 1
    out = capsys.readouterr().out
    assert f"drawn again with seeds {', '.join(str(2 + 1000 * k) for k in range(1, cli.REDRAWS + 1))}" in out
    assert ("dead: on 3 of the 4 problems every gradient was exactly 0, on each of 11 draws: the checks judged "
            "nothing there; does every output depend on the inputs?") in out
    assert "but nothing was judged: every gradient is exactly 0 on this problem" in out


def test_the_summary_names_the_checks_that_fail_on_no_gradients_element(tmp_path, capsys):
    """A step function that reads state=None as ones: every element of every gradient passes, and
    the summary still says which check failed, not only FAILED beside errors within tolerance."""
    (tmp_path / "ones_rnn.py").write_text(textwrap.dedent('''
        import numpy as np
        from lstm_derive.kernels.rnn import PARAMS, STATES, forward, backward, init_params, step_backward  # noqa: F401
        from lstm_derive.kernels import rnn as _rnn


        def step_forward(params, x_t, state=None):
            if state is None:  # None read as ones, by the step function alone
                state = (np.ones((np.shape(x_t)[0], np.shape(params["W_h"])[0]), np.asarray(x_t).dtype),)
            return _rnn.step_forward(params, x_t, state)
    '''))
    assert cli.main(["check", str(tmp_path / "ones_rnn.py")]) == 1
    out = capsys.readouterr().out
    assert "ones_rnn: the gradients that fail" not in out
    assert "ones_rnn: what else fails, and on how many of the 4 problems: results that change with how it is called 3\n" in out


def test_a_script_without_a_command_gets_the_commands_that_take_it(capsys):
    with pytest.raises(SystemExit):
        cli.main(["my_cell.py"])
    assert "a script is given to a command: lstm-derive check my_cell.py (or show my_cell.py" in capsys.readouterr().err


def test_an_interrupted_main_job_shows_the_summary_of_the_cells_before_and_what_it_left(tmp_path, monkeypatch, capsys):
    """Ctrl-C on the second of three cells: the first's row, the count, and the two not checked;
    status 130, and the files of the cell it stopped in are left as they were."""
    cells = tmp_path / "cells"
    for name in ("first_rnn", "second_rnn", "third_rnn"):
        write_cell(cells, name)
    summary_row = cli._summary_row

    def stopped_at_the_second(script, *args):
        if script.name == "second_rnn.py":
            raise KeyboardInterrupt
        return summary_row(script, *args)

    monkeypatch.setattr(cli, "_summary_row", stopped_at_the_second)
    assert cli.main(["--derivations", str(cells)]) == 130
    captured = capsys.readouterr()
    rows = [line.split()[0] for line in captured.out.lstrip("\n").split("\n\n")[0].splitlines()[2:]]
    assert rows == ["first_rnn"], captured.out
    assert "\n1 passed, 0 failed; interrupted in second_rnn.py, 2 of 3 scripts not checked\n" in captured.out
    assert captured.err.endswith("lstm-derive: interrupted\n")


@pytest.mark.parametrize("stage", ["deriving", "checking"])
def test_an_interrupted_main_job_names_the_scripts_whose_files_it_did_not_generate(tmp_path, monkeypatch, capsys,
                                                                                    stage):
    """Three scripts edited, Ctrl-C on the second: the files of those it did not reach stay stale, which
    only `generate --check` showed. The line after the count names them (not the second where its
    files were written before its checks), with the command that writes them, which leaves all fresh."""
    home, kernels = a_package(tmp_path, monkeypatch, "first_rnn", "second_rnn", "third_rnn")
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    for script in home.glob("*.py"):
        script.write_text(script.read_text().replace("sigmoid(a)", "sigmoid(a + 1)"))
    targets_for, reports = gen.targets_for, cli._reports

    def stopped_at_the_second(stopped_in, real):
        def run(first, *args, **kwargs):
            if "second_rnn" in str(getattr(first, "CELL", first)) and stage == stopped_in:
                raise KeyboardInterrupt
            return real(first, *args, **kwargs)
        return run

    monkeypatch.setattr(gen, "targets_for", stopped_at_the_second("deriving", targets_for))
    monkeypatch.setattr(cli, "_reports", stopped_at_the_second("checking", reports))
    capsys.readouterr()
    assert cli.main(["--derivations", str(home)]) == 130
    out = capsys.readouterr().out.splitlines()
    count = out.index("1 passed, 0 failed; interrupted in second_rnn.py, 2 of 3 scripts not checked")
    left = ["second_rnn", "third_rnn"] if stage == "deriving" else ["third_rnn"]
    command = ["lstm-derive", "--derivations", str(home), "generate", *left]
    assert out[count + 1:] == [f"not generated: {', '.join(f'{name}.py' for name in left)}, whose kernels and documents "
                               f"were left as they were (`{shlex.join(command)}` brings them up to date)"], out
    monkeypatch.setattr(gen, "targets_for", targets_for)
    assert cli.main(["--derivations", str(home), "generate", "--check"]) == 1
    stale = capsys.readouterr().err
    assert all((f"{name}.py" in stale) == (name in left) for name in ("first_rnn", "second_rnn", "third_rnn")), stale
    assert cli.main(command[1:]) == 0
    assert cli.main(["--derivations", str(home), "generate", "--check"]) == 0


@pytest.mark.parametrize("stopped_in", ["second_rnn", "third_rnn"])
def test_an_interrupted_main_job_names_the_files_it_did_not_remove_and_the_command_that_does(tmp_path, monkeypatch,
                                                                                             capsys, stopped_in):
    """A script removed, Ctrl-C in a later one's checks: the files it left were not named (stopped in the
    last, no line came at all), and the command given, `generate` of the scripts not reached, does not
    remove them: `generate --check` still failed on them after it."""
    home, kernels = a_package(tmp_path, monkeypatch, "first_rnn", "second_rnn", "third_rnn")
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    as_generated(kernels / "gone_rnn.py", (kernels / "first_rnn.py").read_text().replace("first_rnn", "gone_rnn"))
    as_generated(home / "gone_rnn.md", (home / "first_rnn.md").read_text().replace("first_rnn", "gone_rnn"))
    reports = cli._reports

    def stopped(kernel, *args):
        if kernel.CELL == stopped_in:
            raise KeyboardInterrupt
        return reports(kernel, *args)

    monkeypatch.setattr(cli, "_reports", stopped)
    capsys.readouterr()
    assert cli.main(["--derivations", str(home)]) == 130
    out = capsys.readouterr().out.splitlines()
    command = shlex.join(["lstm-derive", "--derivations", str(home), "generate"])
    lines = out[[i for i, line in enumerate(out) if "interrupted in" in line][0] + 1:]
    assert lines == ([f"not generated: third_rnn.py, whose kernels and documents were left as they were (`{command}` "
                      "brings them up to date)"] if stopped_in == "second_rnn" else []) + [
        f"not removed: {kernels / 'gone_rnn.py'}, {home / 'gone_rnn.md'}, which no script generates any more "
        f"(`{command}` removes them)"], out
    assert cli.main(shlex.split(command)[1:]) == 0
    assert cli.main(["--derivations", str(home), "generate", "--check"]) == 0


def test_an_interrupted_main_job_on_a_folder_of_ones_own_says_nothing_of_files_left(tmp_path, monkeypatch, capsys):
    """Its files went to a scratch folder, gone with it: none is left stale in the user's tree."""
    cells = tmp_path / "cells"
    for name in ("first_rnn", "second_rnn"):
        write_cell(cells, name)
    monkeypatch.setattr(cli, "_reports", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(["--derivations", str(cells)]) == 130
    out = capsys.readouterr().out
    assert out.endswith("\n0 passed, 0 failed; interrupted in first_rnn.py, 2 of 2 scripts not checked\n"), out


def test_an_interrupt_in_the_first_of_the_packages_scripts_gives_the_command_that_writes_them_all(tmp_path,
                                                                                                  monkeypatch, capsys):
    home, _ = a_package(tmp_path, monkeypatch, "first_rnn", "second_rnn")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_reports", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr(gen, "targets_for", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main([]) == 130
    assert capsys.readouterr().out.endswith(
        "\nnot generated: first_rnn.py, second_rnn.py, whose kernels and documents were left as they were "
        "(`lstm-derive generate` brings them up to date)\n")


def test_an_interrupted_check_of_several_cells_counts_those_before(tmp_path, monkeypatch, capsys):
    first, second = write_cell(tmp_path, "first_rnn"), write_cell(tmp_path, "second_rnn")
    print_checks = cli._print_checks

    def stopped_at_the_second(cell, *args):
        if cell == "second_rnn":
            raise KeyboardInterrupt
        return print_checks(cell, *args)

    monkeypatch.setattr(cli, "_print_checks", stopped_at_the_second)
    assert cli.main(["check", str(first), str(second)]) == 130
    assert capsys.readouterr().out.endswith("\n1 passed, 0 failed; interrupted in second_rnn, 1 of 2 cells not checked\n")


def test_a_check_of_several_cells_interrupted_while_deriving_one_counts_those_before(tmp_path, monkeypatch, capsys):
    """Only an interrupt in the checks gave the count: one while a large cell derived, as likely, ended
    with no word of the cells checked before it."""
    first, second, third = (write_cell(tmp_path, name) for name in ("first_rnn", "second_rnn", "third_rnn"))
    targets_for = gen.targets_for

    def stopped_at_the_second(script, *args, **kwargs):
        if script == second:
            raise KeyboardInterrupt
        return targets_for(script, *args, **kwargs)

    monkeypatch.setattr(gen, "targets_for", stopped_at_the_second)
    monkeypatch.setattr(cli, "CHECKS", cli.CHECKS[2:3])  # one small problem: the count is what is tested
    assert cli.main(["check", str(first), str(second), str(third)]) == 130
    assert capsys.readouterr().out.endswith("\n1 passed, 0 failed; interrupted in second_rnn, 2 of 3 cells not checked\n")


def test_a_file_the_main_job_cannot_remove_is_reported_after_the_summary(tmp_path, monkeypatch, capsys):
    """A read-only clone whose script was removed: the kernel it left cannot be removed; the summary
    still comes, then the reason, with status 2 (and generate says the same, in one line)."""
    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    gone = kernels / "gone.py"
    as_generated(gone, (kernels / "sigmoid_rnn.py").read_text().replace("sigmoid_rnn", "gone"))
    unlink = pathlib.Path.unlink

    def read_only(path, *args, **kwargs):
        if path == gone:
            raise OSError(30, "Read-only file system", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "unlink", read_only)
    capsys.readouterr()
    assert cli.main(["--derivations", str(home)]) == 2
    out = capsys.readouterr().out
    assert "\n1 passed, 0 failed\n" in out
    assert f"{gone}: cannot remove it (Read-only file system)" in out, out
    assert cli.main(["--derivations", str(home), "generate"]) == 2
    assert f"{gone}: cannot remove it (Read-only file system)" in capsys.readouterr().err


def read_only(monkeypatch, folder):
    """Files can no longer be made in folder, as in a read-only clone (mkstemp's error names the
    temporary file it tried)."""
    mkstemp = tempfile.mkstemp

    def refused(*args, dir=None, prefix="", suffix="", **kwargs):
        if pathlib.Path(dir) == folder:
            raise OSError(errno.EROFS, "Read-only file system", str(folder / f"{prefix}x1y2z3{suffix}"))
        return mkstemp(*args, dir=dir, prefix=prefix, suffix=suffix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refused)


def a_changed_script_in_a_read_only_clone(tmp_path, monkeypatch):
    """(script, kernels): a package whose one script changed since its files were written, which can no
    longer be written."""
    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    script = home / "sigmoid_rnn.py"
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    script.write_text(script.read_text().replace("sigmoid(a)", "sigmoid(a)**2"))
    read_only(monkeypatch, kernels)
    return script, kernels


def test_a_changed_script_in_a_read_only_clone_is_said_derived_and_checked_but_not_written(tmp_path, monkeypatch,
                                                                                          capsys):
    """Its row said ERROR and the count "not derived", and the message named the temporary file; then
    it said UNWRITTEN, and its kernel went unchecked: it is checked from a scratch folder."""
    script, kernels = a_changed_script_in_a_read_only_clone(tmp_path, monkeypatch)
    checked = []
    import_kernel = gen.import_kernel
    monkeypatch.setattr(gen, "import_kernel", lambda path: checked.append(path.read_text()) or import_kernel(path))
    capsys.readouterr()
    assert cli.main(["--derivations", str(script.parent)]) == 2
    out = capsys.readouterr().out
    assert re.search(r"\nsigmoid_rnn +\d+ +3 +\d\.\de-\d\d +\d\.\de-\d\d +\d\.\de-\d\d +\S+ +UNWRITTEN\n", out), out
    assert "\n0 passed, 0 failed, 1 not written (sigmoid_rnn)\n" in out
    assert (f"sigmoid_rnn: {kernels / 'sigmoid_rnn.py'}: cannot write it (Read-only file system); its files were left "
            "as they were, and what the script generates was checked in a scratch folder\n") in out
    assert checked and all("h = sigmoid_a**2" in text for text in checked), checked  # the script's, not the package's
    assert "x1y2z3" not in out
    assert cli.main(["--derivations", str(script.parent), "generate"]) == 2
    assert capsys.readouterr().err == f"lstm-derive: {kernels / 'sigmoid_rnn.py'}: cannot write it (Read-only file system)\n"


def test_a_cell_that_fails_its_checks_in_a_read_only_clone_fails_and_is_said_not_written(tmp_path, monkeypatch,
                                                                                        capsys):
    """Its row FAIL, with the failures after the reason it was not written; the count names it both
    failed and not written; the exit status is 2, a file not written, as for one that passes."""
    script, kernels = a_changed_script_in_a_read_only_clone(tmp_path, monkeypatch)
    import_kernel = gen.import_kernel

    def off_by_one_percent(path):
        kernel = import_kernel(path)
        right = kernel.backward
        kernel.backward = lambda *a, **k: (lambda grads, dx, dstate: (dict(grads, W_x=grads["W_x"] * 1.01), dx, dstate))(
            *right(*a, **k))
        return kernel

    monkeypatch.setattr(gen, "import_kernel", off_by_one_percent)
    capsys.readouterr()
    assert cli.main(["--derivations", str(script.parent)]) == 2
    out = capsys.readouterr().out
    assert re.search(r"\nsigmoid_rnn +\d+ +3 +\S+ +\S+ +\S+ +\S+ +FAIL\n", out), out
    assert "\n0 passed, 1 failed (sigmoid_rnn), 1 not written (sigmoid_rnn)\n" in out
    reason = out.index(f"sigmoid_rnn: {kernels / 'sigmoid_rnn.py'}: cannot write it (Read-only file system); its files")
    assert "dW_x[0,0]" in out[reason:], out


def test_a_package_index_the_main_job_cannot_write_is_reported_after_the_summary(tmp_path, monkeypatch, capsys):
    """A read-only clone with a script added: the index that lists the kernels was left stale, unsaid."""
    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    as_generated(kernels / "__init__.py", (kernels / "__init__.py").read_text().replace('"sigmoid_rnn"', '"gone"'))
    read_only(monkeypatch, kernels)
    capsys.readouterr()
    assert cli.main(["--derivations", str(home)]) == 2
    out = capsys.readouterr().out
    assert "\n1 passed, 0 failed\n" in out
    assert f"\n{kernels / '__init__.py'}: cannot write it (Read-only file system); it lists the package's kernels\n" in out


def test_a_script_that_takes_another_scripts_cell_name_writes_over_neither_in_the_main_job(tmp_path, monkeypatch,
                                                                                            capsys):
    """A copy of a script's cell, edited in derivations/ under a name that sorts before it: the main
    job wrote the copy's kernel and document over the package's, then refused the original."""
    home, kernels = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    before = {p.name: p.read_text() for p in [*kernels.iterdir(), *home.glob("*.md")]}
    (home / "a_copy.py").write_text((home / "sigmoid_rnn.py").read_text().replace("sigmoid(a)", "sigmoid(a)**2"))
    capsys.readouterr()
    assert cli.main(["--derivations", str(home)]) == 2
    out = capsys.readouterr().out
    assert out.count(" ERROR\n") == 2 and "\n0 passed, 0 failed, 2 not derived (a_copy.py, sigmoid_rnn.py)\n" in out
    assert f"{home / 'a_copy.py'} and {home / 'sigmoid_rnn.py'} both build the cell 'sigmoid_rnn'" in out
    assert {p.name: p.read_text() for p in [*kernels.iterdir(), *home.glob("*.md")]} == before


def test_generate_over_a_folder_of_ones_own_without_out_says_out_is_wanted_not_a_script_fixed(tmp_path, capsys):
    """Every script of the folder is refused alike: the message names them and --out, where it blamed
    the first and told to fix it, or move it out of derivations/."""
    cells = tmp_path / "cells"
    write_cell(cells, "first_rnn"), write_cell(cells, "second_rnn")
    for check in ([], ["--check"]):
        assert cli.main(["--derivations", str(cells), "generate", *check]) == 2
        err = capsys.readouterr().err
        assert "fix this one" not in err and err.count("\n") == 1, err
        assert (f"lstm-derive: {cells / 'first_rnn.py'} and {cells / 'second_rnn.py'}: lstm_derive/kernels/ holds only "
                "the kernels of ") in err, err
        again = " ".join(["lstm-derive --derivations", str(cells), "generate", *check, "--out DIR"])
        assert f"write these cells' kernels and documents elsewhere: {again}\n" in err, err
    assert sorted(p.name for p in cells.iterdir()) == ["first_rnn.py", "second_rnn.py"]


def test_an_installation_without_derivations_gives_commands_that_run_there(tmp_path, monkeypatch, capsys):
    """The main job takes no script, so the message offers it a folder alone; `check lstm` is
    pointed to the installed kernel, which the command it gives checks."""
    monkeypatch.setattr(gen, "HOME", tmp_path / "site-packages" / "derivations")
    monkeypatch.chdir(tmp_path)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "or a script" not in err and err.endswith("; give a folder of scripts: lstm-derive --derivations DIR\n")
    assert cli.main(["check", "lstm"]) == 2
    command = capsys.readouterr().err.rstrip("\n").split("; ")[-1]
    assert command == f"the installed kernel of lstm is checked by its path: lstm-derive check {gen.KERNELS / 'lstm.py'}"
    assert cli.main(shlex.split(command.split("lstm-derive ")[1])) == 0
    assert "\n1 passed, 0 failed\n" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["generate", "check", "show"])
def test_each_commands_help_says_what_it_does_every_default_and_examples_that_parse(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    assert text.split("\n\n")[1].split()[0].endswith("s"), text  # a description: "Writes ...", "Prints ..."
    options = text.split("\noptions:\n")[1].split("\n\n")[0]
    for option in re.findall(r"^  (--\S+ [A-Z]+)\b.*?(?=^  -|\Z)", options, re.M | re.S):
        assert "default" in re.search(rf"^  {re.escape(option)}\b.*?(?=^  -|\Z)", options, re.M | re.S).group(0), option
    examples = [line.split("  ")[1].strip() for line in text.split("\nexamples:\n")[1].split("\n\n")[0].splitlines()]
    assert len(examples) >= 3
    for example in examples:
        words = shlex.split(example)
        assert words[0] == "lstm-derive" and command in words, example
        cli._parser().parse_args(words[1:])


@pytest.mark.parametrize("command", [[], ["generate"], ["generate", "--check"], ["generate", "chatty_rnn"],
                                     ["check", "chatty_rnn"], ["show", "chatty_rnn"]])
def test_each_command_runs_each_script_once(tmp_path, monkeypatch, capsys, command):
    """The main job ran every script of the package three times (for the package's index, for the
    search for two scripts of one cell name, for its row), generate twice, and a cell found by its
    name twice: a script that prints said so as often."""
    home, _ = a_package(tmp_path, monkeypatch, "sigmoid_rnn")
    text = write_cell(home, "chatty_rnn").read_text()
    (home / "chatty_rnn.py").unlink()
    (home / "talks.py").write_text('import sys\nprint("building chatty_rnn", file=sys.stderr)\n' + text)  # found by its cell
    assert cli.main(["--derivations", str(home), "generate"]) == 0
    capsys.readouterr()
    assert cli.main(["--derivations", str(home), *command]) == 0
    out, err = capsys.readouterr()
    assert err.count("building chatty_rnn") == 1, out + err


def test_a_script_whose_kernel_would_be_written_over_it_is_refused(tmp_path, capsys):
    script = write_cell(tmp_path / "mine", "sigmoid_rnn")
    text = script.read_text()
    assert cli.main(["generate", str(script), "--out", str(script.parent)]) == 2
    assert f"{script} would be written over {script} itself; choose another --out directory" in capsys.readouterr().err
    assert script.read_text() == text


def test_generate_out_the_scripts_own_folder_refuses_them_in_one_line_and_says_none_failed(tmp_path, monkeypatch,
                                                                                           capsys):
    """`generate --out derivations` said "8 of 8 scripts failed", each after its derivation, and the
    same reason eight times; a folder refused is no script failing. A script whose cell is named
    otherwise is refused too: its kernel, written among the scripts, failed the next run over them."""
    cells = tmp_path / "cells"
    write_cell(cells, "first_rnn"), write_cell(cells, "second_rnn")
    (cells / "renamed.py").write_text((cells / "second_rnn.py").read_text().replace('"second_rnn"', '"third_rnn"'))
    before = sorted(p.name for p in cells.iterdir())
    targets_for = gen.targets_for
    monkeypatch.setattr(gen, "targets_for", lambda *args, **kwargs: pytest.fail("derived a script it refuses"))
    assert cli.main(["--derivations", str(cells), "generate", "--out", str(cells)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"lstm-derive: --out {cells} is the folder of the scripts first_rnn.py, renamed.py, second_rnn.py, and the "
        "kernel of each, named after its cell, would be written over it or sit among them, where a run over the folder "
        "fails on it; choose another --out directory",
        "3 of 3 scripts were refused, and nothing of theirs was written"]
    (cells / "helpers.py").write_text("SCALE = 2\n")
    monkeypatch.setattr(gen, "targets_for", targets_for)
    assert cli.main(["--derivations", str(cells), "generate", "--out", str(cells)]) == 2
    assert capsys.readouterr().err.endswith("\n1 of 4 scripts failed and 3 were refused, and nothing of theirs was "
                                            "written\n")
    assert sorted(p.name for p in cells.iterdir()) == sorted([*before, "helpers.py"])


def test_generate_out_the_folder_of_a_script_named_otherwise_than_its_cell_refuses_it_or_warns(tmp_path, capsys):
    """Its kernel went among the scripts, unsaid, where a run over the folder failed on it, as no script: so
    the same command, run again over the folder, failed. A run over the folder refuses it; a script given by
    its path is written, with a warning."""
    cells = tmp_path / "cells"
    script = write_cell(cells, "renamed")
    script.write_text(script.read_text().replace('"renamed"', '"other_rnn"'))
    assert cli.main(["--derivations", str(cells), "generate", "--out", str(cells)]) == 2
    assert capsys.readouterr().err == (
        f"lstm-derive: --out {cells} is the folder of {script}, and its kernel, other_rnn.py, would sit among the scripts "
        "there, where a run over the folder fails on it (a kernel, no script); choose another --out directory\n")
    assert sorted(p.name for p in cells.iterdir()) == ["renamed.py"]
    assert cli.main(["generate", str(script), "--out", str(cells)]) == 0
    assert capsys.readouterr().err == (
        f"lstm-derive: warning: --out {cells} is the folder of {script}, and its kernel, other_rnn.py, goes among the "
        f"scripts there, where a run over the folder (--derivations {cells}) fails on it (a kernel, no script); another "
        "--out keeps them apart\n")
    assert sorted(p.name for p in cells.iterdir()) == ["other_rnn.md", "other_rnn.py", "renamed.py"]


def test_the_count_of_the_scripts_refused_says_was_of_one(tmp_path, capsys):
    cells, elsewhere = tmp_path / "cells", write_cell(tmp_path / "elsewhere", "first_rnn")
    script = write_cell(cells, "second_rnn")
    assert cli.main(["generate", str(script), str(elsewhere), "--out", str(cells)]) == 2
    assert capsys.readouterr().err.endswith("\n1 of 2 scripts was refused, and nothing of theirs was written\n")


def test_a_long_cell_name_is_cut_in_its_middle_to_keep_the_summary_in_80_columns(tmp_path, capsys):
    """A script name of 36 characters made the table 99 columns wide. Cut, a name keeps its start and its
    end (where names differ: _v1, _v2); a failure's line and the count give it in full."""
    home = tmp_path / "derivations"
    long, broken = "elman_rnn_with_a_sigmoid_output_1", "helpers_that_build_no_cell_at_all.py"
    write_cell(home, long), write_cell(home, long[:-1] + "2")
    (home / broken).write_text("SCALE = 2\n")
    assert cli.main(["--derivations", str(home)]) == 2
    out = capsys.readouterr().out
    table = out.strip("\n").split("\n\n")[0].splitlines()
    assert max(map(len, table)) <= 80, "\n".join(table)
    names = [row.split()[0] for row in table[2:]]
    assert len(set(names)) == 3 and all(len(row.split()) == 8 for row in table[2:]), "\n".join(table)
    assert [(n.split("…")[0] in word, word.endswith(n.split("…")[1])) for n, word in
            zip(names, [long, long[:-1] + "2", broken])] == [(True, True)] * 3, names
    assert f"\n{broken}: " in out and f", 1 not derived ({broken})\n" in out


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_a_long_cell_names_cut_fits_in_ascii_too(encoding):
    stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding)
    rows = [["a_cell_whose_name_runs_far_past_what_fits", 9, 3, "1.1e-09", "1.1e-15", "1.1e-06", "0.50", "ok"]]
    table = terminal.printable(cli._table(cli.SUMMARY, rows, cli._ellipsis(stream)), stream)
    assert max(map(len, table.splitlines())) == 80, table
