"""``napari-ecc-align demo``: open napari with a sample and the docked widget, or save a
screenshot of it (``--screenshot``). The only command that imports napari, when it runs.
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
        layers = [_add_layer(viewer, layer) for layer in _sample_layers(args.stack)]
        widget = _dock_widget(viewer)
        widget.reference.value, widget.moving.value = layers[0], layers[-1]
        if not args.screenshot:
            napari.run()
            return 0
        return _screenshot(viewer, widget, args.screenshot)
    finally:
        if args.screenshot:
            viewer.close()


def _screenshot(viewer, widget, path: str, timeout: float = 120.0) -> int:
    """Press Align, wait for the result, save a picture of the whole window."""
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
    # A hidden window is laid out only when grabbed: grab once so the canvas learns its
    # real size, then fit the images to it and take the real screenshot.
    viewer.window.resize(*SCREENSHOT_SIZE)
    viewer.screenshot(canvas_only=False, flash=False)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    if image_format(path) == "JPEG":
        shot = shot[..., :3]
    write_image(path, shot)
    return 0


def _stack_screenshot(viewer, widget, path: str) -> int:
    result = widget.last_stack_alignment
    if result is None:
        print_error(f"stack alignment failed: {widget.message.value}")
        return 1
    print(f"{len(result)} frames aligned, {int((~result.ok).sum())} failed")
    widget.moving.value.visible = False  # show the aligned stack
    viewer.window.resize(*SCREENSHOT_SIZE)
    viewer.screenshot(canvas_only=False, flash=False)
    viewer.reset_view()
    widget._go_to_frame(len(result) - 1)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    if image_format(path) == "JPEG":
        shot = shot[..., :3]
    write_image(path, shot)
    return 0


def _sample_layers(stack: bool = False) -> list[tuple]:
    """The demo data as LayerDataTuples: the score pair (reference first) or a stack."""
    from ..plugin.sample_data import drift_stack, score_pair

    return list(drift_stack() if stack else score_pair())


def _add_layer(viewer, layer_data: tuple):
    data, kwargs, layer_type = (tuple(layer_data) + ({}, "image"))[:3]
    return getattr(viewer, f"add_{layer_type}")(data, **(kwargs or {}))


def _dock_widget(viewer):
    """Dock the plugin's widget as napari would from the Plugins menu; return it."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, "ECC Align")
    return widget
