"""Text for a stream whose encoding lacks the derivation's symbols: a Windows code page, output
redirected to a file there, PYTHONIOENCODING=ascii. Such a stream raises UnicodeEncodeError at
the first ∂; here each symbol is written in ASCII instead (∂h/∂c as dh/dc, W_h·h_prev as
W_h @ h_prev, σ as sigmoid), and any other character it lacks as "?"."""

import codecs
import re

ASCII = {
    "∂": "d", "Σ": "sum", "·": " @ ", "⊙": "*", "σ": "sigmoid", "τ": "tau", "θ": "theta", "×": "x",
    "←": "<-", "→": "->", "⇢": "->", "≈": "~", "≥": ">=", "≤": "<=", "±": "+/-", "²": "^2", "\u00a0": " ", "…": "...",
}
# where the symbol's ASCII form would repeat the words beside it (across a wrapped line's break too)
PHRASES = {re.compile(r"\*(\s+)or\s+⊙ "): r"*\1", re.compile(r"σ\s+\(sigmoid\)"): "sigmoid"}
HANDLER = "lstm_derive.ascii"


def _in_ascii(error):
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text, start, end = error.object, error.start, error.end
    ascii = "".join(ASCII.get(c, "?") for c in text[start:end])
    if ascii.startswith(" ") and start > 0 and text[start - 1] == " ":  # "a matrix product, ·;" as ", @;"
        ascii = ascii[1:]
    if ascii.endswith(" ") and end < len(text) and text[end] in " ;,.)":
        ascii = ascii[:-1]
    return ascii, end


codecs.register_error(HANDLER, _in_ascii)


def in_ascii_where_needed(*streams):
    """Sets each stream (sys.stdout, sys.stderr) to write in ASCII the symbols its encoding lacks,
    where it raised; a stream with a handler of its own, or none to set, is left as it is."""
    for stream in streams:
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) == "strict":
            stream.reconfigure(errors=HANDLER)


def printable(text, stream):
    """text as stream's encoding can write it: as it is, or with the symbols it lacks in ASCII."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        for phrase, ascii in PHRASES.items():
            text = phrase.sub(ascii, text)
        return text.encode(encoding, errors=HANDLER).decode(encoding)
    except LookupError:  # an encoding Python does not know: the stream's own business
        pass
    return text
