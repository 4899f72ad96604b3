"""From derivation scripts to generated files on disk: loading, writing, checking freshness.

Generated files carry a header that says so. A file without it is never overwritten: a
hand-written file in the way is an error, not a casualty. Writes are atomic (temporary files,
renamed once every one is written), and ``check`` never writes.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import importlib.util
import os
import re
import runpy
import shlex
import stat
import sys
import tempfile
import tokenize
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import SCRIPT_MODULE
from .derive import derive
from .document import derivation_markdown
from .emit import GENERATED_MARK, emit_kernel
from .hints import pythons_suggestion, script_hint
from .spec import Cell, SpecError

__all__ = ["Cells", "GenerationError", "Target", "find_scripts", "load_cell", "targets_for", "stale", "write",
           "import_kernel", "is_kernel_module", "load_kernel_module"]

PACKAGE = Path(__file__).resolve().parent
KERNELS = PACKAGE / "kernels"
HOME = PACKAGE.parent / "derivations"  # the scripts whose kernels the package holds


class GenerationError(RuntimeError):
    """A generated file cannot be written or a script cannot be loaded."""


@dataclass(frozen=True)
class Target:
    """One generated file: where it goes and what it must contain."""

    path: Path
    text: str

    @classmethod
    def sealed(cls, path, text):
        """The target whose text ends with a checksum of what comes before it, so that an edit by hand
        is told from an older generation and not written over (see edited_by_hand)."""
        path, text = Path(path), text if text.endswith("\n") else text + "\n"
        line = CHECKSUM_LINE.format(_digest(text))
        return cls(path, text + (f"<!-- {line} -->" if path.suffix == ".md" else f"# {line}") + "\n")


# A generated file's last line. Without it, a file edited by hand looks like one a script's change
# made stale, and the next run would write over the edits.
CHECKSUM_LINE = "lstm-derive's checksum of the text above, which an edit by hand leaves wrong: {}"
_CHECKSUM = re.compile(r"^(?:# |<!-- )" + re.escape(CHECKSUM_LINE).replace(r"\{\}", "([0-9a-f]{16})") + r"(?: -->)?$",
                       re.MULTILINE)


def _digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def edited_by_hand(text):
    """Whether a generated file's text is no longer what lstm-derive wrote: its checksum line's
    checksum is not that of the text above it, or text follows the line. A file without the line
    (written before files had one, or whose line was removed on purpose) is taken as written."""
    found = list(_CHECKSUM.finditer(text))
    if not found:
        return False
    line = found[-1]
    return line.group(1) != _digest(text[:line.start()]) or text[line.end():] not in ("", "\n")


def default_derivations_dir():
    """./derivations if there is one, else the one beside the installed package."""
    here = Path("derivations")  # relative, so that messages name derivations/lstm.py, not its whole path
    return here if here.is_dir() else HOME


def home_scripts():
    """How messages name the package's own scripts: their folder, or, in an installation that has
    none beside it (pip install . copies no derivations/), that fact."""
    return f"the scripts in {HOME}" if HOME.is_dir() else "its own cells, whose scripts come with a clone"


def is_home(script):
    """Whether a script is one of the package's own, whose kernel lstm_derive/kernels/ holds."""
    return Path(script).resolve().parent == HOME.resolve()


def shown(path):
    """A path as the user would type it here: relative to the working directory where it lies under it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


class Cells:
    """The cells of one command's scripts, each script run once however many of the command's steps
    read its cell (the package's index, the search for two scripts of one cell name, a cell looked
    up by its name, the derivation): a script that prints says it once, and no two steps can see
    two cells of one script."""

    def __init__(self):
        self._runs = {}  # resolved path -> the Cell the script built, or the error that stopped it

    def cell(self, script) -> Cell:
        """The script's cell; where the script failed, its error, raised again."""
        key = Path(script).resolve()
        if key not in self._runs:
            try:
                self._runs[key] = load_cell(script)
            except (SpecError, GenerationError) as error:
                self._runs[key] = error
        run = self._runs[key]
        if isinstance(run, Exception):
            raise run
        return run

    def by_name(self, scripts):
        """cell name -> the scripts that build it, in their order; a script that fails is passed
        over here: wherever its cell is wanted, cell() raises its error."""
        named = {}
        for script in scripts:
            with contextlib.suppress(SpecError, GenerationError):
                named.setdefault(self.cell(script).name, []).append(script)
        return named


