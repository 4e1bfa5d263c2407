"""The architecture, asserted: packages are layers, imports only go downwards, and there are no loops.

Read from the source with ``ast`` (imports under ``TYPE_CHECKING`` count too: a loop hidden from the
interpreter is still a loop for a reader).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from fusion_modes import MODES
from fusion_modes.agreement import COMPARISONS, ComparisonName
from fusion_modes.base import ModeName
from gateway.config.providers import PROVIDER_CONFIG_TYPES
from gateway.providers import adapter_class
from gateway.providers.base import Provider

ROOT = Path(__file__).resolve().parent.parent

#: lowest first; a module may import its own layer and the ones before it
LAYERS = ["wire", "config", "books", "providers", "pipeline", "service", "routes", "face"]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("gateway", "fusion_modes"):
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in MODULES else base
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


GRAPH = {m: {d for d in _imports(p) if d in MODULES and d != m} for m, p in MODULES.items()}


def layer(module: str) -> str | None:
    """The layer of a gateway module; None for fusion_modes and for compare (a client-side command)."""
    parts = module.split(".")
    if parts[0] != "gateway" or len(parts) == 1:
        return None
    if parts[1] in ("app", "cli"):
        return "face"
    if parts[1] == "compare":
        return None
    assert parts[1] in LAYERS, f"{module}: not in a known layer"
    return parts[1]


def test_there_are_no_import_loops() -> None:
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for d in sorted(GRAPH[m]):
            if seen.get(d) == 1:
                loop = [*path[path.index(d):], d]
                pytest.fail("import loop: " + " -> ".join(loop))
            if d not in seen:
                visit(d, [*path, d])
        seen[m] = 2

    for m in sorted(GRAPH):
        if m not in seen:
            visit(m, [m])


def test_imports_only_go_down_the_layers() -> None:
    wrong = []
    for m, deps in GRAPH.items():
        lm = layer(m)
        for d in deps:
            ld = layer(d)
            if lm is not None and ld is not None and LAYERS.index(ld) > LAYERS.index(lm):
                wrong.append(f"{m} ({lm}) imports {d} ({ld})")
    assert wrong == []


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("fusion_modes", "gateway"),  # pure: prompts, verdicts, mode logic
        ("gateway.wire", "gateway."),  # leaves, except among themselves
        ("gateway.providers", "fusion_modes"),  # the simulator reads prompts from the outside
        ("gateway.compare", "gateway.pipeline"),  # a client of the HTTP API, not of the internals
        ("gateway.compare", "gateway.routes"),
    ],
)
def test_forbidden_imports(importer: str, forbidden: str) -> None:
    wrong = [
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        if m == importer or m.startswith(importer + ".")
        for d in deps
        if d.startswith(forbidden) and not d.startswith(importer)
    ]
    assert wrong == []


def test_nothing_but_the_command_line_imports_compare() -> None:
    users = {m for m, deps in GRAPH.items() if any(d.startswith("gateway.compare") for d in deps)}
    assert {u for u in users if not u.startswith("gateway.compare")} == {"gateway.cli"}


def test_each_mode_name_is_declared_once_and_registered() -> None:
    assert set(get_args(ModeName)) == set(MODES)
    assert all(name == mode.name for name, mode in MODES.items())


def test_each_comparison_name_is_declared_once_and_registered() -> None:
    assert set(get_args(ComparisonName)) == set(COMPARISONS)
    assert all(name == c.name for name, c in COMPARISONS.items())


def test_every_provider_type_names_an_adapter_that_serves_it() -> None:
    assert set(PROVIDER_CONFIG_TYPES) == {"openai", "anthropic", "gemini", "simulator"}
    for kind, cls in PROVIDER_CONFIG_TYPES.items():
        assert get_args(cls.model_fields["type"].annotation) == (kind,)
        config = cls.model_validate({"type": kind, "base_url": "http://127.0.0.1:9/v1"} if kind != "simulator"
                                    else {"type": kind})
        assert issubclass(adapter_class(config), Provider)
