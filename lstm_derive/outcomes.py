"""What a cell's gradient checks found over all of its problems: the summary lines that
`lstm-derive check` prints after every problem's reports, which can run to hundreds of lines.

Outcomes keeps each problem's reports as they come (and what the kernel raised, and where an
interrupt stopped it); every summary line is read from them by a method of its own, at the end.
A new kind of line is one more method, named in Outcomes.LINES where it goes."""

from __future__ import annotations

import re

# What a report can fail on besides its elements' errors, in the summary's words. Overflow and
# problems whose every gradient is 0 have lines of their own.
_OTHER_CHECKS = {"wrong_shapes": "results of the wrong shape or dtype", "written": "inputs written into",
                 "unjudged": "elements that could not be judged", "directional": "the check along a random direction",
                 "alone": "a sequence unlike itself run alone", "forward": "float32 outputs off from float64's",
                 "calls": "results that change with how it is called"}

_SHAPE = re.compile(r"\(\d+(?:, \d+)*,?\)")  # a shape or sizes in a message: (4, 3, 4), (16,)


class Outcomes:
    """The reports of a cell's problems, what the kernel raised on the others, and the number of
    the problem an interrupt stopped (0: none did)."""

    LINES = ("_headline", "_crashes", "_failing_gradients", "_where_they_fail", "_other_failures", "_hints",
             "_not_judged", "_vacuous")

    def __init__(self, cell, planned, redraws):
        self.cell, self.planned, self.redraws = cell, planned, redraws
        self.ran = []  # (configuration, reports) of each problem that ran
        self.raised = {}  # what the kernel raised, its shapes left out -> (the first message, on how many problems)
        self.interrupted = 0

    def add(self, config, reports):
        self.ran.append((config, reports))

    def add_error(self, what):
        """Records an error the kernel raised; whether it is the first of its kind, which alone is
        printed: the same error on every problem, each of its own sizes, would fill the screen."""
        kind = _SHAPE.sub("(...)", what)  # ys of shape (3, 4, 4) for (4, 3, 4), then (2, 3, 3) for (3, 2, 3): one
        first, count = self.raised.get(kind, (what, 0))
        self.raised[kind] = (first, count + 1)
        return count == 0

    @property
    def problems(self):
        """How many problems the summary sums up: those before the interrupt, if one stopped them."""
        return self.interrupted - 1 if self.interrupted else self.planned

    @property
    def reports(self):
        return [r for _, reports in self.ran for r in reports]

    @property
    def ok(self):
        return not (self.interrupted or self.raised) and all(r.ok for r in self.reports)

    def lines(self):
        return [f"{self.cell}: {line}" for name in self.LINES for line in getattr(self, name)()]

    def _headline(self):
        judged = self.reports
        errors = ", ".join(f"{m} {largest_error(judged, m)}" for m in dict.fromkeys(r.method for r in judged))
        if self.interrupted:
            return [f"interrupted on problem {self.interrupted}" + (
                f"; the largest errors over the {self.problems} before it: {errors}" if errors else "")]
        return [f"{'passed' if self.ok else 'FAILED'}; the largest errors over {self.problems} problem"
                f"{'s' if self.problems > 1 else ''}: {errors or 'none, the kernel raised on every problem'}"]

    def _crashes(self):
        return [f"on {count} of the {self.problems} problems, the kernel raised {what}"
                + (" (on the others, the same of their own sizes)" if count > 1 and kind != what else "")
                for kind, (what, count) in self.raised.items()]

    def _failing_gradients(self):
        failing = self._failing()
        if not failing:
            return []
        ranked = sorted(failing.items(), key=lambda item: -item[1][0])
        return [f"the gradients that fail, and on how many of the {self.problems} problems: "
                + ", ".join(f"{name} {count} ({', '.join(methods)})" for name, (count, methods) in ranked)]

    def _where_they_fail(self):
        """The gradients that fail on just the problems of some size or kind, grouped by it."""
        parted = {}  # what parts the problems a gradient fails on from the others -> the gradients so parted
        judged = self._judged()
        for name in self._failing():
            failed = [config for config, _, wrong in judged if name in wrong]
            passed = [config for config, seen, wrong in judged if name in seen and name not in wrong]
            parted.setdefault(_where_it_fails(failed, passed), []).append(name)
        return [f"{', '.join(names)} fail{'s' * (len(names) == 1)} on every problem with {where}, and on no other"
                + (f" of the {len(self.ran)} that ran" if self.raised else "")
                for where, names in parted.items() if where]

    def _other_failures(self):
        """Failures of no gradient's element, which the reports say in full."""
        counts = self._count_problems(_failed_checks)
        if not counts:
            return []
        return [f"what else fails, and on how many of the {self.problems} problems: "
                + ", ".join(f"{check} {count}" for check, count in sorted(counts.items(), key=lambda item: -item[1]))]

    def _hints(self):
        """What the methods' verdicts suggest, once, not once a problem."""
        counts = self._count_problems(lambda reports: dict.fromkeys(
            note for r in reports if not r.ok for note in (r.term, r.hint) if note))
        return [f"on {count} of the {self.problems} problems, {hint}" for hint, count in counts.items()]

    def _not_judged(self):
        """A failure all the same: a check that judged nothing passes nothing. Where forward() is not
        finite at weights 1000 times smaller either, a smaller --scale cannot help, and is not offered."""
        lines = []
        for at_any_scale, why in ((False, "the forward pass overflowing on them; a smaller --scale checks the cell "
                                          "where it does not"),
                                  (True, "the forward pass giving inf or nan on them at weights 1000 times smaller "
                                         "too: no --scale avoids it (a division by a value that can be 0, as "
                                         "a/relu(a) where a <= 0?)")):
            count = sum(all(r.overflowed and r.at_any_scale == at_any_scale for r in reports)
                        for _, reports in self.ran)
            if count:
                lines.append(f"{count} of the {self.problems} problems could not be judged at all, {why}")
        return lines

    def _vacuous(self):
        count = sum(any(r.vacuous for r in reports) for _, reports in self.ran)
        return [f"on {count} of the {self.problems} problems every gradient was exactly 0, on each of "
                f"{self.redraws + 1} draws: the checks judged nothing there; does every output depend on the "
                "inputs?"] if count else []

    def _failing(self):
        """Gradient -> (on how many problems it fails, the methods it fails on), in the order met."""
        failing = {}
        for _, reports in self.ran:
            here = {}  # gradient -> the methods it fails on this problem
            for r in reports:
                for m in r.mismatches:
                    here.setdefault(f"d{m.name}", {})[r.method] = None
            for name, methods in here.items():
                count, before = failing.get(name, (0, {}))
                failing[name] = (count + 1, {**before, **methods})
        return failing

    def _judged(self):
        """(configuration, the gradients judged element by element, those failing) of each problem that ran."""
        return [(config, {f"d{n}" for r in reports if r.method != "float32" for n in r.errors},
                 {f"d{m.name}" for r in reports for m in r.mismatches}) for config, reports in self.ran]

    def _count_problems(self, found):
        """What found(reports) gives -> on how many problems it does, in the order met."""
        counts = {}
        for _, reports in self.ran:
            for item in found(reports):
                counts[item] = counts.get(item, 0) + 1
        return counts


