"""The import contracts of fsv's layout (docs/architecture.md), read from the code's own imports
(inside functions too; those under ``if TYPE_CHECKING:`` do not run and do not count)."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fsv"

# The one circle allowed: the head registry's self-registration (asking for a card imports the
# package whose modules register the heads; each head module imports the registry).
REGISTRATION = {"fsv.heads.models", "fsv.heads.models.registry"}
# Stage two's layers that do not import each other (each imports only the shared modules below it).
INDEPENDENT = ("fsv.heads.models", "fsv.heads.engine", "fsv.heads.data")
STAGE_TWO = "fsv.heads"
# Imports inside functions in stage two, each with a comment on its line or the line above saying why.
MAX_LOCAL_IMPORTS = 3


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(name: str) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for each fsv import that module ``name`` runs."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    local: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in ast.walk(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    local.add(child.lineno)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for t in targets:
            while t and t not in MODULES and "." in t:
                t = t.rpartition(".")[0]
            if t in MODULES and t != name:
                out.append((t, node.lineno, node.lineno in local))
    return out


GRAPH = {name: {t for t, _, _ in imports(name)} for name in MODULES}


def circles() -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_no_circle_but_the_registry_self_registration() -> None:
    allowed = [c for c in circles() if not c <= REGISTRATION | {m for m in MODULES if within(m, "fsv.heads.models")}]
    assert not allowed, f"import circles: {[sorted(c) for c in allowed]}"


def test_stage_one_never_imports_stage_two() -> None:
    bad = [(a, b) for a in GRAPH if within(a, "fsv.pipeline") for b in GRAPH[a] if within(b, STAGE_TWO)]
    assert not bad, bad


def test_stage_two_models_engine_and_data_do_not_import_each_other() -> None:
    bad = [
        (a, b)
        for a in GRAPH
        for b in GRAPH[a]
        for pa in INDEPENDENT
        for pb in INDEPENDENT
        if pa != pb and within(a, pa) and within(b, pb)
    ]
    assert not bad, bad


def test_stage_two_layers_point_down() -> None:
    """models, engine and data import neither the kinds of run nor what the commands call."""
    above = ("fsv.heads.tasks", "fsv.heads.setup", "fsv.heads.evaluation", "fsv.heads.sweep")
    bad = [
        (a, b)
        for a in GRAPH
        for b in GRAPH[a]
        if any(within(a, p) for p in INDEPENDENT) and any(within(b, q) for q in above)
    ]
    assert not bad, bad


def test_the_shared_modules_import_no_stage() -> None:
    """errors, metrics, progress, detections, device, files, plugins: below both stages."""
    shared = ("fsv.errors", "fsv.metrics", "fsv.progress", "fsv.detections", "fsv.device", "fsv.files", "fsv.plugins")
    bad = [(a, b) for a in shared for b in GRAPH[a] if within(b, "fsv.pipeline") or within(b, STAGE_TWO)]
    assert not bad, bad


def test_few_imports_inside_functions_in_stage_two_each_saying_why() -> None:
    local = [
        (name, line, target)
        for name in MODULES
        if within(name, STAGE_TWO)
        for target, line, inside in imports(name)
        if inside
    ]
    assert len(local) <= MAX_LOCAL_IMPORTS, local
    for name, line, _ in local:
        text = MODULES[name].read_text(encoding="utf-8").splitlines()
        assert "#" in text[line - 1] or text[line - 2].strip().startswith("#"), f"{name}:{line} says not why"


def test_the_kind_of_run_is_told_apart_only_in_tasks() -> None:
    """Dispatch on the kind of run (the card's task compared, a configuration class tested) lives in
    ``fsv/heads/tasks/``: a new kind of run touches that package only. (Stage one's manifests have
    a ``task`` of their own, the kind of annotation a dataset has: not searched.)"""
    out = subprocess.run(
        [
            "git",
            "grep",
            "-nE",
            r"\.task ==|\.task !=|\[\"task\"\] ==|isinstance\([^)]*(TrainConfig|LocConfig|RecognitionConfig)",
            "--",
            "fsv",
            ":!fsv/pipeline",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert [line for line in out if not line.startswith("fsv/heads/tasks/")] == []
