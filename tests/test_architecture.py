"""The layout's rules, checked on the source: no import cycle, no reaching into another
subpackage's underscore names nor a sibling module's, the engine reached only through its
facade, no Qt outside ``plugin/_qt``, short modules, one manifest."""

from __future__ import annotations

import ast
import functools
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

import napari_ecc_align

PACKAGE = Path(napari_ecc_align.__file__).parent
ROOT = "napari_ecc_align"
QT_MODULES = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt"}
DEPRECATED_ALIASES = {f"{ROOT}._batch"}  # kept for one release; only forwards to batch
LONG_MODULE = 520  # lines; a longer module says why in its docstring ("Long because ...")


def _module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


@functools.cache
def _rebound(package: str) -> frozenset[str]:
    """Names a package's ``__init__`` binds to something other than its submodule of that
    name: ``from .difference import difference`` makes ``engine.difference`` the function."""
    if package not in MODULES or not _is_package(package):
        return frozenset()
    names = set()
    for node in ast.parse(MODULES[package].read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            base = _resolve(package, node)
            names.update(
                alias.asname or alias.name
                for alias in node.names
                if f"{base}.{alias.name}" not in MODULES
            )
    return frozenset(names)


def _imports(module: str):
    """(imported module, imported name or None, at module level?) for every import."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES and alias.name not in _rebound(base):
                    # `from pkg import submodule`
                    yield submodule, None, id(node) in top_level
                else:
                    yield base, alias.name, id(node) in top_level


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_walk_sees_every_subpackage():
    # Guards the other tests against walking nothing.
    assert {_subpackage(m) for m in MODULES} >= {
        "engine", "stack", "io", "batch", "cli", "plugin", "data",
    }  # fmt: skip
    assert sum(1 for m in MODULES for _ in _imports(m)) > 100


def test_no_import_cycle():
    graph = {
        module: {target for target, _, _ in _imports(module) if target in MODULES}
        for module in MODULES
    }
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_no_underscore_name_from_another_subpackage():
    offences = []
    for module in MODULES:
        if module in DEPRECATED_ALIASES:
            continue
        for target, name, _ in _imports(module):
            if not target.startswith(ROOT) or _subpackage(target) == _subpackage(module):
                continue
            private_path = any(part.startswith("_") for part in target.split(".")[1:])
            private_name = name is not None and name.startswith("_") and not name.startswith("__")
            if private_path or private_name:
                offences.append(f"{module} imports {target}{'.' + name if name else ''}")
    assert not offences, "\n".join(offences)


def test_the_engine_knows_nothing_of_the_rest():
    outside = [
        f"{module} imports {target}"
        for module in MODULES
        if _subpackage(module) == "engine"
        for target, _, _ in _imports(module)
        if target.startswith(ROOT) and _subpackage(target) != "engine"
    ]
    assert not outside, "\n".join(outside)


def test_no_underscore_name_from_a_sibling_module():
    # A name two modules share is part of the subpackage's inside API: it has a public name,
    # so moving code between modules (the engine's file split) never breaks a private import.
    offences = [
        f"{module} imports {target}.{name}"
        for module in MODULES
        for target, name, _ in _imports(module)
        if target in MODULES
        and target != module
        and _subpackage(target) == _subpackage(module)
        and name is not None
        and name.startswith("_")
        and not name.startswith("__")
    ]
    assert not offences, "\n".join(offences)


ENGINE = f"{ROOT}.engine"


def test_the_rest_reaches_the_engine_only_through_its_facade():
    # The engine's modules are its private layout; the package's __init__ is the contract.
    offences = [
        f"{module} imports {target}"
        for module in MODULES
        if _subpackage(module) != "engine" and module not in DEPRECATED_ALIASES
        for target, _, _ in _imports(module)
        if target.startswith(f"{ENGINE}.")
    ]
    assert not offences, "\n".join(offences)


def test_the_engine_facade_exports_what_the_rest_imports():
    import napari_ecc_align.engine as engine

    exported = set(engine.__all__)
    assert all(hasattr(engine, name) for name in exported)
    used = {
        name
        for module in MODULES
        if _subpackage(module) != "engine"
        for target, name, _ in _imports(module)
        if target == ENGINE and name is not None
    }
    assert used, "the walk found no import of the engine facade"
    assert used <= exported, f"imported but not in engine.__all__: {sorted(used - exported)}"


def test_qt_only_in_plugin_qt():
    offences = [
        f"{module} imports {target}"
        for module in MODULES
        if not module.startswith(f"{ROOT}.plugin._qt")
        for target, _, top in _imports(module)
        if top and target.split(".")[0] in QT_MODULES | {"napari", "magicgui"}
    ]
    assert not offences, "\n".join(offences)


def test_importing_the_library_and_the_glue_loads_no_qt():
    code = (
        "import sys, napari_ecc_align, napari_ecc_align.data, napari_ecc_align.cli, "
        "napari_ecc_align.plugin.layers, napari_ecc_align.plugin.jobs, "
        "napari_ecc_align.plugin.commands, napari_ecc_align.plugin.sample_data\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(QT_MODULES)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_modules_are_short_or_say_why():
    long = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LONG_MODULE and "Long because" not in (ast.get_docstring(
            ast.parse(text)) or ""):  # fmt: skip
            long.append(f"{module}: {text.count(chr(10))} lines")
    assert not long, "\n".join(long)


def test_every_module_says_what_it_holds():
    missing = [m for m, p in MODULES.items() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing


def test_deprecated_batch_alias_still_works_and_warns():
    from napari_ecc_align import _batch

    with pytest.warns(DeprecationWarning, match="napari_ecc_align._batch is deprecated"):
        batch_align = _batch.batch_align
    assert batch_align is napari_ecc_align.batch_align
