"""The two stages stay apart, checked on the source (every import statement, at any depth, followed
transitively through vapipe's own modules):

- Stage 1 (`vapipe.features`) never reaches the models, training, fusion, post-processing or
  evaluation;
- Stage 2 never reaches a backbone kind or any other Stage 1 code; it reads Stage 1's output only
  through the store formats (`vapipe.features.cache`, `vapipe.features.mask_store`);
- the shared layer (specs, runtime, errors, data, the VA regions) reaches neither stage.
`vapipe.config`, `vapipe.predict` and `vapipe.cli` join the stages and may import both.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
STORE_FORMATS = {"vapipe.features", "vapipe.features.cache", "vapipe.features.mask_store"}
STAGE_2 = ("vapipe.models", "vapipe.training", "vapipe.fusion", "vapipe.post", "vapipe.evaluation", "vapipe.submission")
SHARED = ("vapipe.specs", "vapipe.runtime", "vapipe.errors", "vapipe.data", "vapipe.va_regions", "vapipe.logs")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in (SRC / "vapipe").rglob("*.py")}


def in_package(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@cache
def direct_imports(module: str) -> frozenset[str]:
    """vapipe modules a module imports anywhere in its file (packages of a dotted name included)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                if ".".join(parts[:i]) in MODULES:
                    found.add(".".join(parts[:i]))
    found.discard(module)
    return frozenset(found)


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for name in direct_imports(todo.pop()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def path_to(start: str, target: str) -> list[str]:
    """One import chain from start to target (for the failure message)."""
    parents, todo = {start: None}, [start]
    while todo:
        current = todo.pop(0)
        if current == target:
            chain = []
            while current:
                chain.append(current)
                current = parents[current]
            return chain[::-1]
        for name in sorted(direct_imports(current)):
            if name not in parents:
                parents[name] = current
                todo.append(name)
    return []


def violations(modules, forbidden) -> list[str]:
    return [" -> ".join(path_to(m, bad)) for m in modules for bad in sorted(reachable(m)) if forbidden(bad)][:5]


def stage_1(name: str) -> bool:
    return in_package(name, ["vapipe.features"]) and name not in STORE_FORMATS


def test_the_modules_are_found():
    assert {"vapipe.features.backbones", "vapipe.training.trainer", "vapipe.specs"} <= set(MODULES)


def test_stage_1_never_imports_stage_2():
    assert violations([m for m in MODULES if stage_1(m)], lambda n: in_package(n, STAGE_2)) == []


def test_stage_2_reads_stage_1_only_through_the_store_formats():
    assert violations([m for m in MODULES if in_package(m, STAGE_2)], stage_1) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if in_package(m, SHARED)))
def test_the_shared_layer_imports_neither_stage(module):
    assert violations([module], lambda n: stage_1(n) or in_package(n, STAGE_2)) == []


def test_the_rule_catches_an_import_through_a_chain():
    """Guard the checker itself: the trainer reaches the models; backbones reach face_backbones."""
    assert "vapipe.models.dasp" in reachable("vapipe.training.trainer")
    assert path_to("vapipe.features.extract", "vapipe.features.face_backbones")[-1] == "vapipe.features.face_backbones"
