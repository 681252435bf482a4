"""The shape of the code, checked by reading it (``ast``; nothing is imported).

Run alone with ``python3 dev.py test tests/test_architecture.py``; ``.ci/run``
runs it before the test suite. Each failure names the module, file and line.

* No import cycle between the modules of the app packages (``APP_PACKAGES``).
  Relative imports are resolved; an import under ``if TYPE_CHECKING:`` does
  not count (it never runs).
* No import inside a function, in the app packages, ``bench/``, ``examples/`` or ``tests/``:
  a function-local import hides a cycle or a module's real dependencies. The
  one exception is ``AppConfig.ready()``, where Django wants what needs the
  loaded models (targets, checks, signal receivers) imported.
* Dependencies point one way (``LAYERS``): ``core`` knows no first-party
  package; the domain (``executions`` without its edges) imports neither its
  edges (``api``, ``pages``, ``ops``, ``admin``, template tags, management commands) nor
  ``progress``, nor the running code (``EXECUTIONS_RUNNING``: tasks, runner, run context,
  targets, sweepers, worker hooks, webhook delivery), which imports the domain (only
  ``AppConfig.ready()`` loads it); no ``executions`` module imports ``progress``; only the entry
  points inside ``config``, and the tests, import ``config``; no app package
  imports the dev and test tooling or the examples, and the tooling knows the app only by its
  command lines; ``progress_client`` (a client of the running server) and the
  service import nothing of each other.
* Every ``# noqa`` and ``# type: ignore`` names its codes and says why, e.g.
  ``# noqa: BLE001 - why`` and ``# type: ignore[code]  # why``.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Every top-level package of ours (isort's first-party list in pyproject.toml).
FIRST_PARTY = (
    "bench", "config", "core", "devtools", "examples", "executions", "progress", "progress_client", "tests",
)
#: The service and its launcher: no import cycle between their modules.
APP_PACKAGES = ("config", "core", "devtools", "executions", "progress", "progress_client")
#: Where no function may import: the app packages plus the benchmarks and the tests.
NO_LOCAL_IMPORTS = (*APP_PACKAGES, "bench", "examples", "tests")
#: The surfaces of ``executions`` that sit on the domain, beside the ``progress`` app.
EXECUTIONS_EDGES = (
    "executions.admin",
    "executions.api",
    "executions.management",
    "executions.ops",
    "executions.pages",
    "executions.templatetags",
)
#: The running code of ``executions``: what a worker runs around a target. It imports the
#: domain; the domain never imports it (it queues a run through ``executions.broker``, by name).
EXECUTIONS_RUNNING = (
    "executions.context",
    "executions.maintenance",
    "executions.runner",
    "executions.targets",
    "executions.tasks",
    "executions.webhooks",
    "executions.worker",
)
#: The modules of ``config`` that may import it: the entry points (the package's
#: ``__init__`` loads the Celery app, Celery's convention). Settings are named in
#: ``DJANGO_SETTINGS_MODULE``, never imported.
CONFIG_ENTRY_POINTS = ("config", "config.asgi", "config.celery", "config.wsgi")
#: Dev and test tooling, and the examples (loaded only when EXECUTION_TARGET_MODULES
#: names one), which the service never imports.
TOOLING = ("bench", "devtools", "examples", "tests")


@dataclass(frozen=True)
class Import:
    """One ``import`` statement's target, as the importing module sees it."""

    importer: str
    target: str
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.importer} imports {self.target} ({self.where})"


def in_package(module: str, packages: tuple[str, ...] | str) -> bool:
    """Whether ``module`` is one of ``packages`` or inside one of them."""
    names = (packages,) if isinstance(packages, str) else packages
    return any(module == name or module.startswith(name + ".") for name in names)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the first-party packages by dotted name."""
    found: dict[str, Path] = {}
    for package in FIRST_PARTY:
        if (ROOT / package).is_dir():
            for path in sorted((ROOT / package).rglob("*.py")):
                found[module_name(path)] = path
    return found


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def is_type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def is_app_config_ready(function: ast.AST, parent: ast.AST | None) -> bool:
    """``def ready(self)`` in a class deriving from ``AppConfig``."""
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) or function.name != "ready":
        return False
    if not isinstance(parent, ast.ClassDef):
        return False
    return any(
        (isinstance(base, ast.Name) and base.id == "AppConfig")
        or (isinstance(base, ast.Attribute) and base.attr == "AppConfig")
        for base in parent.bases
    )


@dataclass(frozen=True)
class ImportSite:
    node: ast.Import | ast.ImportFrom
    function: str | None  # the enclosing function, if any
    in_ready: bool  # inside AppConfig.ready()
    type_checking: bool  # under ``if TYPE_CHECKING:``


def import_sites(tree: ast.Module) -> Iterator[ImportSite]:
    """Every import statement, with where it stands."""

    def visit(node: ast.AST, function: str | None, in_ready: bool, checking: bool) -> Iterator[ImportSite]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield ImportSite(node, function, in_ready, checking)
            return
        if is_type_checking_block(node):
            assert isinstance(node, ast.If)
            for statement in node.body:
                yield from visit(statement, function, in_ready, True)
            for statement in node.orelse:
                yield from visit(statement, function, in_ready, checking)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                name = child.name if not isinstance(child, ast.Lambda) else "<lambda>"
                yield from visit(child, name, in_ready or is_app_config_ready(child, node), checking)
            else:
                yield from visit(child, function, in_ready, checking)

    yield from visit(tree, None, False, False)


def resolve(importer: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules a statement imports: the most specific existing module each name names.

    ``from a.b import c`` imports the module ``a.b.c`` if there is one, else
    ``a.b`` (``c`` is then a name in it). Relative imports are resolved
    against the importing module's package.
    """
    known = modules()
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    targets = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}" if base else alias.name
        targets.append(candidate if candidate in known else base)
    return targets


