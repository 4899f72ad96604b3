"""The derivation documents: they render on GitHub, cite the kernels' lines, say the textbook's lines.

The TeX of every math block is parsed by MathJax 3, the renderer behind GitHub's math, and every
Mermaid block by Mermaid's own parser, both through node (tests/js/check.mjs). They need
`npm ci --prefix tests/js`; without it these tests skip, except under CI, where they fail.
"""

import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy

from lstm_derive import Cell, cli, derive, exp, relu, sigmoid, softplus, tanh
from lstm_derive.document import derivation_latex, derivation_markdown, derivation_text, kernel_lines, provenance, step_text
from lstm_derive.emit import emit_kernel
from lstm_derive.generate import load_cell
from lstm_derive.spec import SpecError

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = ROOT / "derivations"
KERNELS = ROOT / "lstm_derive" / "kernels"
JS = Path(__file__).resolve().parent / "js"
SCRIPTS = sorted(p for p in DERIVATIONS.glob("*.py") if not p.name.startswith("_"))
CELLS = [load_cell(p).name for p in SCRIPTS]


def _edge_cell():
    """Two affines, a let feeding an affine, a peephole, a power of an unnamed sigmoid, and names
    Mermaid reserves (end, style)."""
    cell = Cell("edges", title="Edge cases: two affines, a let into an affine, a peephole")
    x = cell.input("x")
    end_prev, m_prev = cell.state("end"), cell.state("m")
    a_o, a_graph = cell.affine("W", [x, end_prev], blocks=["a_o", "a_graph"])
    p = cell.param("p")
    o = cell.let("o", sigmoid(a_o + p * m_prev))
    style = cell.let("style", o * end_prev)
    (a_n,) = cell.affine("V", [x, style], blocks=["a_n"], bias=None)
    n = cell.let("n", tanh(a_n + a_graph))
    cell.update(end=(1 - o) * end_prev + o * n, m=m_prev * o + n * sigmoid(a_graph) ** 2 + sigmoid(m_prev) ** 2)
    return cell


def _functions_cell():
    """relu, softplus and exp, named and inline: their derivatives in output form."""
    cell = Cell("functions", title="relu, softplus and exp")
    x = cell.input("x")
    h_prev, m_prev = cell.state("h"), cell.state("m")
    a_n, a_e, a_r = cell.affine("W", [x, h_prev], blocks=["a_n", "a_e", "a_r"])
    n = cell.let("n", softplus(a_n))
    e = cell.let("e", exp(tanh(a_e)))
    cell.update(h=relu(a_r) + n * h_prev, m=e * m_prev + relu(m_prev) ** 2)
    return cell


SHAPED_CELLS = {"edges": _edge_cell, "functions": _functions_cell}  # beside the package's cells


def _documents():
    """{name: (Markdown, LaTeX)}: every cell's document on disk, and the cells of awkward shape."""
    docs = {}
    for script, name in zip(SCRIPTS, CELLS):
        d = derive(load_cell(script))
        kernel = (KERNELS / f"{name}.py").read_text()
        docs[name] = ((DERIVATIONS / f"{name}.md").read_text(), derivation_latex(d, kernel))
    for name, made in SHAPED_CELLS.items():
        d = derive(made())
        kernel = emit_kernel(d)
        docs[name] = (derivation_markdown(d, f"tests/{name}.py", kernel), derivation_latex(d, kernel))
    return docs


DOCUMENTS = _documents()


# -- reading a Markdown document ------------------------------------------------------------


def split_markdown(text):
    """(math blocks, mermaid blocks, prose lines), each with its first line's number."""
    math, mermaid, prose = [], [], []
    lines = text.split("\n")
    k = 0
    while k < len(lines):
        line = lines[k]
        if line == "$$" or line.startswith("```"):
            end = lines.index("$$" if line == "$$" else "```", k + 1)
            body = "\n".join(lines[k + 1:end])
            if line == "$$":
                math.append((k + 1, body))
            elif line == "```mermaid":
                mermaid.append((k + 1, body))
            k = end + 1
            continue
        prose.append((k + 1, line))
        k += 1
    return math, mermaid, prose


def latex_equations(text):
    return re.findall(r"\\begin\{equation\*\}\n(.*?)\n\\end\{equation\*\}", text, re.S)


def kernel_citations(kernel_text):
    """{number: [line, ...]} from the comments of a kernel that start with (n) or (n), (m), ..., the
    factors such a comment says the line reads from a product (", times (12), (11) from da_xn"), and
    the equations it ends with as completed on the way (", through (13)")."""
    cited = {}
    for tok in tokenize.generate_tokens(io.StringIO(kernel_text).readline):
        match = re.match(r"# (\(\d+\)(?:, \(\d+\))*)", tok.string) if tok.type == tokenize.COMMENT else None
        times = re.search(r", times ([(), \d]+) from ", tok.string) if match else None
        through = re.search(r", through ([(), \d]+)$", tok.string) if match else None
        parts = [m.group(1) for m in (match, times, through) if m]
        for number in re.findall(r"\d+", " ".join(parts)):
            cited.setdefault(int(number), []).append(tok.start[0])
    return cited


def document_numbers(markdown):
    """The equation numbers of a document's math blocks, \\qquad (n) at a block's end."""
    numbers = []
    for _, tex in split_markdown(markdown)[0]:
        numbers += [int(n) for n in re.findall(r"\\qquad \((\d+)\)$", tex)]
    return numbers


# -- the parsers, through node ---------------------------------------------------------------


# What the parsers must reject (and one diagram they must take), judged in the run that judges the
# documents: one node process loads MathJax and Mermaid for both. No document's id has a colon.
PROBES = {"tex": [{"id": "probe:macro", "tex": r"\undefinedmacro x"}, {"id": "probe:brace", "tex": r"\frac{a}{b"}],
          "mermaid": [{"id": "probe:arrow", "source": "flowchart LR\n    a -.->> b"},
                      {"id": "probe:headless", "source": 'flowchart LR\n    a --> b\n    a <-.-|"next step"| b'},
                      {"id": "probe:fine", "source": 'flowchart LR\n    a ~~~ c\n    a --> b\n    b -.->|"next step"| a'}]}


@pytest.fixture(scope="session")
def parsed():
    """Runs tests/js/check.mjs once over the math and the diagrams of every document, and PROBES."""
    if shutil.which("node") is None or not (JS / "node_modules").is_dir():
        message = "MathJax and Mermaid are not installed: run `npm ci --prefix tests/js`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    request = {kind: list(items) for kind, items in PROBES.items()}
    for name, (markdown, latex) in DOCUMENTS.items():
        math, mermaid, _ = split_markdown(markdown)
        request["tex"] += [{"id": f"{name}.md:{line}", "tex": tex} for line, tex in math]
        request["tex"] += [{"id": f"{name}.tex:{k}", "tex": tex} for k, tex in enumerate(latex_equations(latex))]
        request["mermaid"] += [{"id": f"{name}.md:{line}", "source": src} for line, src in mermaid]
    run = subprocess.run(["node", str(JS / "check.mjs")], input=json.dumps(request), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return request, json.loads(run.stdout)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_math_block_parses_with_mathjax(parsed, name):
    request, result = parsed
    blocks = [item for item in request["tex"] if item["id"].startswith(f"{name}.")]
    assert blocks
    errors = [f"{item['id']}: {result['tex'][item['id']]}\n{item['tex']}" for item in blocks
              if result["tex"][item["id"]] is not None]
    assert not errors, "\n\n".join(errors)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_diagrams_parse_with_mermaid(parsed, name):
    """The dataflow of one step, and two steps unrolled."""
    request, result = parsed
    blocks = [item for item in request["mermaid"] if item["id"].startswith(f"{name}.")]
    assert len(blocks) == 2
    errors = [f"{item['id']}: {result['mermaid'][item['id']]}" for item in blocks
              if result["mermaid"][item["id"]] is not None]
    assert not errors, "\n".join(errors)


def test_the_parsers_reject_what_they_should(parsed):
    """The checker is not a rubber stamp: a bad macro, a bad brace and a bad arrow fail."""
    _, result = parsed
    assert result["tex"]["probe:macro"] and result["tex"]["probe:brace"] and result["mermaid"]["probe:arrow"]
    assert result["mermaid"]["probe:headless"] == "edges drawn without a head: a - b"
    assert result["mermaid"]["probe:fine"] is None


# -- what GitHub needs beyond valid TeX ------------------------------------------------------


@pytest.mark.parametrize("name", DOCUMENTS)
def test_math_follows_githubs_rules(name):
    """GitHub reads Markdown before MathJax sees the math. So: $$ alone on its line with blank
    lines around the block and none inside; \\\\ only at the end of a line (the only place GitHub
    keeps it); no other backslash before punctuation (Markdown would eat it: \\, becomes ,); no
    \\tag (GitHub does not number it); no < (HTML); and no inline $ math at all."""
    markdown = DOCUMENTS[name][0]
    lines = markdown.split("\n")
    math, _, prose = split_markdown(markdown)
    for line, tex in math:
        where = f"{name}.md:{line}"
        assert lines[line - 2] == "", f"{where}: no blank line before $$"
        assert lines[line + tex.count("\n") + 2] == "", f"{where}: no blank line after $$"
        assert tex.strip() and "\n\n" not in tex, f"{where}: empty line in a math block"
        assert not re.search(r"\\\\(?!\n)", tex), f"{where}: \\\\ not at the end of a line"
        assert not re.search(r"\\[!-/:-@\[-`{-~]", tex.replace("\\\\\n", "\n")), \
            f"{where}: backslash before punctuation"
        assert "\\tag" not in tex and "<" not in tex, where
    for line, text in prose:
        assert "$" not in re.sub(r"`[^`]*`", "", text), f"{name}.md:{line}: inline math"


# -- equation numbers: document, kernel, table -----------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_equation_numbers_match_the_kernels_comments_both_ways(cell):
    markdown = (DERIVATIONS / f"{cell}.md").read_text()
    numbers = document_numbers(markdown)
    assert len(numbers) == len(set(numbers)), "a number is given to two equations"
    total = derive(load_cell(DERIVATIONS / f"{cell}.py")).equations
    assert sorted(numbers) == list(range(1, total + 1))
    cited = set(kernel_citations((KERNELS / f"{cell}.py").read_text()))
    assert not cited - set(numbers), f"the kernel cites equations the document lacks: {sorted(cited - set(numbers))}"
    assert not set(numbers) - cited, (
        f"equations of {cell}.md that no comment of lstm_derive/kernels/{cell}.py cites: "
        f"{sorted(set(numbers) - cited)}")


@pytest.mark.parametrize("cell", CELLS)
def test_the_kernel_table_links_lines_that_cite_the_equation(cell):
    markdown = (DERIVATIONS / f"{cell}.md").read_text()
    kernel = (KERNELS / f"{cell}.py").read_text()
    cited = kernel_citations(kernel)
    rows = re.findall(r"^\| \((\d+)\) \| .* \| (.*) \|$", markdown, re.M)
    assert [int(n) for n, _ in rows] == sorted(set(document_numbers(markdown)))
    for number, links in rows:
        lines = [int(n) for n in re.findall(rf"\(\.\./lstm_derive/kernels/{cell}\.py#L(\d+)(?:-L\d+)?\)", links)]
        assert lines == cited.get(int(number), []), f"({number})"


@pytest.mark.parametrize("cell", CELLS)
def test_every_gemm_of_a_kernel_cites_the_equation_it_computes(cell):
    """A weight gradient computed in runs of blocks takes one GEMM per run: each must be linked."""
    kernel = (KERNELS / f"{cell}.py").read_text()
    cited = {line for lines in kernel_citations(kernel).values() for line in lines}
    gemms = [n for n, text in enumerate(kernel.splitlines(), 1)
             if re.search(r"np\.(matmul|dot)\(| @ ", text.split("#")[0]) and not text.lstrip().startswith(('"', "'"))]
    assert gemms and not set(gemms) - cited, f"GEMM lines citing no equation: {sorted(set(gemms) - cited)}"


# A kernel's text where a comment-like text sits in strings of every kind (a docstring, '''-strings
# over lines, an escaped quote, an f-string, a raw string), and a def in one
_TRICKY_KERNEL = "\n".join([
    'def forward(x):',
    '    """A docstring quoting a comment, # (1) not one, and a def:',
    'def not_a_function(): a string\'s # and \\""" stay in it.',
    '    """',
    '    s = "# (2) a string" + \'# (3) another\' + f"{x}#" + r\'\\\\\' + "it\\"s #" + \'it\\\'s #\'  # (4) the line\'s own',
    "    t = '''# (5) not a comment",
    "# (6) \\''' is no end of it ''' # (7), (8) dL/dt, times (9) from dq, through (10)",
    "    # (11) that's a comment with a quote in it",
    "    def inner():  # (12) nested: still forward's",
    '        return """a\\"""" + "b\\""  # (13) after strings that end in an escaped quote',
    '    return s + \\',
    '        t  # (14)',
    'def backward():',
    '    pass  # (15) cited',
    ''])


def test_provenance_reads_comments_where_python_does():
    """Comments, never a string's text, each with the top-level function it is in, as Python's
    tokenize reads them."""
    python = {}
    function = previous = None
    for tok in tokenize.generate_tokens(io.StringIO(_TRICKY_KERNEL).readline):
        if tok.type == tokenize.NAME and previous is not None and previous.string == "def" and previous.start[1] == 0:
            function = tok.string
        if tok.type == tokenize.COMMENT:
            python[tok.start[0]] = (function, tok.string)
        previous = tok
    read = provenance(_TRICKY_KERNEL)
    assert {line: (function, comment) for _, function, line, comment in read} == python
    assert [numbers for numbers, *_ in read] == [(4,), (7, 8, 9, 10), (11,), (12,), (13,), (14,), (15,)]
    for cell in CELLS:
        kernel = (KERNELS / f"{cell}.py").read_text()
        assert {n: [line for _, line in at] for n, at in kernel_lines(kernel).items()} == kernel_citations(kernel)


def test_a_citation_that_heads_lines_below_links_them_all():
    """c = f*c_prev + i*g, written in place: the view, the product and the sum, not the view alone;
    the next line, which only names tanh_c's view, is not part of it."""
    markdown = (DERIVATIONS / "lstm.md").read_text()
    kernel = (KERNELS / "lstm.py").read_text().split("\n")
    first = next(n for n, text in enumerate(kernel, 1) if "# (6) c = f*c_prev + i*g" in text)
    assert kernel[first].strip() == "np.multiply(c_prev, f, out=c)" and kernel[first + 1].strip() == "c += g*i"
    assert f"| (6) | `c` | `forward` | [{first}-{first + 2}](../lstm_derive/kernels/lstm.py#L{first}-L{first + 2}) |" in markdown


def _janet():
    """JANET: a_f feeds f = sigmoid(a_f) and sigmoid(a_f - 1)."""
    janet = Cell("janet", title="JANET")
    x, h_prev = janet.input("x"), janet.state("h")
    a_f, a_c = janet.affine("W", [x, h_prev], blocks=["a_f", "a_c"])
    f = janet.let("f", sigmoid(a_f))
    janet.update(h=f * h_prev + (1 - sigmoid(a_f - 1)) * tanh(a_c))
    return janet


def test_a_factor_through_the_nodes_between_is_said_to_be_no_local_derivative():
    """JANET's a_f reaches h through f and through sigmoid(a_f - 1): the kernel's factor is dh/da_f."""
    d = derive(_janet())
    text = " ".join(derivation_text(d, emit_kernel(d), "janet.py").split())
    assert ("a d in place of ∂ marks a derivative through the nodes between, along every path within the step "
            "(dh/da_f).") in text


def test_a_heading_citation_stops_at_a_block_of_its_own():
    """gru's h, written in place: the view, the product and the sum, not the lengths' block below."""
    markdown = (DERIVATIONS / "gru.md").read_text()
    kernel = (KERNELS / "gru.py").read_text().split("\n")
    first = next(n for n, text in enumerate(kernel, 1) if "# (9) h = " in text)
    assert kernel[first + 2].strip().startswith("if masked[t]:")
    assert f"| (9) | `h` | `forward` | [{first}-{first + 2}](../lstm_derive/kernels/gru.py#L{first}-L{first + 2}) |" in markdown


def test_the_seed_table_row_for_ds():
    markdown = (DERIVATIONS / "lstm_seed.md").read_text()
    line = next(n for n, text in enumerate((KERNELS / "lstm_seed.py").read_text().split("\n"), 1)
                if "# (9) " in text)
    assert f"| (9) | `ds` | `backward` | [{line}](../lstm_derive/kernels/lstm_seed.py#L{line}) |" in markdown


# -- determinism -----------------------------------------------------------------------------


def test_documents_and_kernels_are_byte_identical_on_regeneration(tmp_path):
    """Two runs with different string hashing, each into a fresh ./out: the same bytes, for every
    file (a set's order that leaks into a kernel's lines would differ). (That the files on disk
    are fresh, test_generate checks.)"""
    runs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-m", "lstm_derive", "--derivations", str(DERIVATIONS), "generate",
                        "--out", "out"], check=True, env=env, capture_output=True, cwd=tmp_path)
        runs.append({p.name: p.read_bytes() for p in sorted((tmp_path / "out").iterdir())})
        shutil.rmtree(tmp_path / "out")
    assert {f"{cell}.{ext}" for cell in CELLS for ext in ("md", "py")} <= set(runs[0])
    assert runs[0].keys() == runs[1].keys()
    for name in runs[0]:
        assert runs[0][name] == runs[1][name], name


