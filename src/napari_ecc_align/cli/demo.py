"""``napari-ecc-align demo``: open napari with a sample and the docked widget, or save a
screenshot of it (``--screenshot``). The only command that imports napari, when it runs.

``--stack`` opens the drifting time-lapse; ``--volume`` the two-channel volume pair in
napari's 3D view (its screenshot is of the canvas: the rendered volumes).
"""

from __future__ import annotations

import argparse
import time

from ..io.images import (
    image_format,
    write_image,
)
from .messages import print_error, summarize

PLUGIN_NAME = "napari-ecc-align"


SCREENSHOT_SIZE = (1280, 800)  # width, height of the demo window in --screenshot mode
VOLUME_SCREENSHOT_SIZE = (1500, 860)  # wider: a canvas about square between the side panels
# The 3D view of --volume: the cube seen from a corner, showing the three faces where the
# two channels overlap after alignment (the other three border the uncovered strips), and
# zoomed out so that its corners stay on the canvas. Translucent rendering shows the cells
# on those faces; maximum intensity would sum the whole tissue into a haze.
# Set as view and up directions in world (z, y, x): the meaning of camera.angles changed
# with napari 0.6's camera orientations, so the same angles showed another corner on 0.5.
VOLUME_VIEW_DIRECTION = (0.5792, -0.4096, 0.7048)
VOLUME_UP_DIRECTION = (0.5792, 0.8152, -0.0023)
VOLUME_CAMERA_ZOOM = 0.5


# -------------------------------------------------------------------------------------- demo
def run_demo(args: argparse.Namespace) -> int:
    if args.screenshot:
        image_format(args.screenshot)  # a bad extension fails before napari starts
    try:
        import napari

        viewer = napari.Viewer(show=not args.screenshot)
    except ImportError as exc:
        print_error(
            f"the demo needs napari and a Qt binding ({exc}); "
            'install them with: pip install "napari-ecc-align[all]"'
        )
        return 2
    try:
        layers = [_add_layer(viewer, layer) for layer in _sample_layers(args.stack, args.volume)]
        widget = _dock_widget(viewer)
        widget.reference.value, widget.moving.value = layers[0], layers[-1]
        _choose_mode(widget, args)
        if not args.screenshot:
            if args.volume:
                _view_in_3d(viewer)
            napari.run()
            return 0
        return _screenshot(viewer, widget, args.screenshot)
    finally:
        if args.screenshot:
            viewer.close()


def _choose_mode(widget, args: argparse.Namespace) -> None:
    """What the user would pick: the drifting sample is one 3D layer, which the widget
    asks about (its planes are the frames); the two channels differ by a rigid motion."""
    from ..plugin.modes import AS_PLANES

    if args.stack:
        widget.align_as.value = AS_PLANES
    elif args.volume:
        widget.motion.value = "euclidean"


def _screenshot(viewer, widget, path: str, timeout: float = 120.0) -> int:
    """Press Align, wait for the result, save a picture of the whole window (of the
    canvas for volumes)."""
    from qtpy.QtWidgets import QApplication

    widget.run()
    deadline = time.monotonic() + timeout
    while widget.running:  # the worker thread reports back through the event loop
        QApplication.processEvents()
        if time.monotonic() > deadline:
            widget.cancel()
            print_error(f"the alignment did not finish within {timeout:.0f} s")
            return 1
        time.sleep(0.01)
    if widget.stack_mode:
        return _stack_screenshot(viewer, widget, path)
    if widget.last_alignment is None:
        print_error(f"alignment failed: {widget.message.value}")
        return 1
    print(summarize(widget.last_alignment))
    moving = widget.moving.value
    # Show the reference with the aligned image over it (aligned structure turns white);
    # the difference layer stays in the layer list, hidden.
    moving.visible = False
    viewer.layers[f"{moving.name} (difference)"].visible = False
    volume = widget.last_alignment.ndim == 3
    _lay_out(viewer, ndisplay=3 if volume else 2)
    # Volumes: the canvas alone, the rendering is the picture (the window's side panels
    # would leave it a narrow strip).
    _save(viewer.screenshot(canvas_only=volume, flash=False), path)
    return 0


def _lay_out(viewer, ndisplay: int = 2) -> None:
    """Size the hidden window, lay it out and fit the data to the canvas."""
    viewer.window.resize(*(VOLUME_SCREENSHOT_SIZE if ndisplay == 3 else SCREENSHOT_SIZE))
    viewer.dims.ndisplay = ndisplay  # before the layout: 3D hides the z slider
    # A hidden window is laid out only when grabbed: grab once so the canvas learns its
    # real size, then fit the images to it and take the real screenshot.
    viewer.screenshot(canvas_only=False, flash=False)
    viewer.reset_view()
    if ndisplay == 3:
        _tilt(viewer)


def _view_in_3d(viewer) -> None:
    """Render the volumes in 3D, seen at an angle."""
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    _tilt(viewer)


def _tilt(viewer) -> None:
    for layer in viewer.layers:
        if hasattr(layer, "rendering"):
            layer.rendering = "translucent"
    viewer.camera.set_view_direction(VOLUME_VIEW_DIRECTION, VOLUME_UP_DIRECTION)
    viewer.camera.zoom *= VOLUME_CAMERA_ZOOM


def _save(shot, path: str) -> None:
    if image_format(path) == "JPEG":
        shot = shot[..., :3]
    write_image(path, shot)


def _stack_screenshot(viewer, widget, path: str) -> int:
    result = widget.last_stack_alignment
    if result is None:
        print_error(f"stack alignment failed: {widget.message.value}")
        return 1
    print(f"{len(result)} frames aligned, {int((~result.ok).sum())} failed")
    widget.moving.value.visible = False  # show the aligned stack
    _lay_out(viewer)
    widget._go_to_frame(len(result) - 1)
    _save(viewer.screenshot(canvas_only=False, flash=False), path)
    return 0


def _sample_layers(stack: bool = False, volume: bool = False) -> list[tuple]:
    """The demo data as LayerDataTuples: the score pair (reference first), the volume
    pair (reference first) or a stack."""
    from ..plugin.sample_data import drift_stack, score_pair, volume_pair

    if volume:
        return list(volume_pair())
    return list(drift_stack() if stack else score_pair())


def _add_layer(viewer, layer_data: tuple):
    data, kwargs, layer_type = (tuple(layer_data) + ({}, "image"))[:3]
    return getattr(viewer, f"add_{layer_type}")(data, **(kwargs or {}))


def _dock_widget(viewer):
    """Dock the plugin's widget as napari would from the Plugins menu; return it."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, "ECC Align")
    return widget
