"""Checks for .ci/check_wheel.sh, one per mode; each exits non-zero with a message on failure.

    python check_wheel.py archives DIST_DIR            what the sdist and the wheel carry
    python check_wheel.py manifest NPE2_JSON VERSION   `npe2 list --format json` shows the plugin
    python check_wheel.py dock                         napari docks the widget from site-packages

`manifest` and `dock` run with the fresh venv's python, from outside the repository.
"""

import json
import sys
import tarfile
import zipfile
from pathlib import Path

PLUGIN = "napari-ecc-align"
WIDGET = "ECC Align"
SAMPLES = {"score_pair", "natural_pair", "drift_stack", "volume_pair", "drift_volume"}
MENU = "napari/layers/register"


def fail(message):
    sys.exit(f"check_wheel: {message}")


def check_archives(dist):
    sdists = sorted(Path(dist).glob("napari_ecc_align-*.tar.gz"))
    wheels = sorted(Path(dist).glob("napari_ecc_align-*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        fail(f"expected one sdist and one wheel in {dist}, found {sdists + wheels}")
    with tarfile.open(sdists[0]) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = {name.removeprefix(top + "/") for name in sdist.getnames()}
        manifest = sdist.getmember(f"{top}/napari.yaml")
        if not manifest.isfile():
            fail("the sdist's top-level napari.yaml is not a plain file")
        packaged = sdist.extractfile(f"{top}/src/napari_ecc_align/napari.yaml").read()
        if sdist.extractfile(manifest).read() != packaged:
            fail("the sdist's top-level napari.yaml differs from the packaged one")
    wanted = {
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "napari.yaml",
        "src/napari_ecc_align/napari.yaml",
        "tests/conftest.py",
    }
    if missing := wanted - names:
        fail(f"the sdist lacks {sorted(missing)}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
    version = wheels[0].name.split("-")[1]
    wanted = {
        "napari_ecc_align/napari.yaml",
        f"napari_ecc_align-{version}.dist-info/licenses/LICENSE",
    }
    if missing := wanted - names:
        fail(f"the wheel lacks {sorted(missing)}")
    if strays := sorted(n for n in names if n.endswith(".pyc") or n.startswith("tests/")):
        fail(f"the wheel carries {strays[:5]}")
    print(f"archives: {sdists[0].name} and {wheels[0].name} carry license, manifest, tests")


def check_manifest(listing, version):
    plugins = {entry["name"]: entry for entry in json.loads(Path(listing).read_text())}
    entry = plugins.get(PLUGIN)
    if entry is None:
        fail(f"npe2 list does not show {PLUGIN}; it shows {sorted(plugins)}")
    if entry["version"] != version:
        fail(f"npe2 list shows {PLUGIN} {entry['version']}, the wheel is {version}")
    widgets = [w["display_name"] for w in entry["contributions.widgets"] or []]
    if widgets != [WIDGET]:
        fail(f"widgets are {widgets}, expected [{WIDGET!r}]")
    samples = {s["key"] for s in entry["contributions.sample_data"] or []}
    if samples != SAMPLES:
        fail(f"sample data keys are {sorted(samples)}, expected {sorted(SAMPLES)}")
    menus = entry["contributions.menus"] or {}
    if MENU not in menus:
        fail(f"menus are {sorted(menus)}, expected {MENU}")
    print(f"npe2 list: {PLUGIN} {version}, widget {WIDGET!r}, samples {sorted(samples)}, {MENU}")


def check_dock():
    import sysconfig

    import napari

    import napari_ecc_align

    site = Path(sysconfig.get_paths()["purelib"]).resolve()

    def installed(module_file):
        return site in Path(module_file).resolve().parents

    if not installed(napari_ecc_align.__file__):
        fail(f"napari_ecc_align comes from {napari_ecc_align.__file__}, not from {site}")
    viewer = napari.Viewer(show=False)
    try:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
        module = sys.modules[type(widget).__module__]
        if not installed(module.__file__):
            fail(f"the widget's module {module.__name__} comes from {module.__file__}")
        from qtpy import API_NAME

        print(
            f"dock: {type(widget).__name__} from {module.__name__} in {site} "
            f"(napari {napari.__version__}, {API_NAME}, napari_ecc_align "
            f"{napari_ecc_align.__version__})"
        )
    finally:
        viewer.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:] or [""]
    modes = {"archives": check_archives, "manifest": check_manifest, "dock": check_dock}
    if mode not in modes:
        fail(f"usage: check_wheel.py {{{'|'.join(modes)}}} ...")
    modes[mode](*args)