# -- golden lines of the seed's derivation ---------------------------------------------------

SEED_BACKWARD = [
    ("h", "dh = dy + dh_next"),
    ("s", "ds = o*dh + ds_next"),
    ("o", "do = s*dh"),
    ("f", "df = s_prev*ds"),
    ("i", "di = g*ds"),
    ("g", "dg = i*ds"),
    ("a_g", "da_g = (1 - g**2)*dg"),
    ("a_i", "da_i = i*(1 - i)*di"),
    ("a_f", "da_f = f*(1 - f)*df"),
    ("a_o", "da_o = o*(1 - o)*do"),
    ("s_prev", "ds_prev = f*ds"),
    ("h_prev", "dh_prev = W_h^T·[da_g; da_i; da_f; da_o]"),
    ("x", "dx = W_x^T·[da_g; da_i; da_f; da_o]"),
]


@pytest.fixture(scope="module")
def seed():
    return derive(load_cell(DERIVATIONS / "lstm_seed.py"))


@pytest.mark.parametrize("target, expected", SEED_BACKWARD)
def test_seed_backward_step_text(seed, target, expected):
    step = next(s for s in seed.steps if str(s.target) == target)
    assert step_text(step, seed) == expected


def test_seed_text_form(seed):
    text = derivation_text(seed, (KERNELS / "lstm_seed.py").read_text()).split("\n")
    for block in (["  (9) ds = dh ⊙ ∂h/∂s + ∂L(t+1)/∂s", "         = o*dh + ds_next"],
                  ["  (11) df = ds ⊙ ∂s/∂f", "          = s_prev*ds"],
                  ["  (19) ds_prev = ds ⊙ ∂s/∂s_prev", "               = f*ds"],
                  ["  (21) dW_x = Σ_t Σ_j [da_g; da_i; da_f; da_o](t, j)·x(t, j)^T"],
                  ["  dL(t)/dh(t) = ∂l(t)/∂h(t) + ∂L(t+1)/∂h(t)"],
                  ["  s    ← s_prev, g, i, f   ⇢ s_prev of step t+1"]):
        k = text.index(block[0])
        assert text[k:k + len(block)] == block


def test_seed_markdown_lines():
    markdown = (DERIVATIONS / "lstm_seed.md").read_text()
    for line in [
        r"ds = dh \odot \frac{\partial h}{\partial s} + \frac{\partial L(t+1)}{\partial s}"
        r" = o \odot dh + ds_{\text{next}} \qquad (9)",
        r"do = dh \odot \frac{\partial h}{\partial o} = s \odot dh \qquad (10)",
        r"da_{i} = di \odot \frac{\partial i}{\partial a_{i}} = i \odot \left(1 - i\right) \odot di \qquad (15)",
        r"ds_{\text{prev}} = ds \odot \frac{\partial s}{\partial s_{\text{prev}}} = f \odot ds \qquad (19)",
        r"L = \sum_{t=1}^{T} l(t) + l_{\mathrm{final}}, \qquad L(t) = \sum_{\tau=t}^{T} l(\tau) + l_{\mathrm{final}}, "
        r"\qquad L(T+1) = l_{\mathrm{final}}",
        r"\frac{\mathrm{d} L(t)}{\mathrm{d} h(t)} = \frac{\partial l(t)}{\partial h(t)}"
        r" + \frac{\partial L(t+1)}{\partial h(t)}",
        "    n_s -.->|\"next step\"| prev_s",
        "    n_h -.->|\"next step\"| prev_h",
    ]:
        assert f"\n{line}\n" in markdown, line


def test_seed_sections_in_order():
    markdown = (DERIVATIONS / "lstm_seed.md").read_text()
    assert re.findall(r"^## (.*)$", markdown, re.M) == [
        "Forward pass", "Dataflow", "Loss and notation", "Backward pass", "Carries to step t-1",
        "Gradients of the input and the parameters", "Backpropagation through time", "Where people go wrong",
        "Kernel lines", "Gradient check"]


def test_seed_notes():
    markdown = (DERIVATIONS / "lstm_seed.md").read_text()
    notes = markdown.split("## Where people go wrong")[1].split("##")[0]
    assert "- `ds_next` already holds the factor `f(t+1)`: it is `ds_prev = f*ds`, equation (19)" in notes
    assert "(9) adds `ds_next` as it is" in notes
    assert "Dropping `ds_next` from (9), i.e. `ds = o*dh`, lowers the loss of the seed's toy problem" in notes
    assert "Adding tanh on `s` in the forward pass only" in notes and "`do = tanh(s)*dh` in (10)" in notes


# -- notes and diagram come from the cell, not from its names --------------------------------


def _renamed_seed():
    """The seed's cell with every name changed: the forget gate is `keep`, the memory `m`."""
    cell = Cell("renamed")
    u = cell.input("u")
    q_prev, m_prev = cell.state("q"), cell.state("m")
    a_c, a_w, a_k, a_r = cell.affine("A", [u, q_prev], blocks=["a_c", "a_w", "a_k", "a_r"])
    cand, write = cell.let("cand", tanh(a_c)), cell.let("write", sigmoid(a_w))
    keep, read = cell.let("keep", sigmoid(a_k)), cell.let("read", sigmoid(a_r))
    m = cell.let("m", cand * write + m_prev * keep)
    cell.update(m=m, q=m * read)
    cell.note("A note citing {dm} and {m}, and {{braces}} written as braces.")
    return derive(cell)


def test_the_carry_note_is_read_off_the_carry_terms():
    d = _renamed_seed()
    markdown = derivation_markdown(d, "tests/renamed.py", emit_kernel(d))
    dm, carry = d.step_for(d.cell.updates["m"].symbol), d.step_for(d.cell.prev("m"))
    assert f"- `dm_next` already holds the factor `keep(t+1)`: it is `dm_prev = keep*dm`, equation ({carry.number})" in markdown
    assert f"So ({dm.number}) adds `dm_next` as it is" in markdown
    assert "- `dq_next` already holds the product with `A_q^T`" in markdown


def test_a_note_cites_equations_by_name():
    d = _renamed_seed()
    dm = d.step_for(d.cell.updates["m"].symbol).number
    m = next(eq.number for eq in d.forward if str(eq.lhs[0]) == "m")
    assert f"- A note citing ({dm}) and ({m}), and {{braces}} written as braces." in derivation_markdown(d, "r.py")


def test_a_note_naming_a_renamed_let_in_backticks_is_refused_naming_the_note_and_the_name(tmp_path):
    """gru.py with a_n renamed: every {citation} of its notes still names an equation, but the first
    note's `da_hn = r*da_n` would name an adjoint the cell no longer has."""
    script = tmp_path / "gru.py"
    script.write_text((DERIVATIONS / "gru.py").read_text().replace('cell.let("a_n",', 'cell.let("a_cand",'))
    line = next(n for n, text in enumerate(script.read_text().splitlines(), 1) if 'cell.note("The reset' in text)
    d = derive(load_cell(script))
    with pytest.raises(SpecError, match=rf"gru\.py:{line}: the note \"The reset multiplies .*\" names `da_n` "
                                        r"\(in `da_hn = r\*da_n`\), but the cell has no da_n"):
        derivation_markdown(d, "gru.py")


def _cell_quoting(note):
    cell = Cell("quoting")
    x, h_prev = cell.input("x"), cell.state("h")
    a_r, a_n = cell.affine("U", [x, h_prev], blocks=["a_r", "a_n"], bias="b_h")
    r = cell.let("r", sigmoid(a_r))
    cell.update(h=tanh(r * a_n))
    cell.note(note)
    return derive(cell)


def test_a_note_may_quote_the_cells_names_and_the_documents_notation():
    """Row blocks by tag (U_hn, b_hr), adjoints and carries, a parameter's d<name>(t, j), the kernel's
    stacked adjoint, a command and a dotted name; another library's name written plainly."""
    note = ("`U_hn` and `b_hr` are rows of `U_h` and `b_h`; `dh_next`, `dr`, `da_n(t, j)`, `U_h^T·dpre_U`, "
            "`dy` and `tanh(r*a_n)` are the document's; `lstm-derive check quoting` is a command and "
            "`numpy.tanh` a dotted name; W_in is PyTorch's.")
    assert "W_in is PyTorch's." in derivation_markdown(_cell_quoting(note), "quoting.py")


