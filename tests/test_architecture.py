"""The shape of the house, checked from the source: imports form no cycle, evaluate does not lean on train,
SQL over the warehouse lives in the warehouse package, and `tunelab --help` stays light.

The import graph is read from the AST of every module under tunelab/ (imports inside functions count;
imports under `if TYPE_CHECKING:` do not, since they never run).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tunelab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST):
    """Every node of the tree except the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(
    name: str, source: str, modules: set[str] | dict[str, Path], is_package: bool = False
) -> set[str]:
    """The tunelab modules that module `name` (whose text is `source`) imports when it runs.

    `import tunelab.a.b` and `from tunelab.a.b import f` import tunelab.a.b and, as Python does, the
    packages above it (their __init__); `from tunelab.a import b` where b is a submodule imports
    tunelab.a.b; a package above the importing module itself is already running, so it is no edge."""
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + is_package)}
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in modules:  # `from tunelab.x import name_in_x`, or a typo
            target = target.rpartition(".")[0]
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            module = ".".join(parts[:i])
            if module in modules and module != name and module not in own_packages:
                found.add(module)

    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tunelab":
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "tunelab":
                continue
            add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    add(f"{base}.{alias.name}")
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {
        name: imports_of(name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py")
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]], within: set[str] | None = None) -> list[str] | None:
    """One cycle as a path [a, b, ..., a] (only through the nodes `within`, when given), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if within is not None and target not in within:
                continue
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(within if within is not None else graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (each holds at least one cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_reader_sees_lazy_submodule_and_relative_imports() -> None:
    modules = {"tunelab", "tunelab.a", "tunelab.a.x", "tunelab.a.y", "tunelab.b", "tunelab.b.z", "tunelab.c"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "from tunelab.a import x\n"  # a submodule
        "from . import y\n"  # relative, inside tunelab.a
        "def f():\n"
        "    from tunelab.b.z import thing\n"  # lazy: counts, and so does the package above it
        "if TYPE_CHECKING:\n"
        "    from tunelab.c import Hint\n"  # never runs
    )
    assert imports_of("tunelab.a.w", source, modules) == {
        "tunelab.a.x",
        "tunelab.a.y",
        "tunelab.b",
        "tunelab.b.z",
    }
    assert imports_of("tunelab.c", "from tunelab.a import helper", modules) == {"tunelab.a"}
    assert "tunelab.curate.config" in import_graph()["tunelab.recipe"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    two = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c", "e"}, "e": set()}
    assert sorted(map(sorted, tangles(two))) == [["a", "b"], ["c", "d"]]


def test_no_import_cycle() -> None:
    graph = import_graph()
    cycles = [" -> ".join(find_cycle(graph, component) or []) for component in tangles(graph)]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_evaluate_does_not_import_train() -> None:
    graph = import_graph()
    offenders = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if source == "tunelab.evaluate" or source.startswith("tunelab.evaluate.")
        for target in targets
        if target == "tunelab.train" or target.startswith("tunelab.train.")
    )
    assert offenders == [], "evaluate imports train: " + "; ".join(offenders)


# the layers below train and evaluate: they are used by those, and never use them
LOWER_LAYERS = ("records", "embeddings", "modeling", "warehouse", "curate")


def test_lower_layers_never_import_train_or_evaluate() -> None:
    graph = import_graph()
    offenders = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if any(
            source == f"tunelab.{layer}" or source.startswith(f"tunelab.{layer}.") for layer in LOWER_LAYERS
        )
        for target in targets
        if target.startswith(("tunelab.train", "tunelab.evaluate"))
    )
    assert offenders == [], "a lower layer imports train/evaluate: " + "; ".join(offenders)


# A statement that reads or writes a table: SELECT ... FROM, INSERT ... INTO, UPDATE ... SET, DELETE FROM.
SQL = re.compile(r"\b(select|insert|update|delete)\b.+\b(from|into|set)\b", re.IGNORECASE | re.DOTALL)
# The warehouse package owns its SQL; the dashboard's queries module is its read-only query layer.
SQL_HOMES = ("tunelab/warehouse/", "tunelab/dashboards/queries.py")


def warehouse_tables() -> set[str]:
    """Every table and view the warehouse defines (schema.sql, views.sql)."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in (PACKAGE / "warehouse").glob("*.sql"))
    names = re.findall(
        r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", text, re.I
    )
    return {name.lower() for name in names}


