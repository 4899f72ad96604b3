"""The derivation printed to a stream whose encoding lacks its symbols (a Windows code page,
PYTHONIOENCODING=ascii): in ASCII, not a UnicodeEncodeError."""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_derive import terminal

ROOT = Path(__file__).resolve().parent.parent


def run(args, encoding):
    env = dict(os.environ, PYTHONIOENCODING=encoding)
    return subprocess.run([sys.executable, *args], capture_output=True, cwd=ROOT, env=env)


@pytest.mark.parametrize("args", [["-m", "lstm_derive", "show", "lstm"], ["derivations/lstm.py"]],
                         ids=["lstm-derive show", "python script"])
def test_the_derivation_prints_in_ascii_where_the_stream_lacks_its_symbols(args):
    shown = run(args, "ascii")
    assert shown.returncode == 0, shown.stderr.decode(errors="replace")
    text = shown.stdout.decode("ascii")  # raises if a byte is not ASCII
    assert "(9) dc = dh * dh/dc + dL(t+1)/dc" in text and "(2) i = sigmoid(a_i)" in text
    assert "W_x @ x + W_h @ h_prev + b" in text and "?" not in text
    words = " ".join(text.split())  # wherever the lines break
    assert "(written * in the equations; a matrix product, @;" in words  # not "* or *"
    assert "and sigmoid is the logistic function" in words  # not "sigmoid (sigmoid)"


def test_a_code_page_keeps_the_symbols_it_has():
    """cp1252 has · and ×: they stay; ∂ and ⊙ it lacks."""
    text = run(["-m", "lstm_derive", "show", "lstm"], "cp1252").stdout.decode("cp1252")
    assert "W_x·x" in text and "4H × D" in text and "dc = dh * dh/dc" in text


def test_text_a_stream_can_write_is_left_as_it_is():
    text = "dc = dh ⊙ ∂h/∂c, Σ_t, σ(a) ≈ 1"
    assert terminal.printable(text, io.TextIOWrapper(io.BytesIO(), encoding="utf-8")) == text
    ascii = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert terminal.printable(text, ascii) == "dc = dh * dh/dc, sum_t, sigmoid(a) ~ 1"
    assert terminal.printable("ünknown", ascii) == "?nknown"  # a character with no ASCII form of its own


def test_a_stream_set_to_replace_on_its_own_is_left_so():
    own = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="replace")
    strict = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    terminal.in_ascii_where_needed(own, strict)
    assert (own.errors, strict.errors) == ("replace", terminal.HANDLER)
