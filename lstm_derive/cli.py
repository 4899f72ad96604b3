"""Derive, generate and gradient-check recurrent cells, all of them or one step of that.

    lstm-derive                                  derive, generate and check every cell in derivations/
    lstm-derive generate [CELL ...] [--check]    (re)write kernels and documents, or report stale ones
    lstm-derive generate SCRIPT --out DIR        a cell of your own, outside this repository
    lstm-derive check [CELL ...] [--problems N]  gradient-check kernels, element by element (and
                      [--steps T] [--scale S]    in float32 against float64)
                      [--methods M ...]
    lstm-derive show CELL                        print a cell's derivation

A CELL is a script's path, or the name of a script in derivations/ (lstm for derivations/lstm.py)
or of the cell one of them builds; --derivations DIR, before the command, names another folder of
scripts. `check` also takes a kernel module written by hand (forward() and backward() at its top
level), checked as it stands.

Exit status: 0 all checked and fresh; 1 a check failed or a generated file is stale; 2 a script
or an argument is wrong (a cell not derived, a file in the way), or a file cannot be written or
removed; 130 interrupted; 141 the reader of the output went away.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import __version__, terminal

# NumPy and SymPy take most of a second to import: the modules that import them are loaded by main()
# once the arguments are parsed, so that --help, --version and a usage error answer at once, and a
# Ctrl-C while they load ends as one at any other moment does, not in a traceback from an import.
gen = SpecError = derivation_latex = derivation_text = None


def _load(command):
    """Imports the modules that import SymPy, and for the commands that check kernels, NumPy."""
    global gen, SpecError, derivation_latex, derivation_text
    from . import document, generate, spec
    gen, SpecError = generate, spec.SpecError
    derivation_latex, derivation_text = document.derivation_latex, document.derivation_text
    if command in (None, "check"):
        from . import gradcheck  # noqa: F401 - NumPy loaded where main() holds a Ctrl-C back, not at a first check


@contextlib.contextmanager
def _interrupts_held():
    """A Ctrl-C held back until the block ends, then raised: during NumPy's import, its C code turns
    one into an ImportError (PyCapsule_Import could not import module "datetime")."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


# The checks the summary runs: a moderate and a saturating weight scale, the first with the backward
# pass's spans cut to 3 steps, so that a short problem crosses a span's end (of 3 steps, then 1) as a
# long sequence does, and with sequences of 4, 1 and 0 steps in one batch (forward()'s lengths); the
# second's pre-activations reach 15 (rnn) to 35 (lstm), where a derivative that differs only in
# saturation (1 - y**2 floored at 1e-6 against vanishing gradients) shows: at scale 3 they stayed below 6;
# every size but T at 1, where a slip of broadcasting or of a squeezed axis shows; and 12 steps, where
# a gradient carried back over too few of them (a tutorial's BPTT truncated at 4) shows.
CHECKS = [dict(T=4, B=3, D=3, H=4, seed=0, scale=0.5, span=3, lengths=(4, 1, 0)),
          dict(T=3, B=2, D=3, H=3, seed=1, scale=8.0),
          dict(T=2, B=1, D=1, H=1, seed=2, scale=1.0),
          dict(T=12, B=2, D=2, H=2, seed=3, scale=1.0)]


def checks(n, steps=None, scale=None):
    """CHECKS, then problems drawn at random (the same ones every run): sizes from 1, weight scales
    from 0.1 to 3, and half of them with sequences of lengths from 0 to T, for `check --problems N`.
    steps: T of every problem (`--steps`), where a sequence of all T steps keeps all of them;
    scale: the weight scale of every problem (`--scale`)."""
    import numpy as np

    drawn = []
    for seed in range(len(CHECKS), n):
        rng = np.random.default_rng(seed)
        T, B, D, H = (int(rng.integers(1, top + 1)) for top in (5, 3, 4, 5))
        T = steps or T
        drawn.append(dict(T=T, B=B, D=D, H=H, seed=seed, scale=float(rng.choice([0.1, 0.5, 1.0, 2.0, 3.0]))))
        if rng.random() < 0.5:
            drawn[-1]["lengths"] = tuple(int(n) for n in rng.integers(0, T + 1, B))
    fixed = [c if steps is None else _with_steps(c, steps) for c in CHECKS]
    return [c if scale is None else {**c, "scale": scale} for c in (fixed + drawn)[:n]]


def _fixed(key):
    """The fixed checks' values of one setting, in words for --help: "0.5, 8, 1 and 1"."""
    values = [f"{c[key]:g}" for c in CHECKS]
    return f"{', '.join(values[:-1])} and {values[-1]}"


def _with_steps(config, steps):
    """A fixed check run over another number of steps: a sequence that ran every step still does."""
    lengths = config.get("lengths")
    if lengths is None:
        return {**config, "T": steps}
    return {**config, "T": steps, "lengths": tuple(steps if n == config["T"] else min(n, steps) for n in lengths)}


def main(argv=None):
    try:
        with _interrupts_held():
            args = _arguments(argv)
            _load(args.command)
        return _run(args)
    except KeyboardInterrupt:  # here, not in _run: one while the modules load leaves _run's gen undefined
        print("lstm-derive: interrupted", file=sys.stderr)
        return 130


def _run(args):
    try:
        return args.run(args)
    except BrokenPipeError:  # `lstm-derive check | head`: end quietly, scratch directories removed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141
    except OSError as error:  # stdout on a full disk, say
        if error.filename is not None or error.errno not in (errno.ENOSPC, errno.EIO, getattr(errno, "EDQUOT", None)):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"lstm-derive: cannot write the output ({error.strerror or error})", file=sys.stderr)
        return 1
    except (SpecError, gen.GenerationError) as error:
        print(f"lstm-derive: {error}", file=sys.stderr)
        return 2


