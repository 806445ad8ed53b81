"""Import direction between the project's packages, read from the source with `ast`.

Allowed: tune_scaling -> sweep -> trainables -> search_spaces (a package imports only packages
below it), `fitting` imports no other project package (anyone may import it), and no two
files import each other, directly or around a cycle. Every import counts: top-level,
function-level and `if TYPE_CHECKING:` ones. benchmarks/ and tests/ are exempt (they may
import anything). The checker runs on the real tree and, to show it can fail, on tiny fake
trees with a planted upward import and a planted cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# lowest first: a package may import itself and any package before it in this tuple
ORDER = ("search_spaces", "trainables", "sweep", "tune_scaling")
STANDALONE = "fitting"
# The edges out of fitting, each to a leaf module (it imports nothing of ours) that the trainer's
# side and the fits must share: the metric names the trainer reports and the fits read, so both
# sides spell them the same; and the rule for when a run sees its frames, which the fits and the
# sweep's live monitor both apply, so a run the monitor calls blind is the run the fits withhold.
ALLOWED_EDGES = {("fitting.table", "search_spaces.metric_names"), ("fitting.vision", "search_spaces.vision_rule")}
EXEMPT_DIRS = {"benchmarks", "tests"}


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the layered and standalone packages."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] not in (*ORDER, STANDALONE) and rel.parts[0].removesuffix(".py") not in ORDER:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if is_package else module.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        return [f"{base}.{a.name}" for a in node.names] + [base]
    return []


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from pkg import name` edge goes to pkg.name
    when that is a module, else to pkg)."""
    mods = project_modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets = _targets(node, name, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):
                *named, base = targets
                hits = [t for t in named if t in mods]
                targets = hits or [base]
            for target in targets:
                # the longest prefix that is a project module ("a.b.c" -> "a.b" if c is a name)
                parts = target.split(".")
                while parts and ".".join(parts) not in mods:
                    parts.pop()
                if parts and ".".join(parts) != name:
                    edges.add(".".join(parts))
        graph[name] = edges
    return graph


def package(module: str) -> str:
    return module.split(".")[0]


def direction_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in graph.items():
        for dst in sorted(targets):
            s, d = package(src), package(dst)
            if s == d or (src, dst) in ALLOWED_EDGES:
                continue
            if s == STANDALONE:
                bad.append(f"{src} -> {dst}: fitting imports no other project package")
            elif d == STANDALONE:
                continue  # fitting stands alone: anyone may call it
            elif ORDER.index(d) > ORDER.index(s):
                bad.append(f"{src} -> {dst}: {s} may not import {d} (allowed: {' -> '.join(reversed(ORDER))})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one file (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def packages_of(graph: dict[str, set[str]]) -> set[str]:
    return {package(m) for m in graph}


def test_the_project_imports_only_downwards():
    graph = import_graph(ROOT)
    assert packages_of(graph) == {*ORDER, STANDALONE}  # the walk found every package
    assert sum(len(e) for e in graph.values()) > 50  # and their imports (function-level included)
    assert "search_spaces.grids" in graph["tune_scaling"]
    assert direction_violations(graph) == []
    for src, dst in ALLOWED_EDGES:  # an allowance that is no longer used goes
        assert dst in graph[src], (src, dst)
    for _, leaf in ALLOWED_EDGES:
        assert not graph[leaf], leaf  # a shared leaf imports nothing of ours


def test_no_import_cycles_between_files():
    assert cycles(import_graph(ROOT)) == []


def test_search_spaces_imports_no_torch_and_nothing_above():
    for name, path in project_modules(ROOT).items():
        if package(name) != "search_spaces":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _targets(node, name, path.name == "__init__.py"):
                assert package(target) not in ("torch", "transformers", "ray", "deepspeed"), (name, target)


def _fake_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checker_catches_an_upward_import_a_cycle_and_fitting_leaning_on_the_project(tmp_path):
    clean = {
        "search_spaces/__init__.py": "", "search_spaces/sizes.py": "import math\n",
        "trainables/__init__.py": "", "trainables/train.py": "from search_spaces import sizes\n",
        "sweep/__init__.py": "", "sweep/launch.py": "def f():\n    from trainables.train import x\n",
        "fitting/__init__.py": "", "fitting/table.py": "import numpy\n",
        "tune_scaling.py": "import sweep.launch\nimport fitting\n",
        "tests/test_x.py": "import tune_scaling\n", "benchmarks/b.py": "import sweep.launch\n",
    }
    graph = import_graph(_fake_tree(tmp_path / "clean", clean))
    assert graph["sweep.launch"] == {"trainables.train"} and graph["trainables.train"] == {"search_spaces.sizes"}
    assert "tests.test_x" not in graph and direction_violations(graph) == [] and cycles(graph) == []

    # an upward import hidden in a function of the spec layer
    up = {**clean, "search_spaces/sizes.py": "def plan():\n    from trainables.train import x\n"}
    (msg,) = direction_violations(import_graph(_fake_tree(tmp_path / "up", up)))
    assert msg.startswith("search_spaces.sizes -> trainables.train")
    # a relative import counts the same
    rel = {**clean, "trainables/train.py": "from ..sweep import launch\n"}
    assert direction_violations(import_graph(_fake_tree(tmp_path / "rel", rel))) == [
        "trainables.train -> sweep.launch: trainables may not import sweep (allowed: "
        "tune_scaling -> sweep -> trainables -> search_spaces)"]
    # two files of one package importing each other
    loop = {**clean, "sweep/wsd.py": "from sweep.launch import y\n",
            "sweep/launch.py": "import typing\nif typing.TYPE_CHECKING:\n    from sweep import wsd\n"}
    assert cycles(import_graph(_fake_tree(tmp_path / "loop", loop))) == [["sweep.launch", "sweep.wsd"]]
    # fitting may not import the project (only the named edge)
    lean = {**clean, "fitting/table.py": "from trainables import train\n"}
    assert direction_violations(import_graph(_fake_tree(tmp_path / "lean", lean))) == [
        "fitting.table -> trainables.train: fitting imports no other project package"]
