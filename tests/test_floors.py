"""tests/floors.txt pins the oldest releases pyproject.toml allows, and README promises its Python.

The suite's run under `pip install -c tests/floors.txt` is what shows the floors are true; these
tests keep the file it runs on the floors that pyproject.toml declares.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_sections():
    """The text of [project] and its subtables: [build-system]'s requirements are not the users'."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    parts = re.split(r"^\[([^\]]+)\]$", text, flags=re.M)
    return "".join(body for name, body in zip(parts[1::2], parts[2::2])
                   if name == "project" or name.startswith("project."))


def release(version):
    """A version as pip compares it: 1.24 and 1.24.0 are one release."""
    numbers = [int(n) for n in version.split(".")]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def declared_floors():
    found = re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', project_sections())
    return {name.lower(): release(version) for name, version in found}


def pinned():
    lines = (ROOT / "tests" / "floors.txt").read_text(encoding="utf-8").splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip().lower(): release(version.strip()) for name, version in pins}


def test_floors_txt_pins_each_declared_floor_and_nothing_else():
    assert len(declared_floors()) >= 6  # numpy, sympy, and the test and plot extras' four
    assert pinned() == declared_floors()


def test_the_declared_floors_are_read_from_the_project_s_tables_alone():
    assert "setuptools" not in declared_floors()  # [build-system]'s, which no user installs


def test_readme_s_python_is_the_one_pyproject_requires():
    required = re.search(r'^requires-python = ">=([0-9.]+)"$', project_sections(), re.M)[1]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^Python ([0-9.]+) or newer\.", readme, re.M)[1] == required


def pythons_named(text):
    return re.findall(r"Python (3\.[0-9]+) or (3\.[0-9]+)", text)


def test_readme_names_the_pythons_the_floors_install_on_as_floors_txt_does():
    """The floors' wheels stop at some Python: a user on a newer one cannot install them, and README
    says which ones they install on, from the oldest that pyproject.toml requires."""
    floors = (ROOT / "tests" / "floors.txt").read_text(encoding="utf-8").lower()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said = readme[readme.index("pip install -c tests/floors.txt"):].split("\n\n")[0]
    required = re.search(r'^requires-python = ">=([0-9.]+)"$', project_sections(), re.M)[1]
    assert pythons_named(said) == pythons_named(floors.replace("python", "Python")) != []
    assert pythons_named(said)[0][0] == required