def largest_error(reports, method):
    """The method's largest error over the reports, or "-" where it judged no element (a forward
    that overflowed on every problem leaves nothing to judge: no error is not an error of 0)."""
    errors = [r.max_error for r in reports if r.method == method and r.errors]
    return f"{max(errors):.1e}" if errors else "-"


def _failed_checks(reports):
    """The checks of _OTHER_CHECKS that some report failed, once each."""
    return dict.fromkeys(words for r in reports for name, words in _OTHER_CHECKS.items()
                         if getattr(r, name) and not (name == "unjudged" and r.overflowed))


# What may part the problems a gradient fails on from those it passes on: a size from which on it
# fails (B: right for one row alone, a sum over the batch's rows left out; T: for one step, or for a
# few, a carry dropped after them; scale: wrong in saturation alone), or a kind of problem.
_FROM = (("B >= {}", lambda c: c["B"]),
         ("{} or more rows of nonzero length", lambda c: sum(n > 0 for n in c.get("lengths", [1] * c["B"]))),
         ("T >= {}", lambda c: c["T"]),
         ("a sequence of {} or more steps", lambda c: max(c.get("lengths", [c["T"]]))),
         ("D >= {}", lambda c: c["D"]), ("H >= {}", lambda c: c["H"]),
         ("scale >= {:g}", lambda c: c["scale"]))
_KINDS = (("D = H", lambda c: c["D"] == c["H"]),
          ("a sequence ending before T", lambda c: min(c.get("lengths", [c["T"]])) < c["T"]),
          ("no lengths", lambda c: "lengths" not in c))


def _where_it_fails(failed, passed):
    """What every configuration a gradient fails on has and none it passes on has, in words ("B >= 2";
    "T >= 12"; "a sequence ending before T"), or "" where no one size or kind tells them apart. A
    size that is another's on every problem (rows of nonzero length without lengths: B) is said once."""
    if not (failed and passed):
        return ""
    words, seen = [], set()
    for text, size in _FROM:
        sizes = tuple(map(size, failed + passed))
        low = min(map(size, failed))
        if sizes not in seen and all(size(c) < low for c in passed):
            words.append(text.format(low))
        seen.add(sizes)
    words += [text for text, has in _KINDS if all(map(has, failed)) and not any(map(has, passed))]
    return f"{words[0]} (and, the same problems here, {', '.join(words[1:])})" if len(words) > 1 else "".join(words)