@pytest.mark.parametrize("quoted, name", [("`W_in`", "W_in"), ("`wg*xc`", "wg"), ("`dz`", "dz"), ("`h_prv`", "h_prv")])
def test_a_name_the_cell_lacks_in_backticks_is_refused(quoted, name):
    with pytest.raises(SpecError, match=rf"the note \"Compare {re.escape(quoted)}\.\" names `{name}`"):
        derivation_text(_cell_quoting(f"Compare {quoted}."))


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_diagram_marks_every_recurrent_edge(name):
    markdown = DOCUMENTS[name][0]
    (_, diagram), (_, unrolled) = split_markdown(markdown)[1]
    recurrent = re.findall(r"^    n_(\w+) -\.->\|\"next step\"\| prev_(\w+)$", diagram, re.M)
    cell = load_cell(DERIVATIONS / f"{name}.py") if name in CELLS else SHAPED_CELLS[name]()
    assert sorted(recurrent) == sorted((s, s) for s in cell.states)
    assert diagram.startswith("flowchart LR\n")
    # declared first, and chained by invisible links, the previous states stay on the left
    lines = diagram.splitlines()
    assert [line.split("(")[0].strip() for line in lines[1:1 + len(cell.states)]] == [f"prev_{s}" for s in cell.states]
    chain = [f"    prev_{a} ~~~ prev_{b}" for a, b in zip(cell.states, cell.states[1:])]
    assert all(line in lines for line in chain)
    # unrolled: every state passes from step t to step t+1, and its gradient comes back
    lines = unrolled.splitlines()
    for s in cell.states:
        assert f'    step_t --> s1_{s}(["{s}(t)"])' in lines and f"s1_{s} --> step_u" in unrolled
        assert f'    step_u -.->|"d{s}_next"| s1_{s}' in lines


@pytest.mark.parametrize("name", DOCUMENTS)
def test_dy_reaches_the_output_state_alone_and_the_steps_are_no_rectangles(name):
    """In the two steps unrolled, l(t) reads the output state's node alone and dy goes back to it
    alone; a step is a hexagon, since the dataflow's rectangles are affine maps."""
    (_, unrolled), = split_markdown(DOCUMENTS[name][0])[1][1:]
    cell = load_cell(DERIVATIONS / f"{name}.py") if name in CELLS else SHAPED_CELLS[name]()
    y = cell.output_state
    edges = re.findall(r"^    (\w+)(?:\S*)? -\.?->(?:\|\"([^\"]*)\"\|)? (\w+)", unrolled, re.M)
    assert [(a, b) for a, label, b in edges if label == "dy"] == [("l_t", f"s1_{y}")]
    assert [a for a, _, b in edges if b == "l_t"] == [f"s1_{y}"]
    assert 'step_t{{"step t"}}' in unrolled and 'step_u{{"step t+1"}}' in unrolled
    assert not re.search(r'step_[tu]\["', unrolled)
    caption = DOCUMENTS[name][0].split(unrolled)[1].split("\n\n")[1]
    assert caption.startswith("Two steps of the recurrence, as hexagons")
    assert (f"to the output {y}(t) alone" in caption) == (len(cell.states) > 1)


# -- the command line ------------------------------------------------------------------------


def test_show_prints_the_three_forms(capsys):
    assert cli.main(["--derivations", str(DERIVATIONS), "show", "lstm_seed", "--markdown"]) == 0
    assert capsys.readouterr().out == (DERIVATIONS / "lstm_seed.md").read_text()
    assert cli.main(["--derivations", str(DERIVATIONS), "show", "lstm_seed"]) == 0
    text = capsys.readouterr().out
    assert "  (9) ds = dh ⊙ ∂h/∂s + ∂L(t+1)/∂s\n         = o*dh + ds_next\n" in text
    assert "Kernel lines" in text
    assert cli.main(["--derivations", str(DERIVATIONS), "show", "lstm_seed", "--latex"]) == 0
    latex = capsys.readouterr().out
    assert latex.startswith("\\documentclass{article}") and latex.rstrip().endswith("\\end{document}")
    assert "o \\odot dh + ds_{\\text{next}} \\tag{9}" in latex
    # prose's notation is set as math, not as escaped text: a transpose, a sum's index, a prime
    assert "so W$^{\\top}$ da is \\texttt{da @ W} there, and $\\Sigma_j$ da x$^{\\top}$" in latex
    assert "$\\sigma$$'$(a)" in latex and "\\^{}" not in latex


@pytest.mark.parametrize("name", CELLS)
def test_the_terminal_wraps_prose_nowhere_a_reader_would_misread(name):
    """A wrapped line that starts with "- " reads as a new bullet (gru_cho's note broke "1 - z" so),
    and a bracket broken over two lines, "[a" then "> 0]", as two pieces of text."""
    text = derivation_text(derive(load_cell(DERIVATIONS / f"{name}.py")), (KERNELS / f"{name}.py").read_text())
    for line in text.split("\n"):
        assert not line.lstrip().startswith("- ") or line.startswith("  - "), line
        assert line.count("[") == line.count("]"), line


@pytest.mark.parametrize("name", CELLS)
def test_code_in_the_prose_writes_a_matrix_product_with_a_dot(name):
    """The documents say `·` is a matrix product in code: a note's `W_n_rh^T da_n` or `U_hn h_prev`
    would be the one product written otherwise."""
    markdown = (DERIVATIONS / f"{name}.md").read_text()
    for span in re.findall(r"`[^`\n]*`", markdown):
        assert not re.search(r"(\^T|\b[A-Z]\w*) [a-z(\[]", span), span


@pytest.mark.parametrize("name", ["gru", "gru_cho", "lstm", "lstm_cifg", "lstm_peephole", "lstm_seed"])
def test_the_forward_pass_names_an_affines_blocks_before_the_diagram_speaks_of_them(name):
    markdown = (DERIVATIONS / f"{name}.md").read_text()
    assert markdown.index("## Forward pass") < markdown.index("block") < markdown.index("## Dataflow")
    assert "their rows hold the blocks `" in markdown


def test_a_power_of_a_sigmoid_is_printed_as_one():
    d = derive(_edge_cell())
    assert r"\sigma\left(m_{\text{prev}}\right)^{2}" in derivation_latex(d, emit_kernel(d))
    assert "sigmoid(m_prev)**2" in derivation_text(d)


def test_a_sigmoid_of_a_block_inside_an_expression_is_named_and_said_so():
    """sigmoid(a_graph) in m's expression becomes the node graph, as the textbook names g."""
    d = derive(_edge_cell())
    assert "graph = sigmoid(a_graph)" in derivation_text(d)
    assert "(8) m = m_prev*o + n*graph**2 + sigmoid(m_prev)**2" in derivation_text(d)
    assert any("`graph = sigmoid(a_graph)` is named here" in note for note in d.cell.notes)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_latex_form_is_ascii(name):
    """pdflatex reads it without inputenc tricks: Unicode prose is spelled in TeX."""
    latex = DOCUMENTS[name][1]
    assert latex.isascii(), sorted({c for c in latex if not c.isascii()})


def test_the_latex_form_spells_a_titles_and_notes_unicode_and_sets_bars_and_primes_right():
    """A title and a note of one's own may write ≥, — and Greek; a | in prose is math (text mode
    prints it as a dash); softplus's possessive is no derivative's prime."""
    cell = Cell("uni", title="Leaky unit — λ ≥ 0")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
    cell.update(h=cell.let("s", softplus(a)) - h_prev)
    cell.note("keeps |h| ≤ α·T, ’roughly’")
    latex = derivation_latex(derive(cell))
    assert latex.isascii(), sorted({c for c in latex if not c.isascii()})
    assert r"\section*{Leaky unit --- $\lambda$ $\geq$ 0}" in latex
    assert r"keeps $|$h$|$ $\leq$ $\alpha$$\cdot$T, 'roughly'" in latex
    assert "softplus's" in latex and "softplus$'$(" in latex
    prose = [line for line in latex.splitlines() if not line.startswith(("\\", "&", "\\begin", "\\end"))]
    assert not any(re.search(r"(?<![$\\])\|(?!\$)", line) for line in prose)


def test_a_peephole_path_reads_the_pre_activation_adjoint():
    """The text says why dc takes p_o*da_o, and the chain-rule form names the pre-activation."""
    d = derive(load_cell(DERIVATIONS / "lstm_peephole.py"))
    text = derivation_text(d)
    prose = " ".join(text.split())
    assert "da_o = dL/da_o is dL/d(a_o + p_o*c) too" in prose
    assert "Likewise da_i for a_i + p_i*c_prev in (19) and (20); da_f for a_f + p_f*c_prev in (19) and (21)." in prose
    assert "dc = da_o ⊙ ∂(a_o + p_o*c)/∂c + dh ⊙ ∂h/∂c + ∂L(t+1)/∂c" in text  # as the script writes it
    assert "p_o*da_o + o*(1 - tanh(c)**2)*dh + dc_next" in text
    assert "is dL/d(" not in derivation_text(derive(load_cell(DERIVATIONS / "lstm.py")))


def test_a_path_through_a_pre_activation_puts_a_sum_in_parentheses():
    """tanh(a + (u + 1)*h_prev): h_prev takes (1 + u)*da, not 1 + u*da, a different quantity."""
    cell = Cell("shifted", title="A shifted recurrent weight")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x], blocks=["a"])
    u = cell.param("u")
    cell.update(h=tanh(a + (u + 1) * h_prev))
    prose = " ".join(derivation_text(derive(cell)).split())
    assert "takes (1 + u)*da for h_prev, the same as (1 + u)*(1 - h**2)*dh;" in prose



def test_a_chain_of_local_derivatives_reads_in_the_chains_order():
    """The pre-activation's coefficient, then the gate's derivative, then what reads the gate: each
    factor where the chain applies it, where one SymPy product sorts them by name (h*w*(1 - h)) and
    the coefficient is lost among the gate's factors; a number leads."""
    def said(coefficient):
        cell = Cell("leak", title="A recurrent leak inside the gate")
        x, h_prev = cell.input("x"), cell.state("h")
        (a,) = cell.affine("W", [x], blocks=["a"])
        cell.update(h=sigmoid(a + coefficient(cell.param("w")) * h_prev))
        return " ".join(derivation_text(derive(cell)).split())

    assert "takes w*da for h_prev, the same as w*h*(1 - h)*dh;" in said(lambda w: w)
    assert "takes -2*da for h_prev, the same as -2*h*(1 - h)*dh." in said(lambda w: -2)
    peephole = " ".join((DERIVATIONS / "lstm_peephole.md").read_text().split())
    assert "(11) takes `p_o*da_o` for `c`, the same as `p_o*o*(1 - o)*do`;" in peephole


def test_a_note_says_which_state_time_each_peephole_reads():
    text = " ".join(derivation_text(derive(load_cell(DERIVATIONS / "lstm_peephole.py"))).split())
    assert ("(22) dp_o pairs a gate's adjoint with the new c(t), (20) dp_i and (21) dp_f with c_prev = c(t-1)"
            in text)
    assert "pairs a gate's adjoint" not in derivation_text(derive(load_cell(DERIVATIONS / "lstm.py")))


def test_a_carry_says_a_parameters_factor_without_a_step():
    """lam = sigmoid(p) is the same at every step: dh_next holds `lam`, not `lam(t+1)`; f(t+1) keeps its step."""
    cell = Cell("leaky", title="A leaky unit")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
    lam = cell.let("lam", sigmoid(cell.param("p")))
    cell.update(h=lam * h_prev + (1 - lam) * tanh(a))
    prose = " ".join(derivation_text(derive(cell)).split())
    assert "with the product with W_h^T and the factor lam applied." in prose and "already holds two terms: it is" in prose
    assert "lam(t+1)" not in prose
    assert "f(t+1)" in " ".join(derivation_text(derive(load_cell(DERIVATIONS / "lstm.py"))).split())


