"""The layering, checked from the source: which layer may import which, where settings are read,
where boto3 and httpx may be used, and that runtime imports form no cycle.

Every module under ``layers/subconscious`` and ``functions`` is parsed (never imported). A layer
is a top-level module or package of ``subconscious`` (or ``functions``), named in ``LAYER_OF``.
Imports inside ``if TYPE_CHECKING:`` are types only: they count for the layer rules (a type is a
dependency too) except where ``TYPE_ONLY`` allows them, and never for cycles (they never run).
Imports inside functions (deferred to keep cold starts short) count as runtime imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"subconscious": REPO / "layers" / "subconscious", "functions": REPO / "functions"}

# Each top-level module or package → its layer. A new one must be placed here on purpose.
LAYER_OF = {
    "subconscious": "package",  # the package's own __init__ (a docstring)
    "subconscious.errors": "foundation",
    "subconscious.money": "foundation",
    "subconscious.catalogue": "foundation",
    "subconscious.observability": "foundation",
    "subconscious.webhook_signing": "foundation",
    "subconscious.models": "models",
    "subconscious.throughput_model": "throughput_model",
    "subconscious.planner": "planner",
    "subconscious.aws": "aws",
    "subconscious.dal": "dal",
    "subconscious.market": "market",
    "subconscious.render": "render",
    "subconscious.notify": "notify",
    "subconscious.settings": "settings",
    "subconscious.logic": "logic",
    "subconscious.services": "services",
    "subconscious.http_errors": "http_errors",
    "functions": "handlers",
}

# The pure layers: the only layers each may import.
ONLY = {
    "package": frozenset[str](),
    "foundation": frozenset({"foundation"}),
    "models": frozenset({"models", "foundation"}),
    "throughput_model": frozenset({"throughput_model", "models", "foundation"}),
    "planner": frozenset({"planner", "throughput_model", "models", "foundation"}),
    "aws": frozenset({"aws", "foundation"}),
}
# The others: the layers each must not import. No layer of the package imports a handler.
NEVER = {
    "dal": frozenset({"planner", "logic", "market", "render", "services", "handlers"}),
    "market": frozenset({"dal", "logic", "render", "services", "handlers"}),
    "render": frozenset({"planner", "dal", "market", "logic", "services", "handlers"}),
    # the webhook sender: reuses the render step's public-address guard (render/address.py)
    "notify": frozenset({"planner", "dal", "market", "logic", "services", "handlers"}),
    "settings": frozenset({"planner", "market", "render", "logic", "services", "handlers"}),
    "logic": frozenset({"services", "handlers"}),
    "services": frozenset({"logic", "handlers"}),
    "http_errors": frozenset({"logic", "services", "handlers"}),
    "handlers": frozenset[str](),
}
# (importer layer, imported layer) allowed where the import is a type only: logic's functions
# take the Services the composition root built, which sits above them.
TYPE_ONLY = frozenset({("logic", "services")})

# Settings are read once, by the composition root: nowhere else constructs or loads them, nor
# reads the environment (a handler asks ``services()``).
SETTINGS_READERS = frozenset({"subconscious.settings", "subconscious.services"})
# Third-party clients and the modules that may import them (a module, or a package and all in
# it).
CLIENTS_IN = {
    "boto3": ("subconscious.aws", "subconscious.dal", "subconscious.market.ec2"),
    "botocore": ("subconscious.aws", "subconscious.dal", "subconscious.market.ec2"),
    "httpx": ("subconscious.market", "subconscious.render", "subconscious.notify"),
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # the module, resolved as far as the known modules tell
    line: int
    type_only: bool


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, node: ast.ImportFrom, known: frozenset[str]) -> list[str]:
    """``from a import b`` imports module ``a.b`` where there is one, else names of ``a``."""
    base = node.module or ""
    if node.level:  # relative: from the importer's package
        parts = module.split(".")[: -node.level]
        base = ".".join([*parts, base] if base else parts)
    subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
    return subs if len(subs) == len(node.names) else [base, *subs]


def imports_of(module: str, tree: ast.Module, known: frozenset[str]) -> Iterator[Import]:
    def walk(nodes: list[ast.stmt], type_only: bool) -> Iterator[Import]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from walk(node.body, True)
                yield from walk(node.orelse, type_only)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, node.lineno, type_only)
            elif isinstance(node, ast.ImportFrom):
                for name in _resolve(module, node, known):
                    yield Import(module, name, node.lineno, type_only)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    yield from walk(_statements(getattr(node, field, [])), type_only)

    yield from walk(tree.body, False)


def _statements(nodes: list[ast.AST]) -> list[ast.stmt]:
    """Statements nested in a block (an ``except`` handler's own body included)."""
    out: list[ast.stmt] = []
    for node in nodes:
        if isinstance(node, ast.ExceptHandler):
            out.extend(node.body)
        elif isinstance(node, ast.stmt):
            out.append(node)
    return out


def unit_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "functions":
        return "functions"
    return ".".join(parts[:2])


def _within(module: str, prefixes: tuple[str, ...] | frozenset[str]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def layer_violations(imports: list[Import]) -> Iterator[str]:
    for imp in imports:
        if not _within(imp.imported, tuple(ROOTS)):
            continue
        mine, theirs = LAYER_OF[unit_of(imp.importer)], LAYER_OF[unit_of(imp.imported)]
        if mine == theirs:
            continue
        banned = theirs not in ONLY[mine] if mine in ONLY else theirs in NEVER[mine]
        if banned and not (imp.type_only and (mine, theirs) in TYPE_ONLY):
            kind = "a type-only import" if imp.type_only else "an import"
            yield (
                f"{imp.importer}:{imp.line}: {kind} of {imp.imported}: "
                f"layer {mine!r} must not import layer {theirs!r}"
            )


def client_violations(imports: list[Import]) -> Iterator[str]:
    for imp in imports:
        library = imp.imported.split(".")[0]
        if library in CLIENTS_IN and not _within(imp.importer, CLIENTS_IN[library]):
            yield (
                f"{imp.importer}:{imp.line}: imports {library}, which only "
                f"{', '.join(CLIENTS_IN[library])} may use"
            )


def settings_violations(module: str, tree: ast.Module) -> Iterator[str]:
    if module in SETTINGS_READERS:
        return
    for node in ast.walk(tree):
        what = _reads_settings(node)
        if what:
            yield (
                f"{module}:{getattr(node, 'lineno', 0)}: {what}: settings are read only in "
                f"{' and '.join(sorted(SETTINGS_READERS))} (a handler uses services())"
            )


def _reads_settings(node: ast.AST) -> str | None:
    """How ``node`` reads settings or the environment, if it does."""
    if isinstance(node, ast.Call) and _name(node.func) == "Settings":
        return "constructs Settings"
    if isinstance(node, ast.Name | ast.Attribute) and _name(node) == "load_settings":
        return "uses load_settings"
    if isinstance(node, ast.Attribute) and _name(node.value) == "os":
        return f"reads os.{node.attr}" if node.attr in ("environ", "getenv") else None
    if isinstance(node, ast.ImportFrom):
        names = {alias.name for alias in node.names}
        if "load_settings" in names:
            return "uses load_settings"
        if node.module == "os" and names & {"environ", "getenv"}:
            return "imports the environment from os"
    return None


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def cycles(imports: list[Import], modules: frozenset[str]) -> list[list[str]]:
    """Each cycle of runtime imports among ``modules``, once (depth-first search)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if not imp.type_only and imp.imported in modules and imp.imported != imp.importer:
            graph[imp.importer].add(imp.imported)
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def check(sources: Mapping[str, str]) -> list[str]:
    """Every broken rule in ``sources`` (module name → source text)."""
    known = frozenset(sources)
    unplaced = sorted({unit_of(m) for m in known} - set(LAYER_OF))
    if unplaced:
        return [
            f"{unit}: a top-level module no layer names; add it to LAYER_OF in "
            f"tests/unit/test_import_rules.py with the layer it belongs to"
            for unit in unplaced
        ]
    problems: list[str] = []
    imports: list[Import] = []
    for module, source in sorted(sources.items()):
        tree = ast.parse(source)
        imports.extend(imports_of(module, tree, known))
        problems.extend(settings_violations(module, tree))
    unknown = sorted(
        {i.imported for i in imports if _within(i.imported, tuple(ROOTS))}
        - known
        - {unit_of(m) for m in known}
    )
    problems.extend(f"imports {name}, which is no module here" for name in unknown)
    problems.extend(layer_violations([i for i in imports if i.imported not in unknown]))
    problems.extend(client_violations(imports))
    problems.extend(f"import cycle: {' → '.join(c)}" for c in cycles(imports, known))
    return problems


def repository_sources() -> dict[str, str]:
    sources = {}
    for top, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


# --- the code keeps the rules ---
def test_the_code_keeps_the_import_rules() -> None:
    sources = repository_sources()
    assert "subconscious.logic.render_run" in sources and "functions.api.handler" in sources
    problems = check(sources)
    assert not problems, "\n".join(problems)


# --- the checker reports what breaks them ---
BASE = {
    "subconscious": '"""the package"""',
    "subconscious.models": "from subconscious.models.spot import X\n",
    "subconscious.models.spot": "from subconscious.catalogue import canonical\n",
    "subconscious.catalogue": "import re\n",
    "subconscious.market": "",
    "subconscious.market.base": "from subconscious.models import Machine\n",
    "subconscious.planner": "",
    "subconscious.planner.reaper": "from subconscious.models import Machine\n",
    "subconscious.services": "from subconscious.settings import load_settings\nload_settings()\n",
    "subconscious.settings": "import os\nSettings()\nos.environ.get('X')\n",
    "subconscious.logic": "",
    "subconscious.logic.render_run": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from subconscious.services import Services\n"
    ),
    "subconscious.dal": "",
    "subconscious.dal.runs": "def client():\n    import boto3\n",
    "functions": "",
    "functions.api.handler": "from subconscious.services import services\n",
}


def test_a_clean_synthetic_package_passes() -> None:
    assert check(BASE) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "subconscious.planner.reaper",
            "from subconscious.market.base import LABEL_PREFIX\n",
            "layer 'planner' must not import layer 'market'",
        ),
        (
            "subconscious.planner.reaper",
            "def f():\n    from subconscious.dal import runs\n",  # deferred still counts
            "layer 'planner' must not import layer 'dal'",
        ),
        (
            "subconscious.models.spot",
            "from subconscious.planner import reaper\n",
            "layer 'models' must not import layer 'planner'",
        ),
        (
            "subconscious.dal.runs",
            "from subconscious.planner.reaper import SpotOutlook\n",
            "layer 'dal' must not import layer 'planner'",
        ),
        (
            "subconscious.logic.render_run",
            "from subconscious.services import Services\n",  # at runtime, not a type only
            "an import of subconscious.services: layer 'logic' must not import layer 'services'",
        ),
        (
            "subconscious.market.base",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from subconscious.logic import render_run\n",
            "a type-only import of subconscious.logic.render_run: layer 'market'",
        ),
        (
            "functions.api.handler",
            "from subconscious.settings import load_settings\n",
            "uses load_settings: settings are read only in",
        ),
        ("functions.api.handler", "import os\nos.getenv('SUBC_X')\n", "reads os.getenv"),
        ("subconscious.logic.render_run", "import os\nos.environ['X']\n", "reads os.environ"),
        ("subconscious.market.base", "from os import environ\n", "imports the environment"),
        (
            "subconscious.logic.render_run",
            "from subconscious import settings\nsettings.Settings()\n",
            "constructs Settings",
        ),
        ("subconscious.market.base", "import boto3\n", "imports boto3, which only"),
        ("subconscious.logic.render_run", "import httpx\n", "imports httpx, which only"),
        (
            "subconscious.models.spot",
            "from subconscious.models import X\n",
            "import cycle: subconscious.models → subconscious.models.spot → subconscious.models",
        ),
        ("subconscious.models.spot", "from subconscious.modles import X\n", "no module here"),
    ],
)
def test_the_checker_reports_a_broken_rule(module: str, source: str, expected: str) -> None:
    sources = {**BASE, module: BASE[module] + source}
    problems = check(sources)
    assert any(expected in p for p in problems), problems


def test_a_type_only_import_makes_no_cycle() -> None:
    type_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
    type_only += "    from subconscious.models import X\n"
    assert check({**BASE, "subconscious.models.spot": type_only}) == []


def test_every_layer_has_its_rule() -> None:
    assert set(LAYER_OF.values()) == set(ONLY) | set(NEVER)
    assert not set(ONLY) & set(NEVER)


def test_a_new_top_level_module_must_be_placed() -> None:
    problems = check({**BASE, "subconscious.newthing": "", "subconscious.newer.a": ""})
    assert problems == [
        f"{unit}: a top-level module no layer names; add it to LAYER_OF in "
        "tests/unit/test_import_rules.py with the layer it belongs to"
        for unit in ("subconscious.newer", "subconscious.newthing")
    ]