def _arguments(argv):
    """The parsed arguments; a usage error (SystemExit) where argparse would not say what is wrong."""
    terminal.in_ascii_where_needed(sys.stdout, sys.stderr)  # the derivation's ∂, ⊙, σ: not in every code page
    parser = _parser()
    words = sys.argv[1:] if argv is None else list(argv)
    command = next((i for i, word in enumerate(words) if word in ("generate", "check", "show")), len(words))
    if any(word.split("=")[0] == "--derivations" for word in words[command + 1:]):
        parser.error("--derivations goes before the command: lstm-derive --derivations DIR check ...")
    script = next((w for w in words[:command] if w.endswith(".py")), None)
    if script is not None and command == len(words):  # lstm-derive my_cell.py: the command left out
        parser.error(f"a script is given to a command: lstm-derive check {script} (or show {script}, "
                     f"generate {script} --out DIR)")
    args = parser.parse_args(argv)
    if args.command == "check":
        args.methods = _methods(parser, args.methods)
    return args


def _methods(parser, asked):
    """The methods `check` runs: those of --methods, or every one. --methods takes every word after
    it, so a cell given there reads as a method, and is told to go before it."""
    from .gradcheck import DEFAULT_METHODS

    stray = [m for m in asked or () if m not in DEFAULT_METHODS]
    if stray:
        parser.error(f"--methods takes the words after it, and {stray[0]!r} is no method ({', '.join(DEFAULT_METHODS)}): "
                     "give the cells before it (lstm-derive check my_cell.py --methods central complex)")
    return list(asked or DEFAULT_METHODS)


# Each command's --help: what it does, then examples (each runs as it stands, given its files).
ABOUT = {
    "generate": ("""Writes each script's kernel (a NumPy module) and its Markdown document. Those of the scripts in
derivations/ go into the package, the kernels to lstm_derive/kernels/ and the documents beside
their scripts, with the package's list of kernels: the files of every script or of none. A script
from elsewhere is written with --out alone. --check writes nothing.""", """examples:
  lstm-derive generate                            every script in derivations/
  lstm-derive generate lstm --check               are lstm's kernel and document fresh?
  lstm-derive generate my_cell.py --out build     build/<cell>.py and build/<cell>.md
  lstm-derive --derivations my_cells generate --out build

Exit status: 0 written or fresh; 1 a file is stale (--check); 2 a script or an argument is wrong,
or a file is in the way or cannot be written; 130 interrupted."""),
    "check": ("""Derives each cell and emits its kernel into a scratch directory (nothing is written), then
compares every element of its gradients with central differences and the complex step, and its
float32 run with its float64 one, on each problem. A kernel module (forward() and backward() at
its top level) is checked as it stands.""", """examples:
  lstm-derive check                               every cell in derivations/
  lstm-derive check lstm gru --problems 50
  lstm-derive check my_cell.py --steps 20 --scale 0.1
  lstm-derive check my_kernel.py --methods central complex

Exit status: 0 every check passed; 1 a check failed; 2 a script or an argument is wrong;
130 interrupted."""),
    "show": ("""Prints a cell's derivation: its forward equations, then each gradient, step by step, as text for
the terminal, or as the Markdown document that generate writes, or as LaTeX.""", """examples:
  lstm-derive show lstm
  lstm-derive show lstm --markdown
  lstm-derive show my_cell.py --latex"""),
}


def _about(command):
    description, epilog = ABOUT[command]
    return dict(description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def _parser():
    parser = argparse.ArgumentParser(prog="lstm-derive", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--derivations", type=Path, default=None, metavar="DIR",
                        help="directory of derivation scripts, given before the command: every *.py in it "
                             "but those named _*.py (helpers) builds one cell (default: ./derivations if "
                             "there is one, else the one beside the package in a clone)")
    parser.add_argument("--version", action="version", version=f"lstm-derive {__version__}")
    parser.set_defaults(run=run_all)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("generate", help="write kernels and documents from derivation scripts", **_about("generate"))
    p.add_argument("scripts", nargs="*", type=Path,
                   help="scripts, or cells of derivations/ by name (default: every script in derivations/)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write the kernel and document of each script here (default: into the package, for "
                        "the scripts of derivations/ only)")
    p.add_argument("--check", action="store_true", help="write nothing; show a diff and fail if a file is stale")
    p.set_defaults(run=run_generate)

    p = sub.add_parser("check", help="gradient-check kernels against central differences and the complex step, "
                                     "and their float32 run against their float64 one", **_about("check"))
    p.add_argument("cells", nargs="*", help="cell names, scripts or kernel modules (default: every cell)")
    p.add_argument("--problems", type=_positive, default=len(CHECKS), metavar="N",
                   help=f"problems per cell (default {len(CHECKS)}: a moderate and a saturating weight scale, "
                        "every size but T at 1, and 12 steps; "
                        "more are drawn at random, the same every run)")
    p.add_argument("--steps", type=_positive, default=None, metavar="T",
                   help=f"time steps of every problem (default: {_fixed('T')}, and 1 to 5 for those drawn); more find "
                        "a wrong carry across a chunk or span of a hand-written kernel, at a cost that grows as T^2")
    p.add_argument("--scale", type=positive_number, default=None, metavar="S",
                   help=f"weight scale of every problem, the weights uniform in [-S, S] (default: {_fixed('scale')}, "
                        "and 0.1 to 3 for those drawn); a smaller one tells a cell that overflows or a chaotic "
                        "recurrence from a wrong gradient")
    p.add_argument("--methods", nargs="+", metavar="METHOD",
                   help="central, complex, float32 (default: all three; a kernel for float64 alone: central complex)")
    p.set_defaults(run=run_check)

    p = sub.add_parser("show", help="print a cell's derivation", **_about("show"))
    p.add_argument("cell", help="a cell name or a script")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="print the Markdown document instead of the text")
    form.add_argument("--latex", action="store_true", help="print a LaTeX document instead of the text")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="for a script of your own: show it as `generate SCRIPT --out DIR` writes it, its "
                        "links and header right for DIR (default: build)")
    p.set_defaults(run=run_show)
    return parser