def test_numbers_scale_vectors_without_odot_and_long_names_are_upright():
    """⊙ is the product of two vectors: 0.5 m, not 0.5 ⊙ m. tanh_a is one name, not t·a·n·h."""
    cell = Cell("power", title="A power and two numbers")
    x, h_prev = cell.input("x"), cell.state("h")
    a, a_k = cell.affine("W", [x, h_prev], blocks=["a", "a_k"])
    k = cell.let("k", sigmoid(a_k))
    cell.update(h=0.5 * tanh(a)**3 + h_prev / 3 - 2 * k * h_prev)
    markdown = derivation_markdown(derive(cell), "power.py")
    assert not re.search(r"(?<![\w{^])\d+(\.\d+)? \\odot|\\frac\{\d+\}\{\d+\} \\odot", markdown)
    assert r"0.5 \mathrm{tanh}_{a}^{3}" in markdown
    assert r"d\mathrm{tanh}_{a} = dh" in markdown
    assert r"1.5 \mathrm{tanh}_{a}^{2} \odot dh" in markdown
    assert r"- 2 k \odot h_{\text{prev}} \qquad (4)" in markdown  # as the script writes it
    assert r"\left(\frac{1}{3} - 2 k\right) \odot dh" in markdown
    leak = Cell("leak", title="A number alone")
    x, h_prev = leak.input("x"), leak.state("h")
    (a,) = leak.affine("W", [x], blocks=["a"])
    leak.update(h=tanh(a) + h_prev / 3)
    assert r"dh_{\text{prev}} = dh \odot \frac{\partial h}{\partial h_{\text{prev}}} = \frac{1}{3} dh" in derivation_markdown(derive(leak), "leak.py")


def test_a_node_named_sigma_is_spelt_out_so_it_never_reads_as_the_sigmoid():
    """σ is the sigmoid: a gate named sigma printed as its letter made (2) read σ = σ(a_s). Other
    Greek names are their letters."""
    cell = Cell("sig", title="A gate named sigma")
    x, h_prev = cell.input("x"), cell.state("h")
    a_s, a_c = cell.affine("W", [x, h_prev], blocks=["a_s", "a_c"])
    sigma, alpha = cell.let("sigma", sigmoid(a_s)), cell.let("alpha", tanh(a_c))
    cell.update(h=sigma * alpha + (1 - sigma) * h_prev)
    markdown = derivation_markdown(derive(cell), "sig.py")
    assert r"\mathrm{sigma} = \sigma\left(a_{s}\right) \qquad (2)" in markdown
    assert r"d\mathrm{sigma} = dh" in markdown and r"\alpha = \tanh" in markdown
    assert not re.search(r"\\sigma(?!\\left)", markdown)  # every \sigma is the function's, applied


def test_a_carry_through_a_pre_activation_names_its_factor():
    """IndRNN's h = tanh(a + u*h_prev): dh_next holds u of the pre-activation, not 'the path through h'."""
    cell = Cell("indrnn", title="IndRNN")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x], blocks=["a"])
    u = cell.param("u")
    cell.update(h=tanh(a + u * h_prev))
    text = " ".join(derivation_text(derive(cell)).split())
    assert ("dh_next already holds u*da, the path through the pre-activation a + u*h_prev (da holds its activation's "
            "derivative): it is dh_prev = u*da") in text
    assert "the path through h" not in text


def test_the_markdown_orders_a_backward_equation_as_the_text_does():
    """One equation, one form: (n - h_prev)*dh in both, not -h_prev + n in the document."""
    cell = Cell("mixer", title="A convex mix")
    x, h_prev = cell.input("x"), cell.state("h")
    a_f, a_n = cell.affine("W", [x, h_prev], blocks=["a_f", "a_n"])
    f, n = cell.let("f", sigmoid(a_f)), cell.let("n", tanh(a_n))
    cell.update(h=(1 - f) * h_prev + f * n)
    d = derive(cell)
    assert "df = dh ⊙ ∂h/∂f = (n - h_prev)*dh" in " ".join(derivation_text(d).split())
    assert r"\left(n - h_{\text{prev}}\right) \odot dh" in derivation_markdown(d, "mixer.py")


@pytest.mark.parametrize("cell", CELLS)
def test_the_kernel_tables_example_of_a_local_derivative_is_one_of_its_kernels_comments(cell):
    markdown = (DERIVATIONS / f"{cell}.md").read_text()
    kernel = (KERNELS / f"{cell}.py").read_text()
    top, bottom = re.search(r"a comment's ∂(\w+)/∂(\w+) is a local derivative, the other inputs of (?:\1) held",
                            markdown).groups()
    assert re.search(rf"# \(\d+\) ∂{top}/∂{bottom}\b", kernel)
    paths = re.search(r"a `d` in place of `∂` marks .* \((d\w+/d\w+ with its paths through .+?)\)\.", markdown)
    assert bool(paths) == (cell == "lstm_peephole")
    if paths:
        assert re.search(rf"# [(),\d ]+ {re.escape(paths.group(1))}$", kernel, re.M)


def text_of(tmp_path, *lines):
    """The terminal derivation of a script made of these lines, after the imports."""
    script = tmp_path / "written.py"
    script.write_text("\n".join(["import sympy", "from lstm_derive import Cell, sigmoid, tanh", *lines]) + "\n")
    return derivation_text(derive(load_cell(script)))


def test_a_subtracted_number_is_written_as_the_script_writes_it(tmp_path):
    """a_f - 1.0, -2*a_c and ... - 2, not a_f - 1*1.0, -1*2*a_c and - 1*2."""
    text = text_of(tmp_path, "cell = Cell('janet', title='JANET, shifted')",
                   "x, h_prev = cell.input('x'), cell.state('h')",
                   "a_f, a_c = cell.affine('W', [x, h_prev], blocks=['a_f', 'a_c'])",
                   "f = cell.let('f', sigmoid(a_f - 1.0))",
                   "o = cell.let('o', sigmoid(-2 * a_c + 3))",
                   "cell.update(h=f * h_prev + (1 - f) * tanh(a_c) - 2 + o)")
    for line in ["(2) f = sigmoid(a_f - 1.0)", "(3) o = sigmoid(-2*a_c + 3)", "(5) h = f*h_prev + (1 - f)*c - 2 + o"]:
        assert line in text
    assert "1*" not in text


def test_rationals_and_divisions_by_numbers_are_written_as_the_script_writes_them(tmp_path):
    """sympy.Rational(1, 3) reads back as a number (the equation keeps the script's order), and
    x/3 is x/3, not (x)/3."""
    text = text_of(tmp_path, "cell = Cell('rat', title='Rationals')",
                   "x, h_prev = cell.input('x'), cell.state('h')",
                   "(a,) = cell.affine('W', [x, h_prev], blocks=['a'])",
                   "i = cell.let('i', sigmoid(a))",
                   "m = cell.let('m', tanh(a) + sympy.Rational(1, 3) * h_prev**2 * i)",
                   "cell.update(h=-(m * h_prev) / 3 + i / 2)")
    assert "(4) m = tanh_a + h_prev**2*i/3" in text, text
    assert "(5) h = -m*h_prev/3 + i/2" in text, text


def test_a_long_equation_breaks_before_its_top_level_terms(tmp_path):
    """The terminal breaks a line over 100 columns before a + or - outside parentheses."""
    lines = text_of(
        tmp_path, "cell = Cell('longc', title='A long sum')",
        "x, h_prev, c_prev = cell.input('x'), cell.state('h'), cell.state('c')",
        "a_i, a_f, a_g = cell.affine('W', [x, h_prev], blocks=['a_i', 'a_f', 'a_g'])",
        "input_gate, forget_gate = cell.let('input_gate', sigmoid(a_i)), cell.let('forget_gate', sigmoid(a_f))",
        "candidate = cell.let('candidate', tanh(a_g))",
        "c = cell.let('c', forget_gate * c_prev - input_gate * candidate * c_prev - forget_gate * candidate * h_prev"
        " - candidate * candidate * input_gate - forget_gate * input_gate * (h_prev - c_prev))",
        "cell.update(c=c, h=tanh(c))").splitlines()
    assert max(map(len, lines)) <= 100
    k = next(i for i, line in enumerate(lines) if line.startswith("  (5) c = "))
    assert lines[k + 1].lstrip().startswith("- ") and lines[k + 1].startswith(" " * 10)
    assert "(h_prev - c_prev)" in " ".join(lines[k:k + 3])  # never broken inside parentheses


def test_double_negatives_and_negative_rationals_read_back(tmp_path):
    """1 - -n is 1 + n, not 1 + 1*n; sympy.Rational(-2, 3) is read back as a number."""
    text = text_of(tmp_path, "cell = Cell('forms', title='Signs')",
                   "x, h_prev = cell.input('x'), cell.state('h')",
                   "(a,) = cell.affine('W', [x, h_prev], blocks=['a'])",
                   "n = cell.let('n', tanh(a))",
                   "m = cell.let('m', 1 - -n + sympy.Rational(-2, 3) * n * h_prev)",
                   "cell.update(h=m - (-n) * h_prev - -n - (-(n * h_prev)) / 3)")
    assert "(3) m = 1 + n - 2*n*h_prev/3" in text, text
    assert "(4) h = m + n*h_prev + n + n*h_prev/3" in text, text
    assert "1*" not in text


def test_relu_softplus_and_exp_read_their_derivatives_off_their_outputs():
    """Each new function's definition, its derivative in output form in the prose, and the lines
    in text and LaTeX: [y > 0], 1 - exp(-y), the exp itself."""
    d = derive(_functions_cell())
    lines = {str(s.adjoint): step_text(s, d) for s in d.steps}
    assert lines["da_n"] == "da_n = (1 - exp(-n))*dn"
    assert lines["da_r"] == "da_r = [relu(a_r) > 0]*dh"
    assert lines["dtanh_e"] == "dtanh_e = e*de"
    flat = " ".join(derivation_text(d).split())
    # the bracket is said to be the derivative before any equation uses it
    assert ("relu(a) = max(a, 0), whose derivative is written [a > 0]: 1 where a > 0, 0 where a < 0, and 0 at "
            "a = 0, where it has none, as every framework takes it; softplus(a) = log(1 + exp(a)).") in flat
    assert "softplus'(a) = 1/(1 + exp(-a)) = 1 - exp(-softplus(a)) is 1 - exp(-n) for n = softplus(a_n)" in flat
    assert "exp'(a) = exp(a) is e for e = exp(tanh_e)" in flat
    assert ("so the backward pass reads the stored outputs alone, and calls no exp or tanh to differentiate them "
            "but softplus's 1 - exp(-y) of its output y (computed as -expm1(-y)).") in flat
    markdown = DOCUMENTS["functions"][0]
    assert r"= \left(1 - \exp\left(-n\right)\right) \odot dn" in markdown
    assert r"= [\operatorname{relu}\left(a_{r}\right) > 0] \odot dh" in markdown
    packaged = " ".join(DOCUMENTS["rnn_relu"][0].split())
    assert "(relu'(a) = [a > 0] is [h > 0] for `h = relu(a)`): no derivative of relu reads its argument" in packaged
    assert r"da = dh \odot \frac{\partial h}{\partial a} = [h > 0] \odot dh" in packaged
    latex = DOCUMENTS["rnn_relu"][1]  # > in LaTeX's text mode prints as an inverted question mark
    assert r"relu$'$(a) = [a $>$ 0] is [h $>$ 0]" in latex and "[a > 0]" not in latex


def test_the_functions_rules_name_no_vector_of_the_cell_but_their_whole_argument():
    """An IndRNN names its block a: relu'(a) = [a > 0] would claim the gate opens where a > 0."""
    cell = Cell("indrnn", title="IndRNN")
    x, h_prev, u = cell.input("x"), cell.state("h"), cell.param("u")
    (a,) = cell.affine("W", [x], blocks=["a"])
    cell.update(h=relu(a + u * h_prev))
    flat = " ".join(derivation_text(derive(cell)).split())
    assert "relu(s) = max(s, 0), whose derivative is written [s > 0]: 1 where s > 0, 0 where s < 0, and 0 at s = 0" in flat
    assert "(relu'(s) = [s > 0] is [h > 0] for h = relu(a + u*h_prev))" in flat and "[a > 0]" not in flat


def test_a_float_prints_as_the_script_writes_it():
    """0.5, not SymPy's 0.500000000000000, in the lines and in the notes on the carries."""
    cell = Cell("leak", title="A leaky state")
    x = cell.input("x")
    m_prev = cell.state("m")
    (a,) = cell.affine("W", [x, m_prev], blocks=["a"])
    cell.update(m=0.5 * m_prev + tanh(a))
    d = derive(cell)
    text = derivation_text(d)
    assert "dm_prev = W_m^T·da + 0.5*dm" in " ".join(text.split()) and "0.500000000000000" not in text


def test_an_equation_too_long_for_one_line_puts_its_two_forms_one_under_the_other():
    markdown = (DERIVATIONS / "lstm_peephole.md").read_text()
    assert "\n\\begin{aligned} dc &= da_{o} \\odot \\frac" in markdown
    assert "\\\\\n&= p_{o} \\odot da_{o} + o \\odot" in markdown and "\\end{aligned} \\qquad (11)\n" in markdown
    short = (DERIVATIONS / "lstm_seed.md").read_text()
    assert "aligned" not in short  # every equation of the seed's cell fits on one line


