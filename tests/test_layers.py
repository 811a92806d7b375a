"""The layer rule (README "Code layout"): packages import only their own layer and the
layers below it, and `core` imports nothing but the standard library, msgspec and itself.
Imports inside functions count too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dropbeard"
LAYERS = ["core", "store", "sync", "daemon", "cli"]  # each may import those before it
#: Standard-library modules that would give `core` IO or a clock.
CORE_FORBIDDEN_STDLIB = {
    "asyncio",
    "fcntl",
    "io",
    "os",
    "pathlib",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "tempfile",
    "threading",
    "time",
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dropbeard":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "top"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rsplit(".", 1)[0]
    return _imports_of_source(path.read_text(encoding="utf-8"), package)


def _imports_of_source(source: str, package: str) -> list[str]:
    tree = ast.parse(source)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                found.append(node.module)
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layered_modules() -> list[Path]:
    return [p for p in _modules() if _layer(_module_name(p)) in LAYERS]


@pytest.mark.parametrize("path", _layered_modules(), ids=lambda p: _module_name(p))
def test_imports_point_down(path: Path) -> None:
    own = _layer(_module_name(path))
    assert own is not None
    allowed = set(LAYERS[: LAYERS.index(own) + 1])
    bad = []
    for name in _imports(path):
        layer = _layer(name)
        if layer is None:
            continue
        if layer == "top":
            if name not in ("dropbeard",):  # the package itself: __version__ only
                bad.append(name)
        elif layer not in allowed:
            bad.append(name)
    assert not bad, f"{_module_name(path)} ({own}) imports a higher layer: {bad}"


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if _layer(_module_name(p)) == "core"],
    ids=lambda p: _module_name(p),
)
def test_core_is_pure(path: Path) -> None:
    bad = []
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "dropbeard":
            if _layer(name) != "core":
                bad.append(name)
        elif top == "__future__" or top == "msgspec":
            continue
        elif top not in sys.stdlib_module_names or top in CORE_FORBIDDEN_STDLIB:
            bad.append(name)
    assert not bad, f"{_module_name(path)} is in core but imports {bad}"


def test_every_module_is_in_a_layer() -> None:
    loose = [
        _module_name(p)
        for p in _modules()
        if _layer(_module_name(p)) not in LAYERS
        and _module_name(p) not in ("dropbeard", "dropbeard.__main__")
    ]
    assert not loose, f"modules outside the layer packages: {loose}"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rule can fail: an upward import inside a function and an IO import are found."""
    bad = tmp_path / "x.py"
    bad.write_text("import os\n\ndef f():\n    from dropbeard.sync import engine\n")
    names = _imports_of_source(bad.read_text(), "dropbeard.core")
    assert "os" in names and "dropbeard.sync" in names
    assert _layer("dropbeard.sync.engine") == "sync"
    assert "os" in CORE_FORBIDDEN_STDLIB
