"""The layers of ``shared/``, read from the folder names, and the rule that imports only
point down. Every import of every module counts, lazy ones inside functions included.

Lowest first:

0. ``errors``, ``settings``, ``paths``: what everything may use;
1. ``rpc`` (the gRPC bootstrap), ``storage`` (SQL tables), ``data`` (datasets, the product);
2. the domain: ``search``, ``models`` (inference only), ``intent``, ``ranking``,
   ``experiments``, ``simulation``, ``recommendation``;
3. ``contracts``: the protos to the domain's types and back, one module a contract;
4. ``training`` (with export and publish) and ``evaluation``;
5. ``runtime``: launching a suite and loading it with a catalog;
6. ``cli`` and ``bench``.

A module imports its own layer or lower ones, and the packages of one layer do not import
each other in a circle. ``shared/`` never imports ``services/``; a service imports
``shared/`` up to layer 4 (not the launcher, the command line or the benchmarks) and never
another service: services talk through the contracts.
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "settings", "paths"),
    ("rpc", "storage", "data"),
    ("search", "models", "intent", "ranking", "experiments", "simulation", "recommendation"),
    ("contracts",),
    ("training", "evaluation"),
    ("runtime",),
    ("cli", "bench"),
)
LAYER_OF = {package: number for number, names in enumerate(LAYERS) for package in names}
# The highest layer of shared/ a service may import.
SERVICE_CEILING = LAYER_OF["training"]
# Generated gRPC stubs (imported as ``shopsense.*``), not part of the layering.
GENERATED = "gen"


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _shared_package(module: str) -> str | None:
    """``shared.search.bm25`` -> ``search``; None outside shared/ (or a bare ``shared``)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "shared" and len(parts) > 1 else None


def layer_violations(root: Path) -> list[str]:
    """Every import that breaks the rules, as ``file:line: what``; [] when none."""
    problems: list[str] = []
    edges: dict[str, dict[str, str]] = defaultdict(dict)  # package -> imported -> where
    for path in sorted((root / "shared").rglob("*.py")):
        relative = path.relative_to(root)
        package = relative.parts[1].removesuffix(".py")
        if package in (GENERATED, "__init__"):
            continue
        if package not in LAYER_OF:
            problems.append(f"{relative}: shared/{package} is in no layer (add it to LAYERS)")
            continue
        for line, module in _imports(path):
            where = f"{relative}:{line}"
            if module.split(".")[0] == "services":
                problems.append(f"{where}: shared/ imports a service ({module})")
                continue
            target = _shared_package(module)
            if target is None or target in (package, GENERATED):
                continue
            if target not in LAYER_OF:
                problems.append(f"{where}: imports {module}, whose package is in no layer")
            elif LAYER_OF[target] > LAYER_OF[package]:
                problems.append(
                    f"{where}: {package} (layer {LAYER_OF[package]}) imports {module} "
                    f"(layer {LAYER_OF[target]}): imports point down only"
                )
            else:
                edges[package].setdefault(target, where)
    problems += _cycles(edges)
    for path in sorted((root / "services").rglob("*.py")):
        relative = path.relative_to(root)
        service = relative.parts[1]
        for line, module in _imports(path):
            where = f"{relative}:{line}"
            parts = module.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] != service:
                problems.append(f"{where}: service {service} imports another service ({module})")
            target = _shared_package(module)
            if target in LAYER_OF and LAYER_OF[target] > SERVICE_CEILING:
                problems.append(
                    f"{where}: service {service} imports {module} (layer {LAYER_OF[target]}; "
                    f"services use layers up to {SERVICE_CEILING})"
                )
    return problems


def _cycles(edges: dict[str, dict[str, str]]) -> list[str]:
    """One line per circle of packages that import each other (same-layer imports)."""
    found: list[str] = []
    seen: set[frozenset[str]] = set()

    def walk(start: str, node: str, trail: list[str]) -> None:
        for target in sorted(edges.get(node, {})):
            if target == start:
                circle = [*trail, start]
                key = frozenset(circle)
                if key not in seen:
                    seen.add(key)
                    hops = ", ".join(
                        f"{a} -> {b} ({edges[a][b]})" for a, b in itertools.pairwise(circle)
                    )
                    found.append(f"import cycle between packages: {hops}")
            elif target not in trail:
                walk(start, target, [*trail, target])

    for package in sorted(edges):
        walk(package, package, [package])
    return found


def test_imports_point_down_the_layers() -> None:
    assert layer_violations(REPO) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (tmp_path / "services").mkdir(exist_ok=True)
    return tmp_path


def test_an_upward_import_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "shared/storage/rows.py": """\
                import json

                def load():
                    from shared.search.index import CatalogIndex
                    return CatalogIndex
            """,
            "shared/search/index.py": "from shared.storage.rows import load\n",
        },
    )
    assert layer_violations(root) == [
        "shared/storage/rows.py:4: storage (layer 1) imports shared.search.index (layer 2): "
        "imports point down only"
    ]


def test_services_and_circles_are_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "shared/intent/a.py": "from shared.search import b\n",
            "shared/search/b.py": "import shared.intent.a\n",
            "shared/data/c.py": "from services.gateway.server import create_server\n",
            "services/gateway/server.py": "from services.retrieval import server\n",
            "services/ranking/server.py": "from shared.cli.main import main\n",
        },
    )
    assert layer_violations(root) == [
        "shared/data/c.py:1: shared/ imports a service (services.gateway.server)",
        "import cycle between packages: intent -> search (shared/intent/a.py:1), "
        "search -> intent (shared/search/b.py:1)",
        "services/gateway/server.py:1: service gateway imports another service "
        "(services.retrieval)",
        "services/ranking/server.py:1: service ranking imports shared.cli.main (layer 6; "
        "services use layers up to 4)",
    ]


def test_a_package_outside_the_layers_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"shared/helpers/misc.py": "x = 1\n"})
    assert layer_violations(root) == [
        "shared/helpers/misc.py: shared/helpers is in no layer (add it to LAYERS)"
    ]