def touches_warehouse(text: str, tables: set[str]) -> bool:
    """SQL (by the regex above) that names a warehouse table after FROM / JOIN / INTO / UPDATE / TABLE."""
    if not SQL.search(text):
        return False
    named = re.findall(r"\b(?:from|join|into|update|table)\s+(\w+)", text, re.IGNORECASE)
    return any(name.lower() in tables for name in named)


def _examples_for_people(tree: ast.AST) -> set[int]:
    """Literals that are text for people, not queries tunelab runs: docstrings, the values of constants
    named *EXAMPLES* (sample queries the SQL console offers, run read-only through warehouse.usersql like
    anything typed there), and hints that suggest a `tunelab sql "..."` command line."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        ):
            skipped.add(id(node.body[0].value))
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and "EXAMPLES" in t.id for t in targets) and node.value is not None:
            skipped.update(id(inner) for inner in ast.walk(node.value))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "tunelab sql " in node.value:
            skipped.add(id(node))
    return skipped


def sql_literals(source: str, tables: set[str]) -> list[tuple[int, str]]:
    """(line, text) of the string literals (f-strings with their holes as {}) that query warehouse tables."""
    tree = ast.parse(source)
    skipped = _examples_for_people(tree)
    found = []
    parts_of_fstrings = {
        id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
    }
    for node in ast.walk(tree):
        if id(node) in parts_of_fstrings:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
            parts = [part for part in node.values if isinstance(part, ast.Constant)]
            if not all(id(part) in skipped for part in parts) and touches_warehouse(text, tables):
                found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            if touches_warehouse(node.value, tables):
                found.append((node.lineno, node.value))
    return found


def test_the_sql_rule_finds_queries_and_spares_prose() -> None:
    tables = warehouse_tables()
    assert {"runs", "decisions", "samples", "v_drop_reasons", "v_lineage"} <= tables
    source = (
        '"""Reads runs: select the rows from runs, we said."""\n'
        'RE = r"^\\s*(select|with|from)"\n'  # a pattern, no table
        'WRAP = "SELECT * FROM ({}) AS user_query"\n'  # wraps a user's query, no table
        'EXAMPLES = [("Runs", "SELECT run_id FROM runs")]\n'
        "HINT = 'Next: tunelab sql \"select * from v_drop_reasons\"'\n"
        "def f(con, t):\n"
        '    con.execute("SELECT run_id FROM runs WHERE status = ?")\n'
        '    con.execute(f"DELETE FROM decisions WHERE curation_id = {t}")\n'
        "    con.execute(\"UPDATE runs SET status = 'failed'\")\n"
    )
    assert [line for line, _ in sql_literals(source, tables)] == [7, 8, 9]


def test_sql_lives_in_the_warehouse_package() -> None:
    tables = warehouse_tables()
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(SQL_HOMES):
            continue
        for line, text in sql_literals(path.read_text(encoding="utf-8"), tables):
            offenders.append(f"{relative}:{line}: {' '.join(text.split())[:80]}")
    assert offenders == [], "SQL over warehouse tables outside tunelab/warehouse:\n" + "\n".join(offenders)


HEAVY = ("torch", "transformers", "trl", "streamlit", "polars")


def test_help_imports_no_heavy_library() -> None:
    script = (
        "import sys, typer\n"
        "from tunelab.cli import app\n"
        "typer.main.get_command(app)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"tunelab --help imports {result.stdout.strip()}"
    shown = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert shown.returncode == 0 and "curate" in shown.stdout, shown.stderr