def home_cells(cells=None):
    """The names of the cells of the package's own scripts; a script that fails is an error, and so
    are two scripts of one cell name, as the kernel of one would be written over the other's."""
    cells = cells or Cells()
    scripts = find_scripts(shown(HOME)) if HOME.is_dir() else []
    for script in scripts:
        cells.cell(script)
    named = cells.by_name(scripts)
    for name, same in named.items():
        if len(same) > 1:
            raise GenerationError(f"{same[0]} and {same[1]} both build the cell '{name}', whose kernel and "
                                  f"document each would write over the other's; rename one cell")
    return list(named)


def find_scripts(directory):
    directory = Path(directory)
    if directory.is_file():
        raise GenerationError(f"{directory}: is a file, not a directory of derivation scripts; give a script "
                              "after the command (lstm-derive check my_cell.py), a directory before it")
    if not directory.is_dir():
        raise GenerationError(f"{directory}: no such directory of derivation scripts")
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def load_cell(path) -> Cell:
    """Runs a derivation script (not as __main__) and returns the Cell it builds."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such derivation script")
    _check_encoding(path)
    with _as_python_runs(path, hint=True):
        namespace = runpy.run_path(str(path), run_name=SCRIPT_MODULE)
    cells = [v for v in namespace.values() if isinstance(v, Cell)]
    if not cells and _is_generated(path):
        raise SpecError(f"{path} is a kernel that lstm-derive generated, not a derivation script; "
                        "give the script named in its first line (`check` takes the kernel itself)")
    if len(cells) != 1:
        missing = [f"{n}()" for n in ("forward", "backward") if not callable(namespace.get(n))]
        why = (f"it has no {' and no '.join(missing)}" if missing else
               "its forward() and backward() come only through import *: import them by name")
        kernel = (f" (a kernel module? {why}; `check` takes one whose forward() and backward() are defined or "
                  "imported by name at its top level; lstm_derive.gradcheck.check_kernel takes any object with "
                  "the interface)" if not cells and len(missing) < 2 else
                  f" (a helper that scripts import? name it _{path.name}: a folder's run passes over _*.py)"
                  if not cells and not path.name.startswith("_") else "")
        raise SpecError(f"{path}: a derivation script builds exactly one Cell; this one builds {len(cells)}{kernel}")
    cell = cells[0]
    cell.source = str(path)
    return cell


@contextlib.contextmanager
def _as_python_runs(path, doing="", hint=False):
    """Runs a file's code as `python` has it, its folder first on sys.path (the helpers beside it
    import); its own mistake (sys.exit too) becomes a SpecError naming its line, what it was doing
    and, for a derivation script (hint), what the error most likely means."""
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    except SpecError:
        raise
    except (Exception, SystemExit) as error:
        what = error.msg if isinstance(error, SyntaxError) else f"{error}{pythons_suggestion(error)}"  # msg: str repeats file, line
        told = script_hint(error) if hint else ""
        raise SpecError(f"{path}:{_script_line(error, path)}: {doing}{type(error).__name__}: {what}"
                        f"{'; ' + told if told else ''}") from error
    finally:
        sys.path.remove(folder)


def _check_encoding(path):
    """A script Python itself would refuse to read (not UTF-8, and no coding line saying otherwise)
    is refused too: runpy alone lets a stray byte in a comment pass."""
    data = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(iter(data.splitlines(True)).__next__)
        data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError) as error:  # a bad coding line, or bytes that are not text
        start = getattr(error, "start", 0)
        line = data[:start].count(b"\n") + 1 if start else getattr(error, "lineno", None) or 1
        raise SpecError(f"{path}:{line}: not UTF-8 text, and no coding line declares another encoding "
                        "(Python would not run it either)") from None


def _script_line(error, path):
    if isinstance(error, SyntaxError) and error.lineno:  # raised compiling the script: no frame of it
        return error.lineno
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return frames[-1].lineno if frames else "?"


def targets_for(script, out=None, warn=None, cells=None):
    """The derivation of a script and the files it generates: its kernel, then its document.

    Without ``out`` the kernel goes to lstm_derive/kernels/ and the document beside the
    script, which must be one of the package's own (in derivations/); with ``out`` both go
    there, and their headers say so (the script and the command as run from the script's
    directory). ``warn`` is called with each of the cell's warnings, before it is derived; ``cells``,
    the command's Cells, runs the script unless an earlier step of the command ran it.
    """
    cell = (cells or Cells()).cell(script)
    if out is None and not is_home(script):
        raise GenerationError(f"{script}: lstm_derive/kernels/ holds only the kernels of {home_scripts()}; "
                              "write this cell's kernel and document elsewhere with --out DIR")
    d = derive(cell, warn)
    script = Path(script)
    if out is None:
        source = f"{HOME.name}/{script.name}"
        kernel = emit_kernel(d, source, document=f"{HOME.name}/{cell.name}.md")  # first: the document cites its lines
        return d, [Target.sealed(KERNELS / f"{cell.name}.py", kernel),
                   Target.sealed(script.parent / f"{cell.name}.md", derivation_markdown(d, source, kernel))]
    out = Path(out)
    # paths as seen from the script's directory, whichever directory the command ran in: the
    # files are the same for `generate cells/mgu.py --out cells/build` and `generate mgu.py --out build`
    out_from_script = Path(os.path.relpath(out.resolve(), script.resolve().parent)).as_posix()
    command = f"lstm-derive generate {shlex.quote(script.name)} --out {shlex.quote(out_from_script)}"  # pasted into a shell
    kernel = emit_kernel(d, script.name, command, document=f"{cell.name}.md beside it")
    script_from_out = Path(os.path.relpath(script.resolve(), out.resolve())).as_posix()
    document = derivation_markdown(d, script.name, kernel, kernel_path=f"{cell.name}.py",
                                   script_path=script_from_out, command=command)
    return d, [Target.sealed(out / f"{cell.name}.py", kernel), Target.sealed(out / f"{cell.name}.md", document)]


def package_index(cell_names):
    """lstm_derive/kernels/__init__.py: the list of generated kernels."""
    names = ", ".join(f'"{n}"' for n in sorted(cell_names))
    text = (
        f"# {GENERATED_MARK} (lstm-derive generate). Do not edit by hand.\n"
        '"""Generated NumPy kernels, one module per cell in derivations/.\n\n'
        "Every module has the same interface: CELL, INPUT, STATES, OUTPUT, PARAMS, param_shapes(D, H),\n"
        "init_params(D, H, seed=, scale=, dtype=), forward(params, x, state, lengths) -> (ys, final_state,\n"
        "cache), backward(params, cache, dys, dstate) -> (grads, dx, dstate0), step_forward and step_backward.\n"
        '"""\n\n'
        f"CELLS = ({names}{',' if len(cell_names) == 1 else ''})\n"
    )
    return Target.sealed(KERNELS / "__init__.py", text)


