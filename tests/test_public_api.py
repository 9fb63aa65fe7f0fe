"""The public API: every documented name importable from ``napari_ecc_align``, documented
in numpydoc, and its examples true."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import napari_ecc_align

# What the README tells users to call (checks and users rely on these names).
PUBLIC = {
    "align", "iter_align", "Progress", "Template", "warp", "difference", "Alignment",
    "AlignmentError", "align_stack", "iter_align_stack", "FrameProgress", "warp_stack",
    "StackAlignment", "Canvas", "batch_align", "BatchReport", "read_image", "write_image",
}  # fmt: skip
README = Path(__file__).parents[1] / "README.md"


def test_every_public_name_is_exported():
    assert PUBLIC <= set(napari_ecc_align.__all__)
    for name in napari_ecc_align.__all__:
        assert hasattr(napari_ecc_align, name), name


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_names_have_numpydoc(name):
    obj = getattr(napari_ecc_align, name)
    doc = inspect.getdoc(obj)
    assert doc and len(doc.splitlines()[0]) > 10, f"{name} has no summary line"
    if inspect.isfunction(obj):
        assert "Parameters\n----------" in doc, f"{name}: no Parameters section"
        returns_none = inspect.signature(obj).return_annotation in (None, "None")
        assert returns_none or re.search(r"Returns\n-{7}|Yields\n-{6}", doc), name
    elif inspect.isclass(obj) and not issubclass(obj, Exception):
        assert re.search(r"(Attributes|Parameters)\n-{10}", doc), f"{name}: no Attributes"


def test_the_readme_imports_only_public_names():
    code = "\n".join(re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S))
    imports = re.findall(r"from (napari_ecc_align[\w.]*) import ([\w, ]+)", code)
    assert len(imports) >= 4  # the walk found the README's examples
    for module, names in imports:
        assert not any(part.startswith("_") for part in module.split(".")), module
        mod = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert not name.startswith("_") and hasattr(mod, name), f"{module}.{name}"
    private = re.findall(r"napari_ecc_align\._[a-z]\w*", README.read_text())
    assert set(private) <= {"napari_ecc_align._batch"}, private  # the deprecated alias, named


def _library_modules():
    for info in pkgutil.walk_packages(napari_ecc_align.__path__, "napari_ecc_align."):
        if "._qt" in info.name or info.name.endswith(("._batch", "cli.demo")):
            continue  # Qt, the deprecated alias (warns on access), napari start-up
        yield info.name


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    examples = 0
    for name in _library_modules():
        module = importlib.import_module(name)
        for test in finder.find(module, name, globs={}):
            examples += len(test.examples)
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring examples failed (see output)"
    assert examples >= 40  # the examples of align, Template, iter_align, data, ... ran
