"""The npe2 manifest: one source of truth, valid for npe2, every command importable.

The packaged ``src/napari_ecc_align/napari.yaml`` is the real file; the repository's
top-level ``napari.yaml`` is a relative link to it (an sdist stores it as a plain copy).
"""

import importlib
import os
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ROOT / "napari.yaml"
LINK_TARGET = "src/napari_ecc_align/napari.yaml"


def _packaged():
    return files("napari_ecc_align") / "napari.yaml"


def _commands():
    """(id, python_name) of every command, read as plain YAML so collection needs no npe2."""
    manifest = yaml.safe_load(_packaged().read_text(encoding="utf-8"))
    return [(c["id"], c["python_name"]) for c in manifest["contributions"]["commands"]]


def test_top_level_manifest_is_the_packaged_one():
    if TOP_LEVEL.is_symlink():
        assert os.readlink(TOP_LEVEL) == LINK_TARGET
    text = TOP_LEVEL.read_text(encoding="utf-8")
    if not TOP_LEVEL.is_symlink() and text.strip() == LINK_TARGET:
        # A checkout without symlinks (git on Windows by default) writes the link's target
        # as the file's text: it still names the packaged file, there is no second copy.
        text = (ROOT / LINK_TARGET).read_text(encoding="utf-8")
    assert text == _packaged().read_text(encoding="utf-8")


def test_manifest_validates_with_npe2():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(str(_packaged()))
    assert manifest.name == "napari-ecc-align"
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == ["ECC Align"]
    assert {s.key for s in contributions.sample_data} == {
        "score_pair",
        "natural_pair",
        "drift_stack",
        "volume_pair",
        "drift_volume",
    }
    assert "napari/layers/register" in contributions.menus
    # The entry point napari follows finds this same manifest.
    assert PluginManifest.from_distribution("napari-ecc-align") == manifest


@pytest.mark.parametrize(
    "python_name",
    [
        pytest.param(name, id=cid, marks=[pytest.mark.gui] if "._qt" in name else [])
        for cid, name in _commands()
    ],
)
def test_every_command_resolves_to_a_callable(python_name):
    module_name, _, attribute = python_name.partition(":")
    assert attribute, f"{python_name} has no ':attribute'"
    target = getattr(importlib.import_module(module_name), attribute)
    assert callable(target)