def test_the_backward_rules_say_what_each_cell_computes_and_the_terminal_names_its_own_symbols():
    """A ReLU RNN calls no exp or tanh to begin with: its document says only that it reads the
    stored outputs; the terminal's equations write products as * and ·, and its prose says so."""
    relu = (DERIVATIONS / "rnn_relu.md").read_text()
    assert "reads the stored outputs alone." in relu and "exp or tanh" not in relu and "Output form is exact" not in relu
    assert "its derivative comes out 0. The true one there is below 2 eps" in (DERIVATIONS / "lstm.md").read_text()
    text = " ".join(derivation_text(derive(load_cell(DERIVATIONS / "lstm.py"))).split())
    assert "products of vectors are elementwise (written * or ⊙ in the equations; a matrix product, ·; ** is a power)" in text
    # the Markdown's code spans and diagrams write * and ·, and its prose says so too
    assert ("products of vectors are elementwise (written ⊙ in the equations, and `*` in code and the diagrams, where "
            "`·` is a matrix product and `**` a power)") in (DERIVATIONS / "lstm.md").read_text()


def test_the_saturation_bounds_of_tanh_through_a_sigmoid_are_those_of_the_gates_the_kernel_computes_so():
    """lstm's kernel computes g = tanh(a_g) as 2 sigmoid(2a) - 1, and its document says so of g alone;
    gru's candidate and rnn's h are np.tanh, and theirs say nothing of it. Without the kernel's text
    the document does not guess."""
    docs = {n: " ".join((DERIVATIONS / f"{n}.md").read_text().split()) for n in ("lstm", "gru", "rnn", "lstm_peephole")}
    assert "The kernel computes `g` (4) as 2σ(2a) - 1 of its argument a" in docs["lstm"]
    assert "The kernel computes `g` (4) as 2σ(2a) - 1" in docs["lstm_peephole"]
    assert "2σ(2a) - 1" not in docs["gru"] and "2σ(2a) - 1" not in docs["rnn"]
    assert "2σ(2a) - 1" not in _flat_text(load_cell(DERIVATIONS / "lstm.py"))  # no kernel: nothing said of it


def _first_saturated(function, dtype, sign):
    """The least |a|, on a grid of 0.001, from which function(sign*|a|) rounds to sign in dtype."""
    a = np.arange(0, 25, 0.001).astype(dtype)
    with np.errstate(over="ignore"):
        return float(a[np.argmax(function(dtype(sign) * a) == sign)])


def _first_rounded_correctly(dtype):
    """The least |a|, on a grid of 0.001, from which tanh(a) rounded correctly to dtype is ±1: where
    1 - tanh(a) falls to half the gap below 1, eps/4 (a tie rounds to 1, whose last bit is even)."""
    with mpmath.workdps(50):
        bound = mpmath.atanh(1 - mpmath.mpf(float(np.finfo(dtype).eps)) / 4)
    return float(mpmath.ceil(bound * 1000) / 1000)


def test_the_bounds_of_tanh_through_a_sigmoid_are_measured_as_said():
    """2σ(2a) - 1, with σ computed as 1/(1 + exp(-a)) as the kernel does, measured against tanh
    rounded correctly (not np.tanh, whose SIMD code in float32 reaches ±1 only from 10.0): it reaches
    1 sooner in both precisions, and -1 where tanh does, on the grid of 0.001."""
    bounds = {}
    for dtype in (np.float64, np.float32):
        def through(a, one=dtype(1), two=dtype(2)):
            return two/(one + np.exp(-two*a)) - one
        for sign in (1, -1):
            bounds[dtype, sign] = _first_saturated(through, dtype, sign)
        tanh = _first_rounded_correctly(dtype)
        assert bounds[dtype, 1] < tanh - 0.5 and abs(bounds[dtype, -1] - tanh) <= 0.0015, dtype
    said = (f"which reaches 1 sooner than tanh, past a ≈ {bounds[np.float64, 1]:.1f} (float32: "
            f"{bounds[np.float32, 1]:.1f}), and -1 where tanh does, past a ≈ -{bounds[np.float64, -1]:.1f} (float32: "
            f"-{bounds[np.float32, -1]:.1f}).")
    for name in ("lstm", "lstm_seed", "lstm_cifg", "lstm_peephole"):
        assert said in " ".join((DERIVATIONS / f"{name}.md").read_text().split()), name


def test_the_peepholes_factor_along_c_is_the_derivative_of_c_by_c_prev_in_the_stored_values():
    """What compounds along c, step by step, is dc/dc_prev through every path within the step: worked
    out here with SymPy from the forward equations, and compared, at a point, with the document's
    factor read as an expression of the stored values i, f and g."""
    a_i, a_f, a_g, p_i, p_f, c_prev = sympy.symbols("a_i a_f a_g p_i p_f c_prev")
    i, f, g = 1/(1 + sympy.exp(-a_i - p_i*c_prev)), 1/(1 + sympy.exp(-a_f - p_f*c_prev)), sympy.tanh(a_g)
    true = sympy.diff(f*c_prev + i*g, c_prev)
    text = " ".join((DERIVATIONS / "lstm_peephole.md").read_text().split())
    factors = set(re.findall(r"(?:multiplied at every step between by|only the product of) `([^`]*)`", text))
    assert len(factors) == 1
    names = {n: sympy.Symbol(n) for n in ("i", "f", "g", "p_i", "p_f", "c_prev")}
    said = sympy.sympify(factors.pop(), locals=names).subs({names["i"]: i, names["f"]: f, names["g"]: g})
    point = {a_i: 0.3, a_f: -0.7, a_g: 0.9, p_i: 0.5, p_f: -1.2, c_prev: 0.8}
    assert abs(float(said.subs(point)) - float(true.subs(point))) < 1e-12


def test_the_notation_says_what_dy_an_affines_term_and_a_pre_activation_are():
    """dy is the one adjoint that is not dL(t)/dv; an affine's term is W^T times the stacked
    adjoints, said with the cell's recurrent weight; a pre-activation is shown on the first gate."""
    lstm_doc = " ".join((DERIVATIONS / "lstm.md").read_text().split())
    assert ("Outside that rule: `dy` is the gradient of this step's own loss l(t) alone, "
            "y(t) = h(t) being the step's output; `dh_next`, `dc_next` are the gradients of L(t+1)") in lstm_doc
    assert ("The derivative of `W`'s output `[a_i; a_f; a_g; a_o]` with respect to `h_prev` is the matrix `W_h`, "
            "so its term in `dh_prev` is `W_h^T·[da_i; da_f; da_g; da_o]`") in lstm_doc
    assert "Its term in `dW_h` is the outer product `[da_i; da_f; da_g; da_o]·h_prev^T`, summed over the steps and the sequences in (22)." in lstm_doc
    assert "A pre-activation is what an activation function reads, as `i = sigmoid(a_i)` in (2) reads `a_i`." in lstm_doc
    gru_doc = " ".join((DERIVATIONS / "gru.md").read_text().split())
    assert "with respect to `h_prev` is the matrix `U_h`, so its term in `dh_prev` is `U_h^T·[da_hr; da_hz; da_hn]`" in gru_doc


def test_the_notation_names_every_adjoint_outside_the_rule():
    """dh_prev, dc_prev are partial derivatives of L(t), with the other state held fixed, and the
    parameters' gradients are those of L, summed over the steps: neither is dL(t)/dv of step t's v."""
    def notation(name):
        doc = " ".join((DERIVATIONS / f"{name}.md").read_text().split())
        return doc.split("Outside that rule: ")[1].split(" Steps count from 1")[0]

    lstm = notation("lstm")
    assert ("`dh_prev`, `dc_prev`, which step t carries back and step t-1 reads as `dh_next`, `dc_next`, are the "
            "partial derivatives of L(t) with respect to h(t-1), c(t-1), each with the other state held fixed") in lstm
    assert ("and the parameters' gradients, `dW_x`, `dW_h` and `db`, are those of the whole loss L, summed over every "
            "step and sequence, not of L(t).") in lstm
    rnn = notation("rnn")
    assert "`dh_prev`, which step t carries back and step t-1 reads as `dh_next`, is the gradient of L(t) with respect to h(t-1);" in rnn
    assert "held fixed" not in rnn and "`dW_x`, `dW_h`, `db_x` and `db_h`" in rnn
    assert "(dp_i(t, j) and the like, below, are the shares of step t and sequence j)" in notation("lstm_peephole")
    defs = (DERIVATIONS / "lstm.md").read_text()
    assert (r"dh_{\text{prev}} := \frac{\partial L(t)}{\partial h(t-1)}, \quad dc_{\text{prev}} := \frac{\partial L(t)}"
            r"{\partial c(t-1)}, \quad d\theta := \frac{\mathrm{d} L}{\mathrm{d} \theta} \text{ for a parameter } \theta") in defs


def test_the_lstm_names_pytorchs_layout_as_the_grus_do():
    """The order the block-order note asks for is PyTorch's, and the notes say which tensor is which."""
    lstm = " ".join((DERIVATIONS / "lstm.md").read_text().split())
    assert ("- The order i, f, g, o is PyTorch's: torch.nn.LSTM's weight_ih is `W_x` and its weight_hh is `W_h`, each "
            "as it is, and `b` is bias_ih + bias_hh") in lstm
    assert ("and `b_x`, `b_h` their biases, as PyTorch's weight_ih, weight_hh, bias_ih and bias_hh"
            in " ".join((DERIVATIONS / "gru.md").read_text().split()))


def test_both_grus_warn_of_the_other_z_convention():
    for name in ("gru", "gru_cho"):
        doc = " ".join((DERIVATIONS / f"{name}.md").read_text().split())
        assert re.search(r"swap the roles of z and 1 - z: their `dz` is the negative of \(\d+\)'s `\(h_prev - n\)\*dh`", doc), name


def test_the_cifg_is_not_called_greffs_cell_which_has_peepholes():
    cifg = (DERIVATIONS / "lstm_cifg.md").read_text()
    assert cifg.split("\n")[1] == "# LSTM with coupled input-forget gate (CIFG coupling as in Greff et al. 2015, without peepholes)"
    assert "p_i" not in cifg  # nor does it have any


def test_the_gradients_section_gives_the_shapes_read_off_the_affines():
    """The stacked adjoint of an affine of k blocks has kH entries; W^T da has the size of what W reads;
    dW is kH × that size, as W; db has kH entries; an elementwise parameter's gradient has H."""
    def shapes(name):
        doc = " ".join((DERIVATIONS / f"{name}.md").read_text().split())
        gradients = doc.split("## Gradients of the input and the parameters")[1].split("## Where people go wrong")[0]
        return next(p for p in gradients.split(" $$ ") if p.startswith("Shapes, for a check:"))

    lstm = shapes("lstm")
    assert "H entries per sequence and (B, H) for a batch (dx: D, and (B, D))" in lstm
    assert ("In (1), dpre_W = [da_i; da_f; da_g; da_o], the kernel's name for the stacked adjoint, has 4H entries "
            "((B, 4H) for a batch); `W_x^T·dpre_W` has D entries like x and `W_h^T·dpre_W` has H entries like h_prev; "
            "dW_x = Σ dpre_W x^T is 4H × D like `W_x` (computed as `dpre_W_flat.T @ np.ascontiguousarray(x).reshape(T * B, D)`, where "
            "`dpre_W_flat` stacks the rows of dpre_W of every step and sequence: (4H, TB) times (TB, D)), "
            "dW_h = Σ dpre_W h_prev^T is 4H × H like `W_h` and db has 4H entries like `b`.") in lstm
    gru = shapes("gru")
    # two affines of several blocks: each stacked adjoint takes its affine's name in the kernel, dpre_W and dpre_U
    assert "In (1), dpre_W = [da_xr; da_xz; da_xn], the kernel's name for the stacked adjoint, has 3H entries" in gru
    assert "`W_x^T·dpre_W` has D entries" in gru
    assert "In (2), dpre_U = [da_hr; da_hz; da_hn], the kernel's name for the stacked adjoint, has 3H entries" in gru
    assert "dU_h = Σ dpre_U h_prev^T is 3H × H like `U_h`" in gru
    assert "`W_n_rh^T·da_n` has H entries like rh" in shapes("gru_cho")
    assert "In (1), da has H entries ((B, H) for a batch)" in shapes("rnn") and "db_h has H entries like `b_h`" in shapes("rnn")
    # one block's adjoint is da above; the kernel's name for it, in the line quoted, is said where it first appears
    assert "where `dpre_W_flat` stacks the rows of da (the kernel's dpre_W) of every step and sequence" in shapes("rnn")
    assert "dp_i, dp_f and dp_o have H entries like `p_i`, `p_f` and `p_o`" in shapes("lstm_peephole")