@cache
def all_imports() -> tuple[tuple[Import, ImportSite], ...]:
    found = []
    for name, path in modules().items():
        for site in import_sites(parsed(path)):
            for target in resolve(name, path, site.node):
                found.append((Import(name, target, path, site.node.lineno), site))
    return tuple(found)


def runtime_import_sites() -> list[tuple[Import, ImportSite]]:
    """Imports that run (not under TYPE_CHECKING) of first-party modules, with where they stand."""
    return [
        (imp, site) for imp, site in all_imports() if not site.type_checking and in_package(imp.target, FIRST_PARTY)
    ]


def runtime_imports() -> list[Import]:
    """Imports that run (not under TYPE_CHECKING) of first-party modules."""
    return [imp for imp, _ in runtime_import_sites()]


def is_domain_module(module: str) -> bool:
    """A module of ``executions`` that is neither one of its edges nor its running code."""
    return in_package(module, "executions") and not in_package(module, (*EXECUTIONS_EDGES, *EXECUTIONS_RUNNING))


def nearest_module(target: str) -> str | None:
    """``target`` or its closest enclosing package that is one of our modules."""
    known = modules()
    parts = target.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges.get(node, {}):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, {}):
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return components


def cycle_path(component: list[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """One cycle through the component's first module, as the imports that make it (breadth-first)."""
    start = component[0]
    members = set(component)
    previous: dict[str, Import] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for successor, imp in sorted(edges.get(node, {}).items()):
            if successor not in members:
                continue
            if successor == start:
                path = [imp]
                while path[0].importer != start:
                    path.insert(0, previous[path[0].importer])
                return path
            if successor not in previous:
                previous[successor] = imp
                queue.append(successor)
    raise AssertionError(f"no cycle through {start}")


def test_no_import_cycle_between_modules() -> None:
    edges: dict[str, dict[str, Import]] = {}
    for imp in runtime_imports():
        target = nearest_module(imp.target)
        if target is None or not in_package(imp.importer, APP_PACKAGES) or not in_package(target, APP_PACKAGES):
            continue
        edges.setdefault(imp.importer, {}).setdefault(target, imp)
    found = [cycle_path(component, edges) for component in cycles(edges)]
    report = "".join(
        "  " + " -> ".join(imp.importer for imp in path) + f" -> {path[0].importer}\n"
        + "".join(f"      {imp}\n" for imp in path)
        for path in found
    )
    assert not found, f"import cycles (move the piece both need to a module both can import):\n{report}"


def test_no_function_local_imports() -> None:
    offenders = [
        f"  {imp.where}: {imp.importer} imports {imp.target} inside {site.function}()"
        for imp, site in all_imports()
        if site.function is not None and not site.in_ready and in_package(imp.importer, NO_LOCAL_IMPORTS)
    ]
    assert not offenders, (
        "imports inside functions (move them to the top of the module; if that makes a cycle, "
        "the piece both need belongs in another module):\n" + "\n".join(sorted(set(offenders)))
    )


def layering_violations() -> Iterator[str]:
    for imp, site in runtime_import_sites():
        source, target = imp.importer, imp.target
        if in_package(source, "core") and not in_package(target, "core"):
            yield f"core is the lowest layer and imports no first-party package: {imp}"
        if in_package(source, "executions") and in_package(target, "progress"):
            yield f"the domain's apps never import the streaming edge progress: {imp}"
        if (
            in_package(source, "executions")
            and not in_package(source, EXECUTIONS_EDGES)
            and in_package(target, EXECUTIONS_EDGES)
        ):
            yield f"a domain module imports an edge of executions: {imp}"
        if is_domain_module(source) and in_package(target, EXECUTIONS_RUNNING) and not site.in_ready:
            yield f"a domain module imports the running code (tasks, runner, ...): {imp}"
        if in_package(target, "config") and not (source in CONFIG_ENTRY_POINTS or in_package(source, "tests")):
            yield f"only config's entry points (and the tests) import config: {imp}"
        if in_package(source, ("config", "core", "executions", "progress")) and in_package(target, TOOLING):
            yield f"the service imports no dev or test tooling, nor the examples: {imp}"
        if in_package(source, "devtools") and in_package(target, ("config", "core", "executions", "progress")):
            yield f"devtools runs the service as processes and imports none of it: {imp}"
        if in_package(source, "progress_client") and not in_package(target, "progress_client"):
            yield f"progress_client talks to the server over HTTP only and imports none of it: {imp}"
        if in_package(source, ("config", "core", "executions", "progress")) and in_package(target, "progress_client"):
            yield f"the service imports nothing of its client: {imp}"


def test_dependencies_point_one_way() -> None:
    violations = sorted(set(layering_violations()))
    assert not violations, "imports against the layering (tests/test_architecture.py docstring):\n" + "\n".join(
        f"  {violation}" for violation in violations
    )


NOQA = re.compile(
    r"#\s*noqa(?P<colon>:?)\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?(?P<rest>.*)", re.IGNORECASE
)
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)")


def suppression_problems(source: str, where: str) -> Iterator[str]:
    """What is wrong with the ``noqa`` and ``type: ignore`` comments of ``source``."""
    comments = [
        token
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for token in comments:
        text, line = token.string, token.start[0]
        if (match := TYPE_IGNORE.search(text)) is not None:
            if not match["codes"]:
                yield f"{where}:{line}: `type: ignore` without an error code: {text}"
            elif not re.match(r"\s+#\s*\S", match["rest"]):
                yield f"{where}:{line}: `type: ignore{match['codes']}` without `  # why` after it: {text}"
        elif (match := NOQA.search(text)) is not None:
            if not match["colon"] or not match["codes"]:
                yield f"{where}:{line}: blanket `noqa` (name the rule): {text}"
            elif not re.match(r"\s+-\s+\S", match["rest"]):
                yield f"{where}:{line}: `noqa: {match['codes']}` without ` - why` after it: {text}"


def python_files() -> Iterator[Path]:
    yield from sorted(ROOT.glob("*.py"))
    for package in FIRST_PARTY:
        if (ROOT / package).is_dir():
            yield from sorted((ROOT / package).rglob("*.py"))


def test_every_suppression_names_its_rule_and_says_why() -> None:
    problems = [
        problem
        for path in python_files()
        for problem in suppression_problems(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert not problems, "\n".join(problems)


# --- the checker checks itself on small examples -------------------------------------


def sites_of(source: str) -> list[ImportSite]:
    return list(import_sites(ast.parse(source)))


def test_a_function_local_import_is_found_and_ready_is_the_exception() -> None:
    sites = sites_of(
        "import os\n"
        "def f():\n    import json\n"
        "class C(AppConfig):\n    def ready(self):\n        from . import signals\n"
        "class D:\n    def ready(self):\n        import re\n"
    )
    assert [(site.function, site.in_ready) for site in sites] == [
        (None, False), ("f", False), ("ready", True), ("ready", False)
    ]


def test_imports_under_type_checking_do_not_count() -> None:
    sites = sites_of("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n")
    assert [(site.node.names[0].name, site.type_checking) for site in sites] == [
        ("TYPE_CHECKING", False), ("a", True), ("b", False)
    ]


def test_relative_imports_resolve_against_the_package() -> None:
    node = ast.parse("from ..models import Execution").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert resolve("executions.api.views", ROOT / "executions/api/views.py", node) == ["executions.models"]
    node = ast.parse("from . import views").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert resolve("executions.api", ROOT / "executions/api/__init__.py", node) == ["executions.api.views"]


def test_a_cycle_is_reported_with_its_lines() -> None:
    a_to_b = Import("a", "b", ROOT / "a.py", 3)
    b_to_a = Import("b", "a", ROOT / "b.py", 7)
    edges = {"a": {"b": a_to_b}, "b": {"a": b_to_a}, "c": {"a": Import("c", "a", ROOT / "c.py", 1)}}
    assert cycles(edges) == [["a", "b"]]
    assert cycle_path(["a", "b"], edges) == [a_to_b, b_to_a]


@pytest.mark.parametrize(
    ("comment", "ok"),
    [
        ("# noqa: BLE001 - any failure is a failed attempt", True),
        ("# noqa: F401, E402 - imported for its side effect", True),
        ("# noqa: BLE001", False),
        ("# noqa", False),
        ("# type: ignore[misc]  # twisted has no stubs", True),
        ("# type: ignore[misc]", False),
        ("# type: ignore", False),
    ],
)
def test_suppression_comments_need_a_code_and_a_reason(comment: str, ok: bool) -> None:
    assert (not list(suppression_problems(f"x = 1  {comment}\n", "example.py"))) is ok


def test_the_domain_is_executions_without_its_edges_and_its_running_code() -> None:
    assert is_domain_module("executions.services") and is_domain_module("executions.broker")
    assert not is_domain_module("executions.tasks") and not is_domain_module("executions.runner")
    assert not is_domain_module("executions.api.views") and not is_domain_module("progress.hub")