EDITED = ("{} was edited by hand after lstm-derive wrote it (its last line's checksum no longer matches its "
          "text), and lstm-derive does not {}: move the edits into the script that generates it, or "
          "delete the file to have it written again")


def orphans(paths):
    """Generated kernels and documents that no script generates any more (a script was removed),
    paths being those of every file the scripts generate; one edited by hand since is an error."""
    wanted = {Path(p).resolve() for p in paths}
    found = sorted(KERNELS.glob("*.py")) + sorted(HOME.glob("*.md"))
    gone = [p for p in found if p.resolve() not in wanted and _is_generated(p)]
    for p in gone:
        if edited_by_hand(existing(p)):
            raise GenerationError(EDITED.format(shown(p), "remove it, though no script generates it any more"))
    return gone


def _is_generated(path):
    text = existing(path)
    return text is not None and _has_header(text)


def _has_header(text):
    return GENERATED_MARK in "".join(text.splitlines(True)[:2])


def existing(path):
    """The text of the file at path; None where there is none; "" where it is no UTF-8 text (no
    generated file, so one in the way). A directory or an unreadable file is an error."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return ""
    except OSError as error:  # a directory of that name, no permission
        raise GenerationError(f"{path}: cannot read it ({error.strerror or error}); move it away") from error


def stale(targets, shown=str):
    """(path, unified diff) for every target whose file differs from what it must contain; the
    diff names the file as shown(path) gives it."""
    out = []
    for t in targets:
        old = existing(t.path)
        if old != t.text:
            on_disk = ("missing" if old is None else "on disk: empty or not UTF-8 text" if old == "" else
                       "on disk, edited by hand" if edited_by_hand(old) else "on disk")
            diff = difflib.unified_diff((old or "").splitlines(True), t.text.splitlines(True),
                                        f"{shown(t.path)} ({on_disk})", f"{shown(t.path)} (generated)")
            out.append((t.path, "".join(diff)))
    return out


def write(targets):
    """Writes the targets that changed; returns their paths. A file in the way (one that was not
    generated) stops the whole write before anything is written, and so does a file that cannot
    be written (a full disk): every new text is written beside its file first, and put in place
    once all are, so that no kernel is left newer than its document."""
    on_disk = {t.path: existing(t.path) for t in targets}
    changed = [t for t in targets if on_disk[t.path] != t.text]
    for t in changed:
        old = on_disk[t.path]
        if old is not None and not _has_header(old):
            raise GenerationError(f"{shown(t.path)} exists and was not generated by lstm-derive (it has no "
                                  "generated header); move it away, or delete it if it is a generated file edited by hand")
        if old is not None and edited_by_hand(old):
            raise GenerationError(EDITED.format(shown(t.path), "write over it"))
    written = []
    try:
        for t in changed:
            written.append((_written_beside(t), t.path))
        for tmp, path in written:
            _put_in_place(tmp, path)
    except BaseException:
        for tmp, _ in written:
            with contextlib.suppress(FileNotFoundError):  # those put in place already
                os.unlink(tmp)
        raise
    return [t.path for t in changed]


def _put_in_place(tmp, path):
    try:
        os.replace(tmp, path)
    except OSError as error:
        raise GenerationError(f"{shown(path)}: cannot write it ({error.strerror or error})") from error


def _written_beside(target):
    """A temporary file beside the target's file, holding its text; a GenerationError if it cannot be
    written (--out names a file, a directory without permission, a full disk), which names the file
    as the user knows it, and the folder in the way if that is what failed, not the temporary file."""
    try:
        return _write_temporary(target.path, target.text)
    except OSError as error:
        beside = error.filename is None or Path(error.filename).parent == target.path.parent
        where = "" if beside else f": {error.filename}"
        raise GenerationError(f"{shown(target.path)}: cannot write it ({error.strerror or error}{where})") from error


def _write_temporary(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _file_mode(path))  # mkstemp makes it 0600: a kernel is for copying and sharing
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _file_mode(path):
    """The mode a replaced file had, or that of a new file under the umask (0644 under 022)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def is_kernel_module(path):
    """Whether the file is a kernel module (forward() and backward() defined, imported or assigned
    at its top level, as a generated kernel has them, or one written or copied into a project):
    `check` judges it as it stands, where it runs a script to generate one."""
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        return False
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):  # load_cell names the line
        return False
    return {"forward", "backward"} <= _top_level_names(tree)