def _named_apart():
    """An input not named x, and a state named a, whose adjoint da a stacked adjoint must not take."""
    cell = Cell("named_apart", title="An input u and a state a")
    u, a_prev = cell.input("u"), cell.state("a")
    a_z, a_n = cell.affine("W", [u, a_prev], blocks=["a_z", "a_n"])
    z = cell.let("z", sigmoid(a_z))
    cell.update(a=z * a_prev + (1 - z) * tanh(a_n))
    return cell


@pytest.mark.parametrize("name", CELLS + [*SHAPED_CELLS, "named_apart"])
def test_the_shapes_name_the_stacked_adjoints_as_the_kernel_does(name):
    """Read beside its kernel, the document calls an affine's stacked adjoint what the kernel calls
    it, and the line it quotes for a weight's gradient is the kernel's own."""
    made = {**SHAPED_CELLS, "named_apart": _named_apart}.get(name)
    d = derive(made() if made else load_cell(DERIVATIONS / f"{name}.py"))
    kernel = emit_kernel(d)
    text = " ".join(derivation_markdown(d, f"{name}.py", kernel).split())
    shapes = text.split("Shapes, for a check:")[1].split("## Backpropagation through time")[0]
    stacked = re.findall(r"In \(\d+\), (\S+) = \[", shapes)
    assert stacked == [f"dpre_{a.name}" for a in d.cell.affines if len(a.blocks) > 1]
    assert all(re.search(rf"\b{n}(_seq)? = ", kernel) for n in stacked)  # the buffer the kernel makes
    (quoted,) = re.findall(r"computed as `([^`]+)`", shapes)
    weight = next(w for a in d.cell.affines for w, v in zip(a.weights, a.inputs) if v in d.cell.inputs)
    assert f"d{weight} = {quoted}  #" in kernel


@pytest.mark.parametrize("name", ["lstm_peephole", "edges"])  # read in a step's own equation, and in a carry
def test_a_block_adjoint_read_for_a_whole_pre_activation_is_explained_before_an_equation_reads_it(name):
    """da_o ⊙ ∂(a_o + p_o*c)/∂c departs from the rule's do ⊙ ∂o/∂c: the paragraph that says why
    comes before the first equation that writes it, not after the ones that follow."""
    made = SHAPED_CELLS.get(name)
    text = derivation_text(derive(made() if made else load_cell(DERIVATIONS / f"{name}.py")))
    reads = re.search(r"^ +\(\d+\) d\w+ = .*⊙ ∂\(", text, re.M)
    why = re.search(r"^  \w+ enters \w+'s pre-activation", text, re.M)
    assert why is not None and why.start() < reads.start()


def test_the_carries_say_what_they_do_over_many_steps():
    """The cell state's carry compounds its gate (the LSTM's long memory); a carry through a weight
    matrix compounds matrices (vanishing and exploding gradients) along that state alone; a GRU's h
    does both, and its paths mix them."""
    lstm_doc, rnn_doc, gru_doc = ((DERIVATIONS / f"{n}.md").read_text() for n in ("lstm", "rnn", "gru"))
    assert "`dc_prev` compounds. The gradient that reaches c(t) from the loss of a later step τ: along `c` alone" in lstm_doc and "the product f(t+1) f(t+2) ... f(τ)" in lstm_doc
    assert "Along `h` alone, through `W_h^T` at every step, it is multiplied by that matrix" in lstm_doc
    assert "a later step τ: through `W_h^T`, it is multiplied at every step" in rnn_doc and "vanishing and exploding" in rnn_doc
    assert "along" not in rnn_doc.split("Over many steps")[1].split("\n")[0]
    assert "the product z(t+1) z(t+2) ... z(τ)" in gru_doc and "Through `U_h^T` at every step, it is multiplied by that matrix" in gru_doc
    cho = (DERIVATIONS / "gru_cho.md").read_text()  # h_prev reaches W_n_rh through rh = r*h_prev
    assert "Through `W_h^T` and `W_n_rh^T` (through `rh`) at every step, it is multiplied by those matrices, one or " \
        "more in turn along each path" in cho
    mlstm = Cell("mlstm", title="An mLSTM's recurrent matrices in turn: N_h makes a_mh, and W_m reads m = a_mx*a_mh")
    x, h_prev, c_prev = mlstm.input("x"), mlstm.state("h"), mlstm.state("c")
    (a_mx,), (a_mh,) = mlstm.affine("M", [x], blocks=["a_mx"], bias=None), mlstm.affine("N", [h_prev], blocks=["a_mh"], bias=None)
    m = mlstm.let("m", a_mx * a_mh)
    a_f, a_g = mlstm.affine("W", [x, m], blocks=["a_f", "a_g"])
    c = mlstm.let("c", sigmoid(a_f) * c_prev + tanh(a_g))
    mlstm.update(h=tanh(c), c=c)
    text = _flat_text(mlstm)
    assert ("through N_h^T and W_m^T (through m) at every step, it is multiplied by those matrices, one or more "
            "in turn along each path, and by the local derivatives") in text
    assert ("A path that enters c and stays there meets N_h^T and W_m^T (through m), one or more in turn, at the one "
            "step where it enters") in text


def test_the_gradient_that_reaches_h_is_said_to_take_w_h_at_every_step_only_along_h():
    """An LSTM's h(t) reaches later losses through c too, where it meets W_h^T once and then the
    product of f: the product of matrices is said of the path along h alone. An RNN has no other
    path; a GRU's paths take z*h_prev or U_h^T at each step, and mix them."""
    def compounding(name, state="h"):
        return next(p for p in (DERIVATIONS / f"{name}.md").read_text().split("\n\n")
                    if p.startswith(f"Over many steps, `d{state}_prev` compounds."))

    for name in ("lstm", "lstm_cifg", "lstm_peephole"):
        lstm = compounding(name)
        assert "sums paths through the states of the steps between" in lstm and "Along `h` alone, through `W_h^T` at every step" in lstm
        assert "A path that enters `c` and stays there meets `W_h^T` once, at the step where it enters" in lstm
        assert "A path that moves between the states takes the factors of its steps in turn" in lstm
    assert "and then no matrix, only the product of `f` over the steps after." in compounding("lstm")
    assert "only the product of `f + p_i*i*(1 - i)*g + p_f*f*(1 - f)*c_prev` over the steps after" in compounding("lstm_peephole")
    assert "A path that enters `s` and stays there meets `W_h^T` once" in compounding("lstm_seed")
    rnn = compounding("rnn")
    assert "`f`" not in rnn and "enters" not in rnn and "alone" not in rnn and "paths" not in rnn
    gru = compounding("gru")
    assert "Through `z*h_prev` at every step, it is multiplied by `z` of every step between" in gru
    assert "A path that takes `z*h_prev` at some steps and `U_h^T` at others picks up the matrix only at the latter." in gru
    assert "enters" not in gru
    # a state reached through a matrix that keeps a matrix of its own: its carry's factors, not "no matrix"
    cell = Cell("twice", title="Two states, each with a matrix")
    x, h_prev, m_prev = cell.input("x"), cell.state("h"), cell.state("m")
    a, a_m = cell.affine("W", [x, h_prev], blocks=["a", "a_m"])
    (a_k,) = cell.affine("V", [x, m_prev], blocks=["a_k"], bias="b_v")
    cell.update(h=tanh(a), m=tanh(a_m + a_k))
    text = _flat_text(cell)
    assert "A path that enters m meets W_h^T once, at the step where it enters (with the local derivatives of the " \
        "nodes between), and then the factors of m's own carry." in text
    assert "no matrix" not in text


def test_a_gate_or_one_minus_a_gate_can_only_fade_a_carry_and_peepholes_add_to_it():
    """The CIFG's f = 1 - i lies in (0, 1) as a gate does; a peephole's path adds to the direct factor
    at every step, so what compounds is the sum, which can exceed 1."""
    cifg = (DERIVATIONS / "lstm_cifg.md").read_text()
    assert "f lies in (0, 1), so it fades" in cifg and "grows geometrically where |f| > 1" not in cifg
    peephole = (DERIVATIONS / "lstm_peephole.md").read_text()
    assert "multiplied at every step between by `f + p_i*i*(1 - i)*g + p_f*f*(1 - f)*c_prev`" in peephole
    assert "can take it above 1 where f alone, in (0, 1), could only fade it" in peephole


def _flat_text(cell):
    return " ".join(derivation_text(derive(cell)).split())


def test_the_carries_over_many_steps_are_said_for_each_kind_of_factor():
    """A leak the same at every step compounds as a power; a factor that may pass 1 (exp) can
    grow; a path through a pre-activation (IndRNN's u) compounds with its gate's derivative."""
    leaky = Cell("leaky", title="A leaky unit")
    x, h_prev = leaky.input("x"), leaky.state("h")
    (a,) = leaky.affine("W", [x], blocks=["a"])
    lam = leaky.let("lam", sigmoid(leaky.param("p")))
    leaky.update(h=lam * h_prev + (1 - lam) * tanh(a))
    assert "it is multiplied by lam, the same at every step, τ - t times:" in _flat_text(leaky)
    growing = Cell("growing", title="An exponential keep gate")
    x, h_prev = growing.input("x"), growing.state("h")
    a, a_n = growing.affine("W", [x], blocks=["a", "a_n"])
    e = growing.let("e", exp(a))
    growing.update(h=e * h_prev + tanh(a_n))
    assert "where |e| > 1, if e can get there, it grows geometrically" in _flat_text(growing)
    indrnn = Cell("indrnn", title="IndRNN")
    x, h_prev = indrnn.input("x"), indrnn.state("h")
    (a,) = indrnn.affine("W", [x], blocks=["a"])
    indrnn.update(h=relu(a + indrnn.param("u") * h_prev))
    assert ("multiplied at every step between by u*[h > 0]: through the pre-activation a + h_prev*u, its coefficient "
            "times the derivative of the new h with respect to that pre-activation, through its activation. A product "
            "over the steps between") in _flat_text(indrnn)


def test_an_output_state_another_node_reads_is_said_to_take_that_path_too():
    """With output c and h = o*tanh(c), the loss of later steps reaches c(t) through h as well."""
    cell = Cell("outc", title="c out", output="c")
    x, h_prev, c_prev = cell.input("x"), cell.state("h"), cell.state("c")
    a_f, a_o = cell.affine("W", [x, h_prev], blocks=["a_f", "a_o"])
    f, o = cell.let("f", sigmoid(a_f)), cell.let("o", sigmoid(a_o))
    c = cell.let("c_new", f * c_prev + 1 - f)
    cell.update(h=o * tanh(c), c=c)
    text = _flat_text(cell)
    assert "which reaches c(t) directly and through h, a node of the step that reads it" in text
    assert "dL(t)/dc(t) = ∂l(t)/∂c(t) + ∂L(t+1)/∂c(t) + dh ⊙ ∂h/∂c(t)" in text
    assert "So (6) takes dh_next as it is" in text


def test_softplus_inside_an_expression_is_said_to_cost_its_exp():
    cell = Cell("logsig", title="log sigmoid")
    x, h_prev = cell.input("x"), cell.state("h")
    a, a_g = cell.affine("W", [x, h_prev], blocks=["a", "a_g"])
    g = cell.let("g", sigmoid(a_g))
    cell.update(h=g * h_prev - softplus(-a))
    assert "calls no exp or tanh to differentiate it but softplus's 1 - exp(-y) of its output y (computed as -expm1(-y))" in _flat_text(cell)


def test_the_output_form_note_calls_a_parameters_sigmoid_by_its_argument():
    cell = Cell("leaky_only", title="A leak alone")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x], blocks=["a"])
    lam = cell.let("lam", sigmoid(cell.param("p")))
    cell.update(h=lam * h_prev + a)
    text = _flat_text(cell)
    assert "dp(t, j) = lam*(1 - lam)*dlam. It reads the output lam, not the argument p;" in text


def test_an_adjoint_that_is_another_is_cited_where_the_kernel_multiplies_by_it(tmp_path):
    """dr = ds_new: the kernel reads ds_new's array, in the line that scales da_r by it; that line
    cites (11) after (12), (13). A let no node reads is computed nowhere, and the table says why."""
    script = tmp_path / "alias.py"
    script.write_text("\n".join([
        "from lstm_derive import Cell, relu, sigmoid",
        'cell = Cell("alias", title="An adjoint that is another")',
        'x = cell.input("x")',
        'h_prev, s_prev = cell.state("h"), cell.state("s")',
        'a_r, a_e = cell.affine("W", [x, h_prev], blocks=["a_r", "a_e"])',
        'r = cell.let("r", relu(a_r))',
        'unread = cell.let("unread", sigmoid(0.5))',
        's = cell.let("s_new", sigmoid(a_e) * s_prev + r)',
        "cell.update(h=s / 2, s=s)"]) + "\n")
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "alias.md").read_text().split("## Kernel lines")[1]
    line = re.search(r"\| \(11\) \| `dr` \| `backward` \| \[(\d+)\]", table)
    assert line, table
    kernel = (tmp_path / "out" / "alias.py").read_text().split("\n")
    assert kernel[int(line.group(1)) - 1].endswith("*= ds_new[:, np.newaxis]  # (12), (13) dL/da_r, da_e, through (9), (11)")
    assert "| (3) | `unread` | none | none: nothing the new states depend on reads it |" in table