def _positive(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return n


def positive_number(text):
    """An argparse type: a finite number above 0 (check's --scale, the examples' learning rates)."""
    try:
        x = float(text)
    except ValueError:
        x = 0.0
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
    return x


def _directory(args, cell=None):
    """The derivations directory; cell: the name a command looks up in it."""
    directory = args.derivations or gen.default_derivations_dir()
    if not args.derivations and not directory.is_dir():  # installed from a wheel: the scripts are in a clone
        raise SpecError("no derivations/ here, and this installation has none beside it (the scripts come "
                        f"with a clone: pip install -e . there); {_without_derivations(args.command, cell)}")
    return directory


def _without_derivations(command, cell):
    """What a command can be given where there is no derivations/: the main job takes a folder
    alone; `check` takes the installed kernel of a packaged cell by its path."""
    kernel = gen.KERNELS / f"{cell}.py"
    if command == "check" and cell and kernel.is_file():
        return f"the installed kernel of {cell} is checked by its path: lstm-derive check {shlex.quote(str(kernel))}"
    if command is None:
        return "give a folder of scripts: lstm-derive --derivations DIR"
    return "give --derivations DIR, or a script"


def _scripts(args, cells, names=()):
    """The scripts (or kernel modules) to run: those named, each once, or every script of the
    derivations directory; a file given by its path needs no such directory. cells: the command's
    gen.Cells, which a cell looked up by its name runs the scripts into."""
    if not names:
        directory = _directory(args)
        scripts = gen.find_scripts(directory)
        if not scripts:
            raise SpecError(f"no derivation scripts in {directory} (every *.py but _*.py builds one cell)")
        return scripts
    chosen = {}  # resolved path -> the path as given: my_cell.py and ./my_cell.py are one script
    for name in names:
        path = _script(args, name, cells)
        chosen.setdefault(path.resolve(), path)
    return list(chosen.values())


def _script(args, name, cells):
    """A script named by its path or, in the derivations directory, by its cell's name."""
    path = Path(name)
    if path.is_dir():
        raise SpecError(f"{name} is a directory; give its scripts one by one, or the directory before "
                        f"the command: lstm-derive --derivations {name} ...")
    if path.suffix == ".py":
        return path
    directory = _directory(args, name)
    by_name = {p.stem: p for p in gen.find_scripts(directory)}
    if path.suffix or len(path.parts) > 1:  # a file, not a cell's name
        raise SpecError(f"{name}: expected a derivation script or kernel module (a .py file), or the name of "
                        f"a cell in {directory} ({', '.join(sorted(by_name)) or 'none there'})")
    if name not in by_name:
        of_cell = _script_of_cell(by_name.values(), name, cells)
        if of_cell:
            return of_cell
        hint = f"; for the script {name}.py, give its path" if Path(f"{name}.py").is_file() else ""
        cells = f"its scripts: {', '.join(sorted(by_name))}" if by_name else "it holds no derivation scripts"
        raise SpecError(f"no cell '{name}' in {directory}: no script {name}.py there ({cells}){hint}")
    return by_name[name]


def _script_of_cell(scripts, name, cells):
    """The script among scripts whose cell is named name, its file named otherwise (a script
    renamed, or its cell); None if none is. A script that fails is passed over here: it says why
    where its cell is wanted."""
    return cells.by_name(scripts).get(name, [None])[0]


# Seconds a script's derivation and emission may take before the command says it is still at it
# (the packaged cells take 0.1 to 0.4 s; a cell of 16 blocks and 15 lets, about 8 s), and then the
# seconds between the lines that give the time so far: a cell that takes minutes is otherwise
# silent from its first line on, as a hang is.
SLOW, SLOW_EVERY = 3.0, 30.0


def _targets_for(script, out, cells):
    """gen.targets_for, and first a warning on stderr for each part of the cell that nothing reads
    and each expression too long to derive quickly; past SLOW seconds, a line that says it is
    still deriving, so that a large cell's silence is not taken for a hang, then its time so far
    every SLOW_EVERY seconds."""
    name = Path(script).name

    def still_deriving(seconds, first):
        said = "(a large cell takes a while)" if first else f"{seconds:.0f} s so far"
        print(f"lstm-derive: still deriving {name} {said} ...", file=sys.stderr, flush=True)

    with _said_while_slow(still_deriving, SLOW, SLOW_EVERY):
        return gen.targets_for(script, out, warn=lambda w: print(f"lstm-derive: warning: {w}", file=sys.stderr,
                                                                 flush=True), cells=cells)


@contextlib.contextmanager
def _said_while_slow(say, first, every):
    """Calls say(seconds, first=True) once the block has run `first` seconds, then say(seconds,
    first=False) every `every` seconds after, until the block ends."""
    done, start = threading.Event(), time.monotonic()

    def notices():
        due = first
        while not done.wait(max(0.0, due - (time.monotonic() - start))):
            say(time.monotonic() - start, first=due == first)
            due += every

    threading.Thread(target=notices, daemon=True).start()
    try:
        yield
    finally:
        done.set()


def _refused(scripts, cells, into_the_package=False):
    """script -> why it is not run: scripts of one run that build cells of one name, whose files
    would be written over each other's. The first of them is run, and the others refused; in the
    main job's run into the package, none is: which one the package should hold is not ours to
    choose. A script that fails is passed over here: its own error says why."""
    refused = {}
    for name, same in cells.by_name(s for s in scripts if not gen.is_kernel_module(s)).items():
        if len(same) > 1:
            refused.update(_neither(name, same) if into_the_package else _all_but_the_first(name, same))
    return refused


def _neither(name, same):
    why = (f"{', '.join(map(str, same[:-1]))} and {same[-1]} {'both' if len(same) == 2 else 'all'} build the cell "
           f"'{name}', whose kernel and document each would write over the other's, so neither is written; rename one cell")
    return dict.fromkeys(same, why)


def _all_but_the_first(name, same):
    return {script: f"{script} and {same[0]} both make {name}.py (cells of the same name, '{name}'); rename one cell"
            for script in same[1:]}


def _in_their_folder(scripts, out, cells):
    """script -> its kernel's path, for the scripts whose --out is their own folder. A script that
    fails is passed over here: its own error says why."""
    if out is None:
        return {}
    kernels = {s: _kernel_path(s, out, cells) for s in scripts if not gen.is_kernel_module(s)}
    return {s: kernel for s, kernel in kernels.items() if kernel is not None and kernel.parent == s.resolve().parent}


def _over_themselves(in_their_folder, out, over_the_folder):
    """script -> why it is refused: a script whose kernel, named after its cell, would be written over
    it; in a run over the folder (over_the_folder), every script there, as the kernels would sit among
    them, where the same command run again fails on them (kernels, no scripts). Told before any is
    derived; several, in one line, which names the folder."""
    over = [s for s, kernel in in_their_folder.items() if over_the_folder or kernel == s.resolve()]
    if len(over) == 1 and in_their_folder[over[0]] == over[0].resolve():
        return {over[0]: f"{out / over[0].name} would be written over {over[0]} itself; choose another --out directory"}
    if len(over) == 1:
        return {over[0]: f"--out {out} is the folder of {over[0]}, and its kernel, {in_their_folder[over[0]].name}, "
                         "would sit among the scripts there, where a run over the folder fails on it (a kernel, no "
                         "script); choose another --out directory"}
    names = ", ".join(s.name for s in over[:3]) + (f" and {len(over) - 3} more" if len(over) > 3 else "")
    why = (f"--out {out} is the folder of the scripts {names}, and the kernel of each, named after its cell, would be "
           "written over it or sit among them, where a run over the folder fails on it; choose another --out directory")
    return dict.fromkeys(over, why)


def _among_the_scripts(script, kernel, out):
    """The warning for a script given by its path whose kernel goes into its own folder."""
    return (f"--out {out} is the folder of {script}, and its kernel, {kernel.name}, goes among the scripts there, "
            f"where a run over the folder (--derivations {out}) fails on it (a kernel, no script); another --out keeps "
            "them apart")


def _kernel_path(script, out, cells):
    try:
        return (out / f"{cells.cell(script).name}.py").resolve()
    except (SpecError, gen.GenerationError):
        return None


def _all_targets(scripts, out, writing, cells, over_the_folder=False):
    """Every script's files, the messages of the scripts that fail, and those of the scripts refused (a
    cell's name taken, its file in the way). Into the package a failing script stops the run (its
    kernel would look like an orphan); elsewhere the others go on."""
    targets, errors, refusals = [], [], []
    in_their_folder = _in_their_folder(scripts, out, cells)
    refused = {**_refused(scripts, cells), **_over_themselves(in_their_folder, out, over_the_folder)}
    for script in dict.fromkeys(scripts):  # a script given twice is one
        try:
            if script in refused:
                raise gen.GenerationError(refused[script])
            if script in in_their_folder:
                print(f"lstm-derive: warning: {_among_the_scripts(script, in_their_folder[script], out)}",
                      file=sys.stderr, flush=True)
            targets += _targets_for(script, out, cells)[1]
        except (SpecError, gen.GenerationError) as error:
            if out is None and writing and len(scripts) > 1:  # the files of the scripts that ran are not written either
                raise type(error)(f"{error}\nlstm-derive: nothing was written: into the package, generate writes the "
                                  "files of every script given or of none (fix this one, or move it out of "
                                  f"{gen.HOME.name}/ meanwhile)") from error
            if out is None:
                raise
            (refusals if script in refused else errors).append(f"lstm-derive: {error}")
    if out is None:
        targets.append(_package_index(writing, cells))
    return targets, errors, refusals


def _package_index(writing, cells):
    """The package's index, which lists the cell of every script of derivations/, not only of
    those given: so a cell given by name waits for every other script there to run too."""
    try:
        return gen.package_index(gen.home_cells(cells))
    except (SpecError, gen.GenerationError) as error:
        raise type(error)(f"{error}\nlstm-derive: {'nothing was written' if writing else 'not checked'}: the "
                          f"package's list of its kernels, {gen.shown(gen.KERNELS / '__init__.py')}, names the cell of "
                          f"every script in {gen.HOME.name}/, one each (fix the script, or move it out of "
                          f"{gen.HOME.name}/ meanwhile)") from error


def run_generate(args):
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise gen.GenerationError(f"--out {args.out}: a file, not a directory")
    cells = gen.Cells()  # scripts, or cells of derivations/ by name, as check takes them
    scripts = _scripts(args, cells, list(map(str, args.scripts)))
    foreign = [script for script in scripts if not gen.is_home(script)]
    if args.out is None and foreign and len(scripts) > 1:  # said of all at once: no one script is the one to fix
        raise gen.GenerationError(_wants_out(args, foreign))
    targets, errors, refusals = _all_targets(scripts, args.out, not args.check, cells, over_the_folder=not args.scripts)
    status = _generated(args, targets) if targets else 0
    for error in dict.fromkeys(errors + refusals):  # a refusal of several scripts alike, once
        print(error, file=sys.stderr)
    if (errors or refusals) and len(scripts) > 1:
        print(f"{_not_written(len(errors), len(refusals), len(scripts))}, and nothing of theirs was written",
              file=sys.stderr)
    return 2 if errors or refusals else status


def _not_written(failed, refused, total):
    """The closing count of the scripts not written: "2 of 8 scripts failed", "8 of 8 scripts were refused",
    "1 of 8 scripts was refused", "1 of 8 scripts failed and 2 were refused"; a script refused (its cell's
    name taken, its output folder its own) did not fail."""
    were = "was" if refused == 1 else "were"
    if not failed:
        return f"{refused} of {total} scripts {were} refused"
    return f"{failed} of {total} scripts failed" + (f" and {refused} {were} refused" if refused else "")


def _wants_out(args, foreign):
    """Why scripts from outside derivations/ are not generated without --out, and the command that does."""
    names = [str(s) for s in foreign[:3]] + ([f"{len(foreign) - 3} more"] if len(foreign) > 3 else [])
    where = ["--derivations", str(args.derivations)] if args.derivations and not args.scripts else []
    again = ["lstm-derive", *where, "generate", *map(str, args.scripts), *(["--check"] if args.check else [])]
    return (f"{', '.join(names[:-1])} and {names[-1]}: lstm_derive/kernels/ holds only the kernels of "
            f"{gen.home_scripts()}; write these cells' kernels and documents elsewhere: {shlex.join(again)} --out DIR")


def _generated(args, targets):
    """Writes the targets (or, with --check, compares them); the exit status."""
    # orphans are known only over all of the package's own derivations/, never over another folder
    whole = not args.out and not args.scripts and _directory(args).resolve() == gen.HOME.resolve()
    orphans = gen.orphans(t.path for t in targets) if whole else []
    if args.check:
        problems = gen.stale(targets, gen.shown)
        for path, diff in problems:
            print(f"{gen.shown(path)}: missing" if not path.exists() else diff)
        for path in orphans:
            print(f"{gen.shown(path)}: generated, but no derivation script generates it any more")
        if problems or orphans:
            where = ["--derivations", str(args.derivations)] if args.derivations and not args.scripts else []
            again = ["lstm-derive", *where, "generate", *map(str, args.scripts)] + (
                ["--out", str(args.out)] if args.out else [])
            # named again after the diffs, which a long one scrolls out of sight
            names = ", ".join(str(gen.shown(path)) for path in [path for path, _ in problems] + orphans)
            print(f"{len(problems) + len(orphans)} generated file(s) stale ({names}); run `{shlex.join(again)}`",
                  file=sys.stderr)
            return 1
        print(f"{len(targets)} generated files are fresh")
        return 0
    written = gen.write(targets)
    for path in written:  # before the removals, which may fail, so that what was written is said
        print(f"wrote {gen.shown(path)}")
    _remove(orphans)
    print(f"{len(targets)} files generated, {len(written)} changed")
    return 0


def _remove(orphans, file=None):
    """Removes the package's generated files that no script generates any more (its script
    removed, or its cell renamed)."""
    for path in orphans:
        try:
            path.unlink()
        except OSError as error:  # a read-only clone, say
            raise gen.GenerationError(f"{gen.shown(path)}: cannot remove it ({error.strerror or error}); no script "
                                      "generates it any more") from error
        print(f"removed {gen.shown(path)} (no script generates it)", file=file)


def _summary_row(script, out, cells, made, generated=None):
    """Derives, writes and gradient-checks one cell; returns its summary row and its failures.
    cells: the run's gen.Cells; made: the paths of the files of the cells derived, to which the
    cell's are added; generated: the scripts whose files are written, to which the script is added
    once its are (a Ctrl-C during its checks leaves them up to date)."""
    start = time.perf_counter()
    try:
        d, targets = _targets_for(script, out, cells)
    except (SpecError, gen.GenerationError) as error:  # one broken script does not stop the others
        return _error_row(script, time.perf_counter() - start, error)
    made += [t.path for t in targets]
    try:
        written = gen.write(targets)
    except gen.GenerationError as error:  # a read-only clone: the file there is not what the script generates
        return _unwritten_row(script, d, targets[0], start, error)
    if generated is not None:
        generated.append(script)
    if out is None:  # the package's files, which the user's tree holds (a scratch folder's are not said)
        _said_written(written)
    return _checked_row(d, gen.import_kernel(targets[0].path), start)


def _checked_row(d, kernel, start):
    """The row of a cell whose kernel was checked, ok or FAIL, and its failures."""
    from .gradcheck import DEFAULT_METHODS
    from .outcomes import largest_error
    from .problem import raised

    try:
        reports = [r for config in CHECKS for r in _reports(kernel, config)[1]]
    except Exception as error:  # a broken kernel is a failed check, reported with the rest
        seconds = f"{time.perf_counter() - start:.2f}"
        return [d.cell.name, d.equations, len(d.cell.parameter_names()), "-", "-", "-", seconds, "FAIL"], [
            f"the kernel raised {raised(kernel, error)}"]
    errors = [largest_error(reports, m) for m in DEFAULT_METHODS]
    ok = all(r.ok for r in reports)
    failures = [str(r) for r in reports if not r.ok]
    row = [kernel.CELL, d.equations, len(kernel.PARAMS), *errors, f"{time.perf_counter() - start:.2f}",
           "ok" if ok else "FAIL"]
    return row, failures


def _error_row(script, seconds, error):
    return [script.name, "-", "-", "-", "-", "-", f"{seconds:.2f}", "ERROR"], [f"{error}"]


def _unwritten_row(script, d, kernel, start, error):
    """The row of a cell derived whose files could not be written: its kernel is checked from a
    scratch folder all the same, so that a read-only clone still tells a wrong cell (FAIL) from one
    whose files are merely left as they were (UNWRITTEN); the exit status is 2 either way."""
    with tempfile.TemporaryDirectory(prefix="lstm-derive-") as scratch:
        try:
            copy = gen.Target(Path(scratch) / kernel.path.name, kernel.text)
            gen.write([copy])
        except gen.GenerationError:  # no room for a scratch copy either
            row = [d.cell.name, d.equations, len(d.cell.parameter_names()), "-", "-", "-",
                   f"{time.perf_counter() - start:.2f}", "UNWRITTEN"]
            return row, [f"{error}; not checked (`lstm-derive check {shlex.quote(str(script))}` checks what the "
                         "script generates, writing nothing)"]
        row, failures = _checked_row(d, gen.import_kernel(copy.path), start)
    said = f"{error}; its files were left as they were, and what the script generates was checked in a scratch folder"
    return row[:-1] + ["UNWRITTEN" if row[-1] == "ok" else row[-1]], [said, *failures]


def run_all(args):
    cells = gen.Cells()
    scripts = _scripts(args, cells)
    home = all(gen.is_home(s) for s in scripts)
    file_errors = _write_index(cells) if home else []  # said after the summary, as a file not removed is
    with tempfile.TemporaryDirectory(prefix="lstm-derive-") as scratch:
        rows, all_failures, made, stopped, generated = _summary_rows(scripts, None if home else Path(scratch), cells)
    # a failing script's files would look like orphans, and so would those of the scripts not run
    if home and not stopped and all(row[-1] != "ERROR" for row in rows):
        try:
            _remove(gen.orphans([*made, gen.package_index([]).path]), file=sys.stderr)
        except gen.GenerationError as error:  # a read-only clone: the summary still comes
            file_errors.append(f"{error}")
    # a cell checked, but not written, may have failed its checks: its row says FAIL, the count both
    unwritten = [row[0] for row, script in zip(rows, scripts) if row[-1] != "ERROR" and script not in generated]
    if stopped:
        stop = f"; interrupted in {stopped.name}, {len(scripts) - len(rows)} of {len(scripts)} scripts not checked"
        _print_summary(rows, all_failures + file_errors, unwritten, stop)
        if home:  # a scratch folder's files are gone with it
            _say_left_as_they_were(args, scripts, [s for s in scripts[len(rows):] if s not in generated], cells)
        raise KeyboardInterrupt
    _print_summary(rows, all_failures + file_errors, unwritten)
    if not home:  # the run took a folder, and so does the command that writes its files
        where = ["--derivations", str(args.derivations)] if args.derivations else []
        print(f"(checked in a scratch directory: the package holds the kernels of {gen.home_scripts()} only; "
              f"`{shlex.join(['lstm-derive', *where, 'generate'])} --out DIR` writes these cells' kernels and documents)")
    statuses = {row[-1] for row in rows}
    return 2 if "ERROR" in statuses or unwritten or file_errors else 1 if "FAIL" in statuses else 0


def _write_index(cells):
    """Writes the package's list of its kernels where it changed; returns [] or, where it cannot be
    written, [why]. A script that fails, or two of one cell name, leave it as it is: their rows say why."""
    try:
        index = gen.package_index(gen.home_cells(cells))
    except (SpecError, gen.GenerationError):
        return []
    try:
        _said_written(gen.write([index]))
    except gen.GenerationError as error:  # a read-only clone
        return [f"{error}; it lists the package's kernels"]
    return []


def _said_written(paths):
    """The main job names each file it rewrites, on stderr beside its progress: a stale kernel or
    document made fresh is a change in the user's tree."""
    for path in paths:
        print(f"wrote {gen.shown(path)}", file=sys.stderr, flush=True)


def _summary_rows(scripts, out, cells):
    """(rows, failures, made, stopped, generated): each script's summary row and failures, the paths
    of the files of the cells derived, the script a Ctrl-C stopped the run in (None if it ran to the
    end), whose rows so far are still a summary, and the scripts whose files were written."""
    rows, all_failures, made, generated = [], [], [], []
    refused = _refused(scripts, cells, into_the_package=out is None)
    for n, script in enumerate(scripts, 1):
        try:
            print(f"[{n}/{len(scripts)}] {script.name}: deriving, generating, checking ...", file=sys.stderr,
                  flush=True)  # progress on stderr: `lstm-derive > summary.txt` keeps the summary alone
            row, failures = (_error_row(script, 0.0, refused[script]) if script in refused else
                             _summary_row(script, out, cells, made, generated))
        except KeyboardInterrupt:
            return rows, all_failures, made, script, generated
        rows.append(row)
        all_failures += [f"{row[0]}: {f}" for f in failures]
    return rows, all_failures, made, None, generated


def _say_left_as_they_were(args, scripts, left, cells):
    """The lines after an interrupted run's count, on the package's files it left as they were: those of
    the scripts it did not reach, and those that no script generates any more, which it removes only
    once every script has run, and `generate` only over the whole folder, as the command it gives then."""
    gone = _no_longer_generated(cells)
    if left:
        print(_not_generated(args, scripts, left, whole=bool(gone)))
    if gone:
        print(f"not removed: {', '.join(str(gen.shown(path)) for path in gone)}, which no script generates any more "
              f"(`{_generate_command(args)}` removes them)")


def _no_longer_generated(cells):
    """The package's generated files that no script generates any more, where the cell of every script
    there is known: a script that fails would leave its own files looking so."""
    try:
        names = gen.home_cells(cells)
        made = [p for n in names for p in (gen.KERNELS / f"{n}.py", gen.HOME / f"{n}.md")]
        return gen.orphans([*made, gen.package_index([]).path])
    except (SpecError, gen.GenerationError):  # or one edited by hand, which the whole run names
        return []


def _not_generated(args, scripts, left, whole=False):
    """The line after an interrupted run's count, on the package's scripts the run did not reach: their
    files were left as they were, stale where a script changed since, which only deriving it tells
    (seconds to minutes a cell, where a Ctrl-C asked to stop); so the command that writes them, of
    every script where left is all of them or where files are to be removed too (whole)."""
    names = [] if whole or len(left) == len(scripts) else [s.stem for s in left]
    return (f"not generated: {', '.join(s.name for s in left)}, whose kernels and documents were left as they were "
            f"(`{_generate_command(args, names)}` brings them up to date)")


def _generate_command(args, names=()):
    where = ["--derivations", str(args.derivations)] if args.derivations else []
    return shlex.join(["lstm-derive", *where, "generate", *names])


# The summary's columns, a word each, so that the table fits 80 columns and splits on spaces into them;
# the legend under it says what the short ones stand for.
SUMMARY = ["cell", "equations", "params", "central", "complex", "float32", "seconds", "status"]
LEGEND = ("params: parameter arrays; central, complex, float32: the gradients' largest\n"
          "relative error against central differences, the complex step and the float64 run")


def _print_summary(rows, failures, unwritten, after_count=""):
    """unwritten: the cells derived whose files could not be written, FAIL among them."""
    print()
    print(_table(SUMMARY, rows, _ellipsis(sys.stdout)))
    print("\n" + LEGEND)
    if failures:
        print("\n" + "\n".join(failures))
    broken, failed = ([row[0] for row in rows if row[-1] == status] for status in ("ERROR", "FAIL"))
    passed = sum(row[-1] == "ok" for row in rows)
    print("\n" + _count(passed, failed, broken, unwritten) + after_count)


def _count(passed, failed, broken, unwritten=()):
    """The closing line of a run over several cells: "6 passed, 1 failed (gru), 1 not derived (x.py)",
    and in the main job, the cells derived whose files could not be written: ", 1 not written (rnn)"."""
    return (f"{passed} passed, {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else "")
            + (f", {len(broken)} not derived ({', '.join(broken)})" if broken else "")
            + (f", {len(unwritten)} not written ({', '.join(unwritten)})" if unwritten else ""))


def run_check(args):
    """Checks the kernel each script generates now: a cell of derivations/ whose package copy is
    stale is checked as its script stands (and said so); a script of one's own needs no --out."""
    from .gradcheck import FLOAT32_ALONE

    if set(args.methods) == {"float32"}:
        raise SpecError(FLOAT32_ALONE.replace("methods: float32", "--methods float32"))
    passed, failed, broken, cells = [], [], [], gen.Cells()
    scripts = _scripts(args, cells, args.cells)  # each once, under whatever spelling
    refused = _refused(scripts, cells)  # a second cell of one name is not checked in the first's place
    with tempfile.TemporaryDirectory(prefix="lstm-derive-check-") as scratch:
        for script in scripts:
            try:
                _check_one(args, script, refused, Path(scratch), cells, passed, failed, broken)
            except KeyboardInterrupt:  # deriving as well as checking: a large cell derives for minutes
                if len(scripts) > 1:  # one cell's own summary said it all
                    checked = len(passed) + len(failed) + len(broken)
                    print("\n" + _count(len(passed), failed, broken) + f"; interrupted in "
                          f"{_stopped_in(script, cells)}, {len(scripts) - checked} of {len(scripts)} cells not checked")
                raise
    print("\n" + _count(len(passed), failed, broken))
    return 2 if broken else 1 if failed else 0


def _check_one(args, script, refused, scratch, cells, passed, failed, broken):
    """Checks the kernel of one script (or a kernel module), its cell's name added to passed or failed,
    or the script's to broken where it fails, which is said."""
    try:
        if script in refused:
            raise gen.GenerationError(refused[script])
        cell, kernel, hint = _kernel_module(script) or _emitted_kernel(script, scratch, cells)
    except (SpecError, gen.GenerationError) as error:  # report it, check the others
        print(f"lstm-derive: {error}", file=sys.stderr)
        broken.append(script.name)
        return
    ok = _print_checks(cell, kernel, args.problems, args.methods, args.steps, args.scale)
    if not ok and hint:
        print(f"{cell}: {hint}")
    (passed if ok else failed).append(cell)


def _stopped_in(script, cells):
    """The cell of the script that an interrupt stopped (a kernel module's name); the script's name
    where its cell is not known."""
    if gen.is_kernel_module(script):
        return script.stem
    try:
        return cells.cell(script).name
    except (SpecError, gen.GenerationError):
        return script.name


def _print_checks(cell, kernel, problems, methods, steps=None, scale=None):
    """Prints every report of the cell's checks, then the summary lines (outcomes.Outcomes); whether
    all passed. Interrupted (Ctrl-C, as a kernel that hangs is stopped), it says where the kernel was
    and sums up the problems before, then raises KeyboardInterrupt again."""
    from .outcomes import Outcomes
    from .problem import raised, where_in

    outcomes = Outcomes(cell, problems, REDRAWS)
    for number, config in enumerate(checks(problems, steps, scale), 1):
        config = _applicable(config, kernel)
        sizes = ", ".join(f"{k}={v}" for k, v in config.items())
        try:
            with _still_checking(f"{cell} ({sizes})", methods):
                used, reports, skipped = _reports(kernel, {**config, "methods": tuple(dict.fromkeys(methods))})
        except KeyboardInterrupt as stop:
            print(f"{cell} ({sizes}) interrupted{where_in(kernel, stop) or ' outside the kernel, between its calls'}")
            outcomes.interrupted = number
            break
        except Exception as error:  # fails this problem; the others still run, whose failures may tell why
            what = raised(kernel, error)
            if outcomes.add_error(what):
                print(f"{cell} ({sizes}) FAIL: the kernel raised {what}")
            continue
        _print_reports(cell, sizes, reports, used, skipped)
        outcomes.add(used, reports)
    for line in outcomes.lines():
        print(line)
    if outcomes.interrupted:
        raise KeyboardInterrupt
    return outcomes.ok


def _print_reports(cell, sizes, reports, used, skipped):
    """Prints one problem's reports, every line led by its cell and problem (grep keeps them); where
    seeds were passed over, it says so, and the lines name the problem the reports were made on."""
    if skipped:
        print(f"{cell} ({sizes}) every gradient is exactly 0 on this problem, which judges nothing: drawn again "
              f"with seed{'s' if len(skipped) > 1 else ''} {', '.join(str(s + SEED_STRIDE) for s in skipped)}")
        sizes = ", ".join(f"{k}={v}" for k, v in used.items() if k != "methods")
    for report in reports:
        for line in str(report).splitlines():
            print(f"{cell} ({sizes}) {line}")


# Seconds one problem's checks may take before the command says it is still at them (the packaged
# cells' take 0.05 to 0.5 s; 12 steps of a kernel that sleeps or loops, silent, look like a hang),
# then every SLOW_EVERY seconds the time so far, as for a derivation: `--steps 200` takes minutes.
SLOW_CHECK = 10.0


# The runs of forward() each element of every array costs, by method: central differences' four
# points, the complex step's one; the float32 run is one call for all of them.
RUNS_PER_ELEMENT = {"central": 4, "complex": 1}
RUNS_IN_WORDS = {1: "one run", 4: "four runs", 5: "five runs"}


@contextlib.contextmanager
def _still_checking(problem, methods):
    """Past SLOW_CHECK seconds, a line on stderr that says the problem is still being checked, and how
    to stop it and see where the kernel is; then its time so far every SLOW_EVERY seconds. On stderr,
    as the derivation's: `check > report.txt` keeps the report alone, and the terminal still hears."""
    runs = RUNS_IN_WORDS[sum(RUNS_PER_ELEMENT.get(m, 0) for m in dict.fromkeys(methods))]  # float32 alone is refused

    def still_checking(seconds, first):
        said = (f"after {SLOW_CHECK:g} s (every element costs {runs} of forward()); Ctrl-C stops it and says "
                "where in the kernel it was" if first else f"{seconds:.0f} s so far ...")
        print(f"lstm-derive: still checking {problem} {said}", file=sys.stderr, flush=True)

    with _said_while_slow(still_checking, SLOW_CHECK, SLOW_EVERY):
        yield


def _applicable(config, kernel):
    """The check's configuration without what the kernel cannot take: spans where it has no _span
    (a hand-written kernel), lengths where its forward() takes none."""
    from .problem import takes_lengths

    return {k: v for k, v in config.items() if not (k == "span" and not hasattr(kernel, "_span") or
                                                    k == "lengths" and not takes_lengths(kernel))}


# Where every gradient is exactly 0 on a drawn problem (every relu off at every step: a third of
# an IndRNN's problems of size 1), it judges nothing: the problem is drawn again, of the same sizes,
# with the seed moved by SEED_STRIDE (past the seeds of the problems drawn after it, up to 1000 of
# them), up to REDRAWS times.
REDRAWS, SEED_STRIDE = 10, 1000


def _reports(kernel, config):
    """(config, reports, seeds): check_kernel's reports on one problem, the configuration they
    were made with and the seeds passed over, on whose problems every gradient was 0. With
    span=N, the kernel's backward pass goes by spans of N steps (a generated kernel's _span),
    where it would take the problem's steps in one."""
    config, skipped = _applicable(config, kernel), []
    for redraw in range(REDRAWS + 1):
        reports = _reports_once(kernel, config)
        if redraw == REDRAWS or not any(r.vacuous for r in reports):
            return config, reports, skipped
        skipped.append(config["seed"])
        config = {**config, "seed": config["seed"] + SEED_STRIDE}


def _reports_once(kernel, config):
    from .gradcheck import check_kernel

    config = dict(config)
    span = config.pop("span", None)
    if span is None:
        return check_kernel(kernel, **config)
    default, kernel._span = kernel._span, lambda B, H, dtype: span
    try:
        return check_kernel(kernel, **config)
    finally:
        kernel._span = default


def _kernel_module(path):
    """(name, module, "") of a kernel module, written by hand or generated and copied, checked as it
    stands (no script tells why its checks may fail); None for a script."""
    if not gen.is_kernel_module(path):
        return None
    from .gradcheck import checked_interface

    kernel = gen.load_kernel_module(path)
    try:
        checked_interface(kernel, name=Path(path).name)
    except ValueError as error:
        raise SpecError(str(error)) from None
    return getattr(kernel, "CELL", Path(path).stem), kernel, ""


def _emitted_kernel(script, scratch, cells):
    """(cell name, kernel module, why its checks may fail on a right kernel or "") of the kernel the
    script generates, written into scratch; a note if the script is one of derivations/ and the
    package's copy of its kernel differs. cells: the command's gen.Cells."""
    home = gen.is_home(script)
    d, targets = _targets_for(script, None if home else scratch, cells)
    kernel = targets[0]
    if home:
        if gen.existing(kernel.path) not in (None, kernel.text):
            print(f"note: {_unlike_the_package(script, d.cell.name, kernel.path, cells)}", file=sys.stderr)
        kernel = gen.Target(scratch / kernel.path.name, kernel.text)
    gen.write([kernel])
    return d.cell.name, gen.import_kernel(kernel.path), _pole_hint(d.cell)


def _unlike_the_package(script, cell, kernel, cells):
    """Why the package's kernel differs from the one a script of derivations/ generates: another script
    there builds a cell of the same name (whose kernel it may be), or the kernel is stale."""
    others = [s for s in gen.find_scripts(gen.shown(gen.HOME)) if s.resolve() != Path(script).resolve()]
    twin = _script_of_cell(others, cell, cells)
    if twin is None:
        return f"{gen.shown(kernel)} is stale; checking what {script} generates now (`lstm-derive generate` writes it)"
    return (f"{script} and {twin} both build the cell '{cell}', and the package holds one kernel of that name "
            f"({gen.shown(kernel)}); checking what {script} generates; rename one cell (`lstm-derive generate` "
            "writes the files of neither until then)")


def _pole_hint(cell):
    """Why a cell's checks may fail on a right kernel: it divides by a value that reads a state the
    checks draw around zero, where a step can be at a pole."""
    near = [s for s in cell.divided_states() if s not in cell.positive_states]
    if not near:
        return ""
    names, declare = " and ".join(near), ", ".join(f"cell.state('{s}', positive=True)" for s in near)
    return (f"it divides by a value that reads the state {names}, which the checks draw around zero, where a "
            f"step can be at a pole; if {names} stays above zero, declare it ({declare}): the checks then start it there")


def run_show(args):
    cells = gen.Cells()
    (script,) = _scripts(args, cells, [args.cell])
    home = gen.is_home(script)
    if home and args.out is not None:
        print(f"lstm-derive: note: {script.name} is one of the package's own scripts, shown as derivations/ "
              "holds its document; --out is for scripts of your own", file=sys.stderr)
    # a script of one's own is shown as `generate SCRIPT --out DIR` would write it
    d, (kernel, document) = _targets_for(script, None if home else args.out or Path("build"), cells)
    if args.markdown:
        print(document.text, end="")
    elif args.latex:
        print(derivation_latex(d, kernel.text), end="")
    else:
        print(terminal.printable(derivation_text(d, kernel.text), sys.stdout))
    return 0


# The summary's width, that of a terminal window as it opens; what goes past it wraps, and breaks the columns.
WIDTH = 80


def _table(header, rows, ellipsis="…"):
    """The rows under their header, in columns two spaces apart; a first column (the cells' names)
    that would take the table past WIDTH is narrowed, its longer entries cut in their middle, where
    ellipsis stands for what is cut: start and end are kept, as names of one family differ at
    their end (lstm_peephole, lstm_cifg), and a failure's line and the count give them whole."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    room = WIDTH - sum(widths[1:]) - 2 * (len(widths) - 1)
    widths[0] = max(len(header[0]), len(ellipsis) + 2, min(widths[0], room))
    cells = [[_cut(r[0], widths[0], ellipsis), *r[1:]] for r in cells]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cut(text, width, ellipsis):
    if len(text) <= width:
        return text
    kept = width - len(ellipsis)
    return text[:kept - kept // 2] + ellipsis + text[len(text) - kept // 2:]


def _ellipsis(stream):
    """An ellipsis as the stream writes it: "…", or "..." where its encoding lacks it."""
    return terminal.printable("…", stream)


if __name__ == "__main__":
    sys.exit(main())