def _top_level_names(tree):
    """The names a module's own statements bind at its top level (not those of a star import),
    also in a top-level if, try or with (forward defined under `if HAVE_NUMBA:`) and by unpacking
    (forward, backward = impl.forward, impl.backward)."""
    names = set()
    for node in _top_level_statements(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _top_level_statements(body):
    """The statements of body, and of the if, try and with blocks in it, at any depth of those, but
    for `if __name__ == "__main__":`, which runs only as a program (a derivation script's explain(),
    say, or its own import of a kernel to try)."""
    for node in body:
        yield node
        if not isinstance(node, (ast.If, ast.Try, ast.With)) or _runs_as_a_program(node):
            continue
        blocks = [getattr(node, part, []) for part in ("body", "orelse", "finalbody")]
        for block in blocks + [handler.body for handler in getattr(node, "handlers", [])]:
            yield from _top_level_statements(block)


def _runs_as_a_program(node):
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test)


def load_kernel_module(path):
    """A kernel module (written by hand, or generated and copied), imported as `python` would (its
    helpers beside it import); a SpecError naming its line if importing it raises."""
    path = Path(path)
    with _as_python_runs(path, doing="importing this kernel module raised "):
        return import_kernel(path)


def import_kernel(path):
    """Imports a kernel module from its file, fresh (not from the module cache)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"lstm_derive_kernel_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