def test_a_let_read_only_by_a_let_nothing_reads_has_no_kernel_line_and_says_why(tmp_path):
    """v2 is read by v3 alone, and nothing reads v3: the kernel computes neither (no derivative
    reads their values), and the table says so of both, in the words of the warning."""
    script = tmp_path / "chain.py"
    script.write_text("\n".join([
        "from lstm_derive import Cell, tanh",
        'cell = Cell("chain", title="A chain nothing reads")',
        'x, h_prev = cell.input("x"), cell.state("h")',
        'p = cell.param("p")',
        '(a,) = cell.affine("W", [x, h_prev], blocks=["a"])',
        'v2 = cell.let("v2", 2 * p)',  # whose derivative reads no value of it
        'v3 = cell.let("v3", v2 + 1)',  # nor does v3's
        "cell.update(h=tanh(a))"]) + "\n")
    assert cli.main(["generate", str(script), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "chain.md").read_text().split("## Kernel lines")[1]
    for n, name in ((2, "v2"), (3, "v3")):
        assert f"| ({n}) | `{name}` | none | none: nothing the new states depend on reads it |" in table, table


def test_a_block_two_gates_read_is_listed_among_the_output_form_steps():
    """JANET's a_f feeds f = sigmoid(a_f) and sigmoid(a_f - 1): its da_f sums two output forms."""
    janet = _janet()
    d = derive(janet)
    da_f = next(s for s in d.steps if str(s.adjoint) == "da_f")
    assert len(da_f.terms) == 2
    assert re.search(rf"\(\d+\)(, \(\d+\))* and \({da_f.number}\)|\({da_f.number}\)(, \(\d+\))* and \(\d+\)",
                     _flat_text(janet).split("in output form, from the stored outputs")[0][-40:])


def test_the_carry_prose_counts_only_what_compounds_and_says_no_more_than_it_knows():
    """An SRU with peepholes: v_r*c_prev enters r, which feeds h alone, so it is no part of c's
    per-step factor; h_prev is never read, so h's second part is zero but at a sequence's last step. A leak
    of 1 - 0.01*(...) is written with its minus sign; an indicator is all or nothing."""
    sru = Cell("sru", title="SRU with peepholes", output="h")
    x, h_prev, c_prev = sru.input("x"), sru.state("h"), sru.state("c")
    a_f, a_r, a_c = sru.affine("W", [x], blocks=["a_f", "a_r", "a_c"])
    f = sru.let("f", sigmoid(a_f + sru.param("v_f") * c_prev))
    r = sru.let("r", sigmoid(a_r + sru.param("v_r") * c_prev))
    c = sru.let("c_new", f * c_prev + (1 - f) * a_c)
    sru.update(c=c, h=r * tanh(c) + (1 - r) * a_c)
    text = _flat_text(sru)
    assert re.findall(r"multiplied at every step between by ([^:]*):", text) == ["f + v_f*f*(1 - f)*(c_prev - a_c)"]
    assert "No equation reads h_prev, so the second part is zero but at a sequence's last step, where it is the gradient of l_final (and, for a sequence that ends before the others, of the later outputs that repeat its state)" in text
    leak = Cell("leak", title="A leak through its pre-activation")
    x, h_prev = leak.input("x"), leak.state("h")
    (a,) = leak.affine("W", [x], blocks=["a"])
    leak.update(h=h_prev + tanh(a - 0.01 * h_prev))
    assert "multiplied at every step between by 1 - 0.01*(1 - tanh_a**2):" in _flat_text(leak)
    running = Cell("running", title="A running maximum, max(m_prev, a) = a + relu(m_prev - a)")
    x, h_prev, m_prev = running.input("x"), running.state("h"), running.state("m")
    a, a_n = running.affine("W", [x, h_prev], blocks=["a", "a_n"])
    m = running.let("m_new", a + relu(m_prev - a))
    running.update(h=tanh(a_n) * tanh(m), m=m)
    text = _flat_text(running)
    assert "is 0 or 1, so the gradient passes unchanged while" in text and "the product of its values at steps t+1 to τ" in text


def test_the_peephole_gradients_are_said_to_be_products_per_t_b_summed_after():
    text = (DERIVATIONS / "lstm_peephole.md").read_text()
    assert "Each is an elementwise product per (t, j), summed over t and j into the parameter's gradient" in text


def test_the_output_form_list_takes_every_step_with_a_term_in_output_form_exp_too():
    cell = Cell("expgate", title="An exponential input gate")
    x, h_prev, c_prev = cell.input("x"), cell.state("h"), cell.state("c")
    a_i, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_o"])
    i, o = cell.let("i", exp(a_i)), cell.let("o", sigmoid(a_o))
    c = cell.let("c_new", c_prev + i)
    cell.update(h=o * tanh(c), c=c)
    d = derive(cell)
    numbers = {str(s.adjoint): s.number for s in d.steps}
    bullet = _flat_text(cell).split(" write the derivatives in output form")[0].rsplit("- ", 1)[1]
    assert f"({numbers['da_i']})" in bullet and f"({numbers['da_o']})" in bullet, bullet


def test_the_prose_knows_numbers_crosswise_carries_shared_lets_and_renamed_states():
    """m = 0.9*m_prev fades as 0.9^(τ - t); d = exp(-softplus(a)) lies in (0, 1); h and c that feed
    each other take turns; lam = sigmoid(p) is step t's share; c_new is said to be the new c."""
    cell = Cell("mixed", title="A mixed cell")
    x, h_prev, c_prev, m_prev = cell.input("x"), cell.state("h"), cell.state("c"), cell.state("m")
    a, a_s = cell.affine("W", [x], blocks=["a", "a_s"])
    lam = cell.let("lam", sigmoid(cell.param("p")))
    d = cell.let("d", exp(-softplus(a_s)))
    c = cell.let("c_new", lam * h_prev + tanh(a))
    cell.update(h=d * m_prev + c_prev, c=c, m=0.9 * m_prev + 0.1 * tanh(a))
    text = _flat_text(cell)
    assert "Along m alone, it is multiplied by 0.9^(τ - t): it fades geometrically" in text
    assert "through the new c (times lam), it joins c's carry" in text
    assert "through the new h (times 1), it joins h's carry" in text
    assert "Through the new h (times d), it joins h's carry" in text
    assert "lam, a let of parameters alone, is the same at every step" in text
    assert "c_new is the new c, c(t)." in text
    lone = Cell("lone", title="A gate through exp")
    x, h_prev = lone.input("x"), lone.state("h")
    a_s, a_n = lone.affine("W", [x, h_prev], blocks=["a_s", "a_n"])
    d = lone.let("d", exp(-softplus(a_s)))
    lone.update(h=d * h_prev + tanh(a_n))
    assert "d lies in (0, 1), so it fades" in _flat_text(lone)


def test_a_positive_state_is_said_to_be_needed_above_zero():
    cell = Cell("normalised", title="A normalised state")
    x, h_prev, n_prev = cell.input("x"), cell.state("h"), cell.state("n", positive=True)
    a_i, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_o"])
    n = cell.let("n_new", n_prev + exp(a_i))
    cell.update(h=sigmoid(a_o) * tanh(n_prev / n), n=n)
    assert "n is declared positive: the cell needs it above 0" in _flat_text(cell)
    assert "declared positive" not in (DERIVATIONS / "lstm.md").read_text()



def test_a_division_that_zero_states_make_by_zero_is_said_where_the_states_are_introduced():
    """The kernel's docstring says so of forward's state; the document, of the equation."""
    cell = Cell("pole", title="A division by the previous normaliser")
    x, h_prev, n_prev = cell.input("x"), cell.state("h"), cell.state("n", positive=True)
    a, i = cell.affine("W", [x, h_prev], blocks=["a", "i"])
    cell.update(h=tanh(a) / n_prev, n=n_prev + sigmoid(i))
    text = _flat_text(cell)
    assert "(3) h = tanh_a/n_prev" in text  # the equation that divides, as numbered
    assert ("Equation (3) divides by zero where n_prev is zero, as in the kernel's default initial state (zeros, "
            "for None): give its forward an initial n that is nonzero.") in text
    assert "divides by zero" not in (DERIVATIONS / "lstm.md").read_text()

def test_a_division_by_a_parameter_that_zero_makes_zero_is_said_as_a_states_is():
    """init_params draws every parameter around zero: the document says which equation divides by
    zero there, as it does of one that zero states make zero, each sentence once."""
    cell = Cell("poles", title="Divisions by a state and by time constants")
    x, h_prev, n_prev = cell.input("x"), cell.state("h"), cell.state("n", positive=True)
    tau, mu = cell.param("tau"), cell.param("mu")
    a, i = cell.affine("W", [x, h_prev], blocks=["a", "i"])
    cell.update(h=h_prev + (tanh(a) / n_prev - h_prev) / (tau * mu), n=n_prev + sigmoid(i))
    text = _flat_text(cell)
    assert ("Equation (3) divides by zero where n_prev is zero, as in the kernel's default initial state (zeros, "
            "for None): give its forward an initial n that is nonzero. Equation (3) divides by zero where tau and mu "
            "are zero, and the kernel's init_params draws them uniform around zero, bringing steps near that pole, "
            "where outputs and gradients grow without bound: give its forward parameters with tau and mu away from "
            "zero.") in text
    assert "init_params draws" not in (DERIVATIONS / "lstm.md").read_text()


# -- backpropagation through time, as one listing ---------------------------------------------


def _listing(markdown):
    """The lines of a document's listing, its one ```text block."""
    return markdown.split("\n```text\n")[1].split("\n```\n")[0].split("\n")


def _cited(lines):
    """The equation numbers a listing cites at the heads of its lines, a range (8) to (17) in full."""
    numbers = []
    heads = r"^(?:forward, t = 1, \.\.\., T: |    )\((\d+)\)(?: (?:to|and) \((\d+)\))?"
    for m in re.finditer(heads, "\n".join(lines), re.M):
        numbers += range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1)
    return numbers


def test_the_steps_past_a_sequences_end_are_said_as_the_kernel_counts_them():
    """Sequence j's rows keep their state at every step t > lengths[j], counting steps from 1 as the
    documents do, and its final state is that of step lengths[j] (the initial state for 0): so the
    rnn kernel runs, on lengths 3, 1 and 0 in 4 steps."""
    from lstm_derive.kernels import rnn

    rng = np.random.default_rng(0)
    params, lengths = rnn.init_params(2, 3), [3, 1, 0]
    state = (rng.standard_normal((3, 3)),)
    ys, (final,), _ = rnn.forward(params, rng.standard_normal((4, 3, 2)), state, lengths=lengths)
    outputs = np.concatenate([state[0][np.newaxis], ys])  # outputs[t]: the state after step t, 0 the initial
    for j, n in enumerate(lengths):
        assert all(np.array_equal(outputs[t, j], outputs[n, j]) for t in range(n + 1, 5))
        if n:  # step lengths[j] itself runs
            assert not np.array_equal(outputs[n, j], outputs[n - 1, j])
        assert np.array_equal(final[j], outputs[n, j])
    for name, (markdown, _) in DOCUMENTS.items():
        text = " ".join(markdown.split())
        assert ("sequence j ends after step lengths[j] and keeps its state: for its rows every step t > lengths[j] "
                "is the identity") in text and "the final state is that of step lengths[j] (the initial state for 0)" in text


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_bptt_listing_cites_every_equation_once_in_order(name):
    markdown = DOCUMENTS[name][0]
    section = markdown.split("\n## Backpropagation through time\n")[1].split("\n## ")[0]
    assert section.count("```text") == 1
    assert _cited(_listing(markdown)) == sorted(document_numbers(markdown))
    assert all(len(line) <= 88 and line.isascii() for line in _listing(markdown))  # verbatim in LaTeX
    assert "\\begin{verbatim}\nforward, t = 1, ..., T: (1)" in DOCUMENTS[name][1]


