"""Files small enough to read whole, functions short enough to read at once: no file over
FILE_LINES lines and no function over FUNCTION_LINES lines in sweep/, trainables/,
search_spaces/, fitting/ and the CLI script tune_scaling.py, read with `ast`. The exceptions
are named here, each with its reason; a listed exception that has become short enough fails
too, so the list stays true.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sweep", "trainables", "search_spaces", "fitting")
SCRIPTS = ("tune_scaling.py",)  # top-level files under the same rule
FILE_LINES = 300
FUNCTION_LINES = 60
# (file, function) -> why it may be longer
LONG_FUNCTIONS: dict[tuple[str, str], str] = {}
LONG_FILES: dict[str, str] = {}


def sizes(root: Path, packages=PACKAGES, scripts=SCRIPTS) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """(file -> lines, (file, qualified function) -> lines) for every .py file of `packages`
    and each of `scripts` that exists."""
    files, functions = {}, {}
    paths = [p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))]
    paths += [root / s for s in scripts if (root / s).is_file()]
    for path in paths:
        rel = path.relative_to(root).as_posix()
        text = path.read_text()
        files[rel] = len(text.splitlines())

        def walk(node, prefix=""):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = prefix + child.name
                    start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    functions[(rel, name)] = child.end_lineno - start + 1
                    walk(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    walk(child, prefix + child.name + ".")
                else:
                    walk(child, prefix)

        walk(ast.parse(text, filename=str(path)))
    return files, functions


def too_long(files: dict, functions: dict) -> list[str]:
    out = [f"{f}: {n} lines (limit {FILE_LINES})" for f, n in files.items()
           if n > FILE_LINES and f not in LONG_FILES]
    out += [f"{f}::{fn}: {n} lines (limit {FUNCTION_LINES})" for (f, fn), n in functions.items()
            if n > FUNCTION_LINES and (f, fn) not in LONG_FUNCTIONS]
    return out


def test_no_long_files_or_functions():
    files, functions = sizes(ROOT)
    assert len(files) > 30 and len(functions) > 200  # the walk saw the packages, methods included
    assert ("trainables/train.py", "train_vlm") in functions and ("sweep/launch.py", "run_sweep") in functions
    assert ("tune_scaling.py", "main") in functions  # the CLI script is under the rule too
    assert ("fitting/analysis.py", "analyze_frame") in functions and ("fitting/report.py", "render") in functions
    assert too_long(files, functions) == []
    for key in LONG_FUNCTIONS:
        assert functions.get(key, 0) > FUNCTION_LINES, f"{key} is short now: drop it from LONG_FUNCTIONS"
    for key in LONG_FILES:
        assert files.get(key, 0) > FILE_LINES, f"{key} is short now: drop it from LONG_FILES"


def test_the_orchestration_reads_as_a_handful_of_steps():
    _, functions = sizes(ROOT)
    assert functions[("trainables/train.py", "train_vlm")] <= 10
    assert functions[("sweep/launch.py", "run_sweep")] <= 45


def test_the_checker_sees_a_long_method_and_a_long_file(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(FUNCTION_LINES))
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "big.py").write_text(
        f"class A:\n    @staticmethod\n    def f():\n{body}\n" + "\n" * FILE_LINES)
    files, functions = sizes(tmp_path, ("sweep",))
    assert functions[("sweep/big.py", "A.f")] == FUNCTION_LINES + 2  # decorator and def line count
    assert too_long(files, functions) == [
        f"sweep/big.py: {FILE_LINES + FUNCTION_LINES + 3} lines (limit {FILE_LINES})",
        f"sweep/big.py::A.f: {FUNCTION_LINES + 2} lines (limit {FUNCTION_LINES})"]