def test_the_bptt_listings_of_the_lstm_and_the_gru():
    """The forward pass keeps what the backward equations read; the loop names the derivation's
    equations and adjoints in its order; out come the sums and the initial state's gradients."""
    assert _listing((DERIVATIONS / "lstm.md").read_text()) == [
        "forward, t = 1, ..., T: (1) to (7), then h, c = h_prev, c_prev for the rows j with t >",
        "                        lengths[j]; keep x, h_prev, c_prev, i, f, g, o, tanh(c)",
        "dh_next, dc_next = dstate, the gradient of l_final (zero by default)",
        "dW_x, dW_h, db = 0",
        "for t = T, ..., 1:",
        "    dy = dys[t-1], the gradient of l(t)",
        "    (8) to (17): dh, dc, do, dg, df, di, da_i, da_f, da_g, da_o",
        "    (18) and (19): dh_prev, dc_prev",
        "    for the rows j with t > lengths[j], where the step is the identity:",
        "        dh_prev, dc_prev = dy + dh_next, dc_next",
        "        da_i, da_f, da_g, da_o = 0",
        "    (20): dx of step t",
        "    (21) to (23): add step t's terms to dW_x, dW_h, db",
        "    dh_next, dc_next = dh_prev, dc_prev",
        "return dx, dW_x, dW_h, db, and dh_prev, dc_prev of step 1: the initial state's gradients"]
    gru = _listing((DERIVATIONS / "gru.md").read_text())
    assert gru[:2] == ["forward, t = 1, ..., T: (1) to (9), then h = h_prev for the rows j with t > lengths[j];",
                       "                        keep x, h_prev, a_hn, r, z, n"]
    assert gru[6:8] == ["    (10) to (22): dh, dn, da_n, dz, da_z, dr, da_r, da_hr, da_hz, da_hn, da_xr, da_xz,",
                        "                  da_xn"]  # a long line goes on under its text
    assert gru[8:15] == ["    (23): dh_prev", "    for the rows j with t > lengths[j], where the step is the identity:",
                         "        dh_prev = dy + dh_next", "        da_xr, da_xz, da_xn, da_hr, da_hz, da_hn = 0",
                         "    (24): dx of step t",
                         "    (25) to (28): add step t's terms to dW_x, db_x, dU_h, db_h", "    dh_next = dh_prev"]
    assert gru[-1] == "return dx, dW_x, db_x, dU_h, db_h, and dh_prev of step 1: the initial state's gradient"
    assert ("The kernel runs the same loop but leaves (24) to (28) until after it, then computes them for all "
            "steps at once") in (DERIVATIONS / "gru.md").read_text()


def _ended_lines(listing):
    """The assignments a listing makes for the rows of a sequence that has ended, {names: values}."""
    at = listing.index("    for the rows j with t > lengths[j], where the step is the identity:")
    pairs = [line.strip().split(" = ") for line in listing[at + 1:at + 3]]
    return {tuple(lhs.split(", ")): rhs for lhs, rhs in pairs}


@pytest.mark.parametrize("name", CELLS)
def test_the_bptt_listing_runs_a_step_past_a_sequences_end_as_the_kernel_does(name):
    """Sequence 0 ends after step 1 of 2. By the listing, its step 2 carries back what its lines say
    (dh_prev = dy + dh_next, ...) and adds nothing to the gradients: so the kernel's gradients for the
    batch are those of sequence 0 run for step 1 alone, from the carries the listing gives, plus those
    of sequence 1 run alone."""
    kernel = importlib.import_module(f"lstm_derive.kernels.{name}")
    listing = _listing((DERIVATIONS / f"{name}.md").read_text())
    ended = _ended_lines(listing)
    carries = next(rhs for lhs, rhs in ended.items() if lhs == tuple(f"d{s}_prev" for s in kernel.STATES))
    assert listing[0].startswith("forward, t = 1, ..., T: (1) ") and (
        f", then {', '.join(kernel.STATES)} = {', '.join(s + '_prev' for s in kernel.STATES)} for the rows j with "
        "t > lengths[j]; keep ") in " ".join(line.strip() for line in listing[:2])
    rng = np.random.default_rng(0)
    params, (D, H) = kernel.init_params(2, 3, seed=1), (2, 3)
    x, dys = rng.standard_normal((2, 2, D)), rng.standard_normal((2, 2, H))
    dstate = tuple(rng.standard_normal((2, H)) for _ in kernel.STATES)

    def run(x, dys, dstate, lengths=None):
        _, _, cache = kernel.forward(params, x, None, lengths=lengths)
        return kernel.backward(params, cache, dys, dstate)

    grads, dx, dstate0 = run(x, dys, dstate, lengths=[1, 2])
    names = {"dy": dys[1, :1], **{f"d{s}_next": d[:1] for s, d in zip(kernel.STATES, dstate)}}
    passed = tuple(eval(text, {}, names) for text in carries.split(", "))
    short = run(x[:1, :1], dys[:1, :1], passed)
    alone = run(x[:, 1:], dys[:, 1:], tuple(d[1:] for d in dstate))
    for p in kernel.PARAMS:
        np.testing.assert_allclose(grads[p], short[0][p] + alone[0][p], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(dx[1, 0], 0)
    np.testing.assert_allclose(dx[0, :1], short[1][0], rtol=1e-12, atol=1e-14)
    for ours, mine, other in zip(dstate0, short[2], alone[2]):
        np.testing.assert_allclose(ours, np.concatenate([mine, other]), rtol=1e-12, atol=1e-14)


def test_the_bptt_listing_keeps_what_changes_with_the_step():
    """A call no node names is kept as itself; a parameter, a let of it alone and a call of a number
    are the same at every step; a peephole's shares come in the loop, before dx."""
    cell = Cell("leaky", title="A leak of a parameter")
    x, h_prev = cell.input("x"), cell.state("h")
    (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
    lam = cell.let("lam", sigmoid(cell.param("p")))
    cell.update(h=lam * h_prev + (1 - lam) * tanh(a) * tanh(2) + tanh(h_prev))
    listing = _listing(derivation_markdown(derive(cell), "leaky.py"))
    assert listing[0].startswith("forward, t = 1, ..., T: ") and listing[1].endswith("keep x, h_prev, tanh_a, tanh(h_prev)")
    peephole = _listing((DERIVATIONS / "lstm_peephole.md").read_text())
    assert peephole[1].endswith("; keep x, h_prev, c_prev, i, f, g, c, o, tanh(c)")
    assert peephole[8:13] == ["    (20) to (22): dp_i(t, j), dp_f(t, j), dp_o(t, j)",
                              "    for the rows j with t > lengths[j], where the step is the identity:",
                              "        dh_prev, dc_prev = dy + dh_next, dc_next",
                              "        da_i, da_f, da_g, da_o, dp_i(t, j), dp_f(t, j), dp_o(t, j) = 0",
                              "    (23): dx of step t"]


# -- how to check the kernel --------------------------------------------------------------------


def _recipe(markdown):
    return markdown.split("\n## Gradient check\n\n")[1]


@pytest.mark.parametrize("cell", CELLS)
def test_the_gradient_check_names_the_cells_command_and_kernel(cell):
    recipe = _recipe((DERIVATIONS / f"{cell}.md").read_text())
    for code in (f"`lstm-derive check {cell}`", f"`check_kernel({cell})`",
                 "`from lstm_derive.gradcheck import check_kernel`", f"`from lstm_derive.kernels import {cell}`"):
        assert code in recipe, code
    assert "with central differences and with the complex step, in float64, and the kernel's results in float32" in recipe
    assert "[Check any kernel](../README.md#check-any-kernel), in the README, explains the reports" in recipe
    assert "\n## Check any kernel\n" in (ROOT / "README.md").read_text()  # the link's anchor


def test_the_gradient_check_runs_as_written(capsys):
    """The rnn's recipe: its command passes, and its Python, run as written, returns a report per method."""
    recipe = _recipe((DERIVATIONS / "rnn.md").read_text())
    spans = re.findall(r"`([^`]+)`", recipe)
    assert spans[0] == "lstm-derive check rnn" and cli.main(spans[0].split()[1:]) == 0
    namespace = {}
    exec("\n".join(s for s in spans if s.startswith("from ")), namespace)  # noqa: S102
    reports = eval(next(s for s in spans if s.startswith("check_kernel(")), namespace)  # noqa: S307
    assert [r.method for r in reports] == ["central", "complex", "float32"] and all(r.ok for r in reports)


def test_a_scripts_own_document_checks_it_by_its_file_and_imports_its_kernel_by_name(tmp_path, monkeypatch, capsys):
    (tmp_path / "cells").mkdir()
    shutil.copy(DERIVATIONS / "rnn.py", tmp_path / "cells" / "elman.py")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", "cells/elman.py", "--out", "build"]) == 0
    recipe = _recipe((tmp_path / "build" / "rnn.md").read_text())
    assert recipe.startswith("`lstm-derive check elman.py`, run in the script's folder, gradient-checks this cell's kernel")
    assert "`import rnn` (the kernel's folder first on `sys.path`)" in recipe and "`check_kernel(rnn)`" in recipe
    assert "lstm_derive.kernels" not in recipe and "README.md" not in recipe  # no package's kernel, no link
    assert "Check any kernel, in lstm-derive's README, explains the reports" in recipe
    monkeypatch.chdir(tmp_path / "cells")
    assert cli.main(["check", "elman.py"]) == 0
    monkeypatch.syspath_prepend(str(tmp_path / "build"))
    try:
        from lstm_derive.gradcheck import check_kernel
        import rnn  # the kernel written with the document, not the package's
        assert rnn.__file__ == str(tmp_path / "build" / "rnn.py") and all(r.ok for r in check_kernel(rnn))
    finally:
        sys.modules.pop("rnn", None)


def test_a_deep_unnamed_nest_is_documented_without_expanding_it(monkeypatch):
    """h = tanh of four levels of e = sigmoid(e*b + c)/(1 + softplus(e - h_prev)**2): the prose on the
    carries asks whether a term reads h_prev as a factor, which a nest does not, and expanding it to
    find that out took most of a minute (four levels; more than ten minutes at five)."""
    import sympy

    from lstm_derive.spec import LONG

    cell = Cell("nest", title="A deep unnamed nest")
    x, h_prev = cell.input("x"), cell.state("h")
    a, b, c = cell.affine("W", [x, h_prev], blocks=3)
    e = a
    for _ in range(4):
        e = sigmoid(e * b + c) / (1 + softplus(e - h_prev) ** 2)
    cell.update(h=tanh(e))
    d = derive(cell)
    kernel = emit_kernel(d)
    expanded, expand = [], sympy.expand
    monkeypatch.setattr(sympy, "expand", lambda e, *args, **kw: expanded.append(sympy.count_ops(e)) or expand(e, *args, **kw))
    text = " ".join(derivation_text(d, kernel, "nest.py").split())
    assert "Over many steps, dh_prev compounds" in text
    assert max(expanded, default=0) <= LONG, f"expanded expressions of {sorted(expanded)[-3:]} operations"


def test_derived_terms_read_as_a_person_writes_them(tmp_path):
    """A reciprocal's adjoint over its denominator (dm/n_new, not 1/n_new*dm); a derived sum led
    by a positive term ((q - a_s)*dh, not SymPy's (-a_s + q)*dh); an equation the script leads
    with a negative term keeps its order."""
    text_of(tmp_path, "cell = Cell('ordered', title='A running mean with a skip of a block', output='h')",
            "x, c_prev, n_prev, h_prev = cell.input('x'), cell.state('c'), cell.state('n', positive=True), cell.state('h')",
            "a_f, a_r, a_s, a_q = cell.affine('W', [x, h_prev], blocks=['a_f', 'a_r', 'a_s', 'a_q'])",
            "f, r, q = cell.let('f', sigmoid(a_f)), cell.let('r', sigmoid(a_r)), cell.let('q', tanh(a_q))",
            "c, n = cell.let('c_new', f * c_prev + (1 - f) * q), cell.let('n_new', f * n_prev + 1)",
            "m = cell.let('m', c / n)",
            "cell.update(c=c, n=n, h=cell.let('h_new', -a_s * r + r * q + m))")
    d = derive(load_cell(tmp_path / "written.py"))
    text = " ".join(derivation_text(d).split())
    assert "(12) dc_new = dm ⊙ ∂m/∂c_new + ∂L(t+1)/∂c_new = dm/n_new + dc_next" in text and "1/n_new" not in text
    assert "(14) dr = dh_new ⊙ ∂h_new/∂r = (q - a_s)*dh_new" in text and "-a_s + q" not in text
    assert "(8) h_new = -a_s*r + r*q + m" in text
    markdown = derivation_markdown(d, "ordered.py")
    assert r"= \frac{dm}{n_{\text{new}}} + dc_{\text{next}}" in markdown and r"\frac{1}{n_{\text{new}}}" not in markdown
    assert r"\left(q - a_{s}\right) \odot dh_{\text{new}}" in markdown
    assert r"h_{\text{new}} = - a_{s} \odot r + r \odot q + m" in markdown
