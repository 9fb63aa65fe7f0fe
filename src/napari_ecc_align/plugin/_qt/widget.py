"""The "ECC Align" dock widget.

Thin by design: it gathers parameters, snapshots the layers' arrays, runs
:func:`napari_ecc_align.plugin.jobs.run_job` in a napari ``thread_worker`` and,
back on the main thread, turns the result into layers. No layer or Qt object is
touched inside the worker.

Long because it is one magicgui ``Container`` whose many callbacks are each a few
lines over the same state (the controls, the running worker, the last result);
splitting the form from its callbacks would spread that state over two classes.
The work itself is in :mod:`napari_ecc_align.plugin.jobs`, the layer logic in
:mod:`napari_ecc_align.plugin.layers` and :mod:`napari_ecc_align.plugin.outputs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    PushButton,
    Select,
    SpinBox,
    TextEdit,
)
from qtpy.QtCore import QEvent, QObject

from ...engine.alignment import MOTIONS, VOLUME_MOTIONS, Alignment
from ...engine.estimate import Progress
from ...engine.steps import expected_progress_steps
from ..jobs import Job, JobResult, StackJob, run_job, run_stack_job, steps_expected
from ..layers import (
    alignment_metadata,
    image_for_alignment,
    layer_spacing,
    move_layer_onto_reference,
)
from ..modes import (
    PLANAR_INITS,
    Mode,
    align_as_choices,
    ask_text,
    mode_for,
    spacing_mismatch,
    spatial_ndim,
)
from ..outputs import (
    aligned_kwargs,
    carried_kwargs,
    carrier,
    difference_kwargs,
    is_output,
    kind,
    output_name,
    put_image,
    put_layer,
    rasterise_mask,
    stack_kwargs,
)
from .dialogs import file_dialog
from .number_fields import ScientificFloat
from .stack_controls import StackControls

if TYPE_CHECKING:
    import napari

CARRY_TYPES = ("Image", "Labels", "Points", "Shapes", "Vectors", "Tracks")
HOMOGRAPHY_TIP = "napari's affine transforms cannot express a homography; use Aligned image"


class AlignWidget(Container):
    """Align a moving image layer onto a reference image layer with ECC."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = viewer
        self._closed = False
        self._discard = False  # the widget was taken off the viewer: drop this run's results
        self._worker = None
        self._progress = None
        self._expected_levels = 0
        self._expected_frames = 0
        self._pending: list = []  # layer updates still to apply, one per event-loop turn
        self.last_alignment: Alignment | None = None
        self.last_stack_alignment = None

        # -- inputs
        self.reference = ComboBox(label="Reference", choices=self._image_layers)
        self.moving = ComboBox(label="Moving", choices=self._image_layers)
        self.align_as = ComboBox(
            label="Align as",
            choices=self._align_as_choices,
            nullable=True,
            value=None,
            visible=False,
            tooltip="volume: align the moving volume onto the reference volume; planes of a "
            "stack: align its 2D planes to each other; 3D time-lapse: align its volumes "
            "(frames) to each other",
        )
        self.message = Label(value="")
        self.motion = ComboBox(label="Motion", choices=self._motions, value="affine")
        self.max_iterations = SpinBox(
            label="Max iterations", value=100, min=1, max=100_000, step=10,
            tooltip="ECC iterations per pyramid level at most",
        )  # fmt: skip
        self.eps = ScientificFloat(
            1e-6, label="Eps", min=1e-12, max=0.1,
            tooltip="stop a level when the update is smaller than this (1e-6: OpenCV's "
            "usual choice; the arrows step by factors of ten)",
        )  # fmt: skip
        self.show_advanced = CheckBox(text="Advanced", value=False)
        self.pyramid_levels = ComboBox(
            label="Pyramid levels", choices=["auto"] + [str(n) for n in range(1, 11)]
        )
        self.gauss_filter_size = ComboBox(
            label="Gaussian filter", choices=["0", "3", "5", "7", "9", "11"], value="5"
        )
        self.init = ComboBox(
            label="Initialisation",
            choices=self._inits,
            value="auto",
            tooltip="auto: try phase correlation, Fourier-Mellin, features and the identity "
            "on a small copy and keep the best; last result: refine the previous alignment",
        )
        self.mask = ComboBox(label="Mask", choices=self._mask_layers, nullable=True, value=None)
        self.interpolation = ComboBox(
            label="Interpolation", choices=["nearest", "linear", "cubic"], value="linear"
        )
        self.advanced = Container(
            widgets=[
                self.pyramid_levels,
                self.gauss_filter_size,
                self.init,
                self.mask,
                self.interpolation,
            ],
            labels=True,
            visible=False,
        )
        self.stack = StackControls()
        # -- outputs
        self.out_aligned = CheckBox(text="Aligned image", value=True)
        self.out_difference = CheckBox(text="Difference", value=True)
        self.difference_mode = ComboBox(
            label="Difference mode", choices=["auto", "absolute", "normalized"], value="auto"
        )
        self.move_only = CheckBox(text="Move layer only", value=False)
        self.also = Select(label="Also transform", choices=self._other_layers, value=[])
        # -- actions and results
        self.align_button = PushButton(text="Align")
        self.cancel_button = PushButton(text="Cancel", enabled=False, visible=False)
        self.result = Label(value="")
        self.matrix_view = TextEdit(value="", enabled=True, visible=False)
        self.matrix_view.native.setReadOnly(True)
        self.save_button = PushButton(text="Save transform…", enabled=False)
        self.apply_button = PushButton(text="Apply transform…")
        self.extend(
            [
                self.reference,
                self.moving,
                self.align_as,
                self.message,
                self.motion,
                self.max_iterations,
                self.eps,
                self.show_advanced,
                self.advanced,
                self.stack,
                self.out_aligned,
                self.out_difference,
                self.difference_mode,
                self.move_only,
                self.also,
                self.align_button,
                self.cancel_button,
                self.result,
                self.matrix_view,
                self.save_button,
                self.apply_button,
            ]
        )

        self.show_advanced.changed.connect(lambda v: setattr(self.advanced, "visible", v))
        self.motion.changed.connect(self._on_motion)
        self._motion_touched = False
        self.motion.native.activated.connect(lambda *_: setattr(self, "_motion_touched", True))
        self.reference.changed.connect(self._on_moving)
        self.moving.changed.connect(self._on_moving)
        self.align_as.changed.connect(self._on_align_as_chosen)
        # The answers given per moving layer, by (layer id, data shape): asked once each.
        self._align_as_answers: dict[tuple, str | None] = {}
        self.drift_plot = None  # created on the first stack result (imports matplotlib)
        self.align_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.save_button.changed.connect(lambda: self.save_transform())
        self.apply_button.changed.connect(lambda: self.apply_transform())
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._on_layers_changed)
        # A rename changes the choices too. The layer list's own `renamed` event is
        # napari >= 0.7 only; each layer's `name` event is there in every version.
        events.inserted.connect(self._on_layer_inserted)
        events.removed.connect(self._on_layer_removed)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.native.destroyed.connect(self._on_destroyed)
        # The dock's close button (napari's remove_dock_widget) unparents the widget
        # without destroying it: a run still going then has nowhere to deliver.
        self._removal_watch = _RemovalWatch(self.native, self._on_removed)
        self._on_layers_changed()

    # ------------------------------------------------------------------ layer lists
    def _image_layers(self, _widget=None):
        return [(layer.name, layer) for layer in self._viewer.layers if kind(layer) == "Image"]

    def _mask_layers(self, _widget=None):
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if kind(layer) in ("Labels", "Shapes")
        ]

    def _other_layers(self, _widget=None):
        chosen = {id(self.reference.value), id(self.moving.value)}
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if kind(layer) in CARRY_TYPES and id(layer) not in chosen and not is_output(layer)
        ]

    def _on_layer_inserted(self, event) -> None:
        event.value.events.name.connect(self._on_layers_changed)

    def _on_layer_removed(self, event) -> None:
        event.value.events.name.disconnect(self._on_layers_changed)
        gone = id(event.value)  # a later layer may get the same id: forget its answer
        self._align_as_answers = {k: v for k, v in self._align_as_answers.items() if k[0] != gone}

    def _on_layers_changed(self, event=None):
        self.reset_choices()
        images = self._image_layers()
        if len(images) >= 2 and self.moving.value is self.reference.value and not self.stack_mode:
            others = [
                layer
                for _, layer in images
                if layer is not self.reference.value and not is_output(layer)
            ]
            if others:
                self.moving.value = others[0]
        self._on_moving()
        self._validate()

    def _validate(self, _value=None) -> bool:
        """Inline hint when there is nothing to align; returns whether Align may run."""
        mode = self.mode
        if mode is None:
            text = ask_text(self.moving.value)
        elif mode.is_stack:
            text = ""  # a stack is aligned to its own frames
        elif len(self._image_layers()) < 2:
            what = "volume" if mode is Mode.VOLUMES else "image"
            text = f"Open two image layers: a reference and a moving {what}."
        elif self.reference.value is self.moving.value:
            text = "Reference and Moving are the same layer: pick two different ones."
        elif mode is Mode.VOLUMES and spatial_ndim(self.reference.value) != 3:
            text = (
                f"Reference '{self.reference.value.name}' is not a volume: pick a 3D "
                "reference layer, or align the moving layer as planes of a stack."
            )
        elif mode is Mode.IMAGES and spatial_ndim(self.reference.value) > 2:
            text = (
                f"Reference '{self.reference.value.name}' is 3D and Moving is 2D: pick a "
                "2D reference, or a 3D moving layer to align as a volume."
            )
        else:
            text = ""
        self.message.value = text
        self.message.visible = bool(text)
        self.also.reset_choices()
        return not text

    @property
    def mode(self) -> Mode | None:
        """What Align does with the chosen layers (None: "Align as" still to choose)."""
        return mode_for(self.moving.value, self.align_as.value)

    @property
    def stack_mode(self) -> bool:
        """The moving layer is a stack: align its frames to each other."""
        mode = self.mode
        return mode is not None and mode.is_stack

    def _on_moving(self, _layer=None) -> None:
        self._fit_align_as()
        self._on_align_as()

    def _align_as_choices(self, _widget=None) -> list[str]:
        # a callable, so napari's reset_choices on every layer event recomputes it
        return align_as_choices(self.reference.value, self.moving.value)[0]

    def _align_as_key(self) -> tuple:
        moving = self.moving.value
        return (id(moving), tuple(moving.data.shape) if moving is not None else ())

    def _on_align_as_chosen(self, value) -> None:
        self._align_as_answers[self._align_as_key()] = value
        self._on_align_as()

    def _fit_align_as(self) -> None:
        """The "Align as" choices for the layer pair; the answer given for this moving
        layer (while it keeps its shape) stays when it is still offered."""
        reference, moving = self.reference.value, self.moving.value
        choices, default = align_as_choices(reference, moving)
        kept = self._align_as_answers.get(self._align_as_key())
        with self.align_as.changed.blocked():
            self.align_as.reset_choices()
            self.align_as.value = kept if kept in choices else default
        self.align_as.visible = bool(choices)

    def _on_align_as(self, _value=None) -> None:
        mode = self.mode
        stack = mode is not None and mode.is_stack
        self.stack.follow(self.moving.value, show=stack, frame_ndim=mode.ndim if mode else 2)
        self.reference.enabled = not stack
        for widget in (self.out_difference, self.difference_mode, self.move_only, self.also):
            widget.visible = not stack
        self._fit_motions()
        if stack and self.motion.value == "affine" and not self._motion_touched:
            self.motion.value = "euclidean"  # drift is rigid; affine fits noise on stacks
        self._validate()

    def _motions(self, _widget=None) -> list[str]:
        """Volumes have no homography (no 3D perspective in ECC). A callable, so the
        reset_choices napari runs on every layer event keeps it."""
        mode = self.mode if hasattr(self, "align_as") else None
        return list(VOLUME_MOTIONS if mode is not None and mode.ndim == 3 else MOTIONS)

    def _inits(self, _widget=None) -> list[str]:
        """Fourier-Mellin and feature matching are 2D searches: not offered for volumes."""
        mode = self.mode if hasattr(self, "align_as") else None
        planar = () if mode is not None and mode.ndim == 3 else PLANAR_INITS
        return ["auto", "identity", "phase", *planar, "last result"]

    def _fit_motions(self) -> None:
        """Motion and initialisation choices for the mode; a choice no longer offered
        falls back to the default (affine, auto), never to whatever is listed first."""
        for combo, default in ((self.motion, "affine"), (self.init, "auto")):
            current = combo.value
            combo.reset_choices()
            combo.value = current if current in combo.choices else default

    def _on_motion(self, motion):
        homography = motion == "homography"
        if homography:
            self.move_only.value = False
        self.move_only.enabled = not homography
        self.move_only.tooltip = (
            HOMOGRAPHY_TIP
            if homography
            else ("Set the moving layer's affine so it overlays the reference (no resampling)")
        )

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """True from Align until the last output layer is in place."""
        return self._worker is not None or bool(self._pending)

    def parameters(self) -> dict:
        """``align`` keyword arguments from the controls (raises ValueError for a choice
        that does not fit the layers)."""
        levels = self.pyramid_levels.value
        init = self.init.value
        ndim = self.mode.ndim if self.mode is not None else 2
        if init == "last result":
            if self.last_alignment is None:
                raise ValueError("there is no last result yet: align once, or choose auto")
            if self.last_alignment.ndim != ndim:
                raise ValueError(
                    f"the last result is a {self.last_alignment.ndim}D alignment and these "
                    f"layers align in {ndim}D: choose auto"
                )
            init = self.last_alignment.matrix
        if ndim == 3 and init in PLANAR_INITS:
            raise ValueError(
                f"initialisation {init!r} is for 2D images; volumes take auto, phase or identity"
            )
        if self.mode is Mode.VOLUMES and self.motion.value != "affine":
            mismatch = spacing_mismatch(self.reference.value, self.moving.value)
            if mismatch:
                raise ValueError(mismatch)
        params = {
            "motion": self.motion.value,
            "max_iterations": int(self.max_iterations.value),
            "eps": float(self.eps.value),
            "gauss_filter_size": int(self.gauss_filter_size.value),
            "pyramid_levels": None if levels == "auto" else int(levels),
            "init": init,
        }
        if ndim == 3:
            params["ndim"] = 3
        return params

    def run(self, alignment: Alignment | None = None) -> None:
        """Start an alignment (or apply ``alignment``) in a worker thread."""
        if self.running:
            return  # a second press while running does nothing
        if not self._validate():
            self._notify(self.message.value)
            return
        stack = self.stack_mode and not isinstance(alignment, Alignment)
        if isinstance(alignment, Alignment) and alignment.ndim != self.mode.ndim:
            saved = "2D images (3×3)" if alignment.ndim == 2 else "volumes (4×4)"
            here = "volumes" if self.mode.ndim == 3 else "2D images"
            self._notify(f"this transform is for {saved}; these layers align as {here}")
            return
        try:
            if stack:
                job = self._make_stack_job()
            else:
                job = self._make_job(alignment if isinstance(alignment, Alignment) else None)
        except (ValueError, TypeError) as exc:
            self._notify(str(exc))
            return
        from napari.qt.threading import create_worker
        from napari.utils import progress

        reference, moving = self.reference.value, self.moving.value
        if stack:
            frames = np.shape(job.stack)[job.stack_kwargs["axis"]]
            self._expected_levels = 0
            self._expected_frames = frames
            total = frames + int(job.want_aligned)
        else:
            levels = 0
            if job.alignment is None:
                options = ("ndim", "spacing", "pyramid_levels", "init")
                kwargs = {k: v for k, v in job.align_kwargs.items() if k in options}
                levels = expected_progress_steps(job.reference.shape, job.moving.shape, **kwargs)
            self._expected_levels = levels
            total = steps_expected(job, levels)
        self._progress = progress(total=total, desc="ECC align")
        worker = create_worker(_guarded, job, _start_thread=False)
        worker.yielded.connect(self._on_step)
        worker.returned.connect(lambda result: self._on_returned(result, reference, moving, job))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._discard = False
        self._set_running(True)
        worker.start()

    def cancel(self) -> None:
        """Stop the running alignment at its next step; no layer is changed."""
        if self._worker is not None:
            self._worker.quit()

    def _make_stack_job(self) -> StackJob:
        params = self.parameters()
        if params["init"] is not None and not isinstance(params["init"], str):
            raise ValueError(
                "stacks start each frame from an initialisation method, not a last result"
            )
        kwargs = {**params, **self.stack.kwargs()}
        if self.mode is Mode.VOLUME_FRAMES:
            kwargs["spacing"] = layer_spacing(self.moving.value)
        return StackJob(
            stack=self.moving.value.data,
            stack_kwargs=kwargs,
            interpolation=self.interpolation.value,
            want_aligned=self.out_aligned.value,
            canvas=self.stack.canvas,
        )

    def _make_job(self, alignment: Alignment | None) -> Job:
        reference, moving = self.reference.value, self.moving.value
        ndim = alignment.ndim if alignment is not None else self.mode.ndim
        ref_data = image_for_alignment(reference, "Reference", ndim)
        mov_data = image_for_alignment(moving, "Moving", ndim)
        align_kwargs = {} if alignment is not None else self.parameters()
        if ndim == 3 and alignment is None:
            align_kwargs["spacing"] = layer_spacing(reference)
        if alignment is None and self.mask.value is not None:
            align_kwargs["reference_mask"] = rasterise_mask(self.mask.value, ref_data.shape[:ndim])
        interpolation = self.interpolation.value
        carriers = [
            carrier(layer, reference, moving, interpolation, ndim) for layer in self.also.value
        ]
        return Job(
            reference=ref_data,
            moving=mov_data,
            align_kwargs=align_kwargs,
            alignment=alignment,
            interpolation=interpolation,
            difference_mode=self.difference_mode.value,
            want_aligned=self.out_aligned.value,
            want_difference=self.out_difference.value,
            carriers=carriers,
        )

    def _on_step(self, step) -> None:
        pbar = self._progress  # local: a progress event may run _on_finished meanwhile
        if pbar is None:
            return
        if isinstance(step, Progress):
            if step.done == 1:  # the engine may use fewer levels than the size suggests
                pbar.total += step.levels - self._expected_levels
            pbar.set_description(f"ECC align: level {step.level} done")
        elif hasattr(step, "total"):  # a stack frame ("mean" reports each frame per pass)
            if step.done == 1:
                pbar.total += step.total - self._expected_frames
            state = "failed" if step.error else "done"
            pbar.set_description(
                f"ECC align: frame {step.index} {state} ({step.done}/{step.total})"
            )
        else:
            pbar.set_description(f"ECC align: {step}")
        pbar.update(1)

    def _on_returned(self, result, reference, moving, job: Job) -> None:
        if self._closed or self._discard:
            return
        inputs = (moving,) if isinstance(job, StackJob) else (reference, moving)
        gone = [layer.name for layer in inputs if layer not in self._viewer.layers]
        if isinstance(result, _Failure):
            self._on_error(result.error)
        elif gone:  # a layer was deleted meanwhile: its outputs would be orphans
            self._notify(f"'{gone[0]}' was removed while aligning; no layer was added")
        elif isinstance(job, StackJob):
            self._on_stack_result(result, moving)
        else:
            self._on_result(result, reference, moving, job)

    def _on_stack_result(self, result, moving) -> None:
        stack_alignment = result.stack_alignment
        meta = {"ecc_stack_alignment": stack_alignment.to_dict()}
        steps = []
        if result.aligned is not None:
            kwargs = stack_kwargs(moving, meta, result.origin)
            name = output_name(moving, "aligned")
            steps.append(lambda: put_image(self._viewer, name, result.aligned, kwargs))
        steps.append(lambda: self._show_stack_result(stack_alignment))
        self._pending = steps
        self._next_update()

    def _show_stack_result(self, stack_alignment) -> None:
        self.last_stack_alignment = stack_alignment
        rows = stack_alignment.table()
        failed = [r["frame"] for r in rows if not r["ok"]]
        corr = [r["correlation"] for r in rows if r["ok"]]
        self.result.value = (
            f"{len(rows)} frames aligned to {stack_alignment.reference!r}, "
            f"{len(failed)} failed{(': ' + ', '.join(map(str, failed[:10]))) if failed else ''}\n"
            f"median correlation {np.median(corr) if corr else float('nan'):.3f}, "
            f"{stack_alignment.elapsed:.1f} s"
        )
        if self.drift_plot is None:
            from .drift_plot import DriftPlot

            self.drift_plot = DriftPlot(on_frame=self._go_to_frame)
            self.native.layout().addWidget(self.drift_plot.native)
        self.drift_plot.show_table(rows)
        self.save_button.enabled = True

    def _go_to_frame(self, frame: int) -> None:
        """Move the viewer's slider for the frame axis to ``frame``."""
        layer = self.moving.value
        axis = self.last_stack_alignment.axis
        world_axis = self._viewer.dims.ndim - layer.ndim + axis
        self._viewer.dims.set_current_step(world_axis, frame)

    def _on_result(self, result: JobResult, reference, moving, job: Job) -> None:
        alignment = result.alignment
        self.last_alignment = alignment
        meta = {
            "ecc_alignment": alignment_metadata(
                alignment,
                interpolation=job.interpolation,
                difference_mode=result.difference_mode,
                reference=reference.name,
                moving=moving.name,
            )
        }
        steps = []
        if result.aligned is not None:
            name, kwargs = output_name(moving, "aligned"), aligned_kwargs(reference, moving, meta)
            steps.append(lambda: put_image(self._viewer, name, result.aligned, kwargs))
        if result.difference is not None:
            diff_name = output_name(moving, "difference")
            diff_kwargs = difference_kwargs(reference, result.difference_mode, meta)
            steps.append(lambda: put_image(self._viewer, diff_name, result.difference, diff_kwargs))
        for data, layer_meta, layer_type in result.carried:
            meta_out = carried_kwargs(layer_meta, meta)
            steps.append(partial(put_layer, self._viewer, data, meta_out, layer_type))
        if self.move_only.value and alignment.motion != "homography":
            steps.append(lambda: move_layer_onto_reference(moving, reference, alignment))
        steps.append(lambda: self._show_result(alignment))
        self._pending = steps
        self._next_update()

    def _next_update(self) -> None:
        """Apply one layer update per event-loop turn: uploading several large
        layers at once would freeze the viewer for their sum."""
        from qtpy.QtCore import QTimer

        if self._closed or self._discard:
            return
        if self._pending:
            try:
                self._pending.pop(0)()
            except Exception as exc:  # a layer napari refused: report, keep the rest
                self._notify(f"could not update an output layer: {exc}", error=True)
        if self._pending:
            QTimer.singleShot(0, self._next_update)
        elif self._worker is None:
            self._set_running(False)

    def _on_error(self, exc: Exception) -> None:
        self._notify(str(exc), error=True)

    def _on_finished(self) -> None:
        self._worker = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self._closed:
            return
        if self._discard:
            self._discard, self._pending = False, []
        if not self._pending:  # else the last layer update re-enables the buttons
            self._set_running(False)

    def _on_removed(self) -> None:
        """Taken off the viewer while still alive: stop the run, add none of its layers."""
        if not self.running:
            return
        self._pending = []
        if self._worker is None:  # only layer updates were left: drop them, done
            self._set_running(False)
            return
        self._discard = True  # until the worker reports it finished
        self.cancel()

    def _on_destroyed(self, *_) -> None:
        """The dock (or napari) is closing: stop the worker, touch no widget again."""
        self._closed = True
        self._pending = []
        self.cancel()

    def _set_running(self, running: bool) -> None:
        self.align_button.enabled = not running
        self.apply_button.enabled = not running
        self.cancel_button.visible = running
        self.cancel_button.enabled = running

    # ------------------------------------------------------------------ results
    def _show_result(self, alignment: Alignment) -> None:
        volume = alignment.ndim == 3
        spacing = alignment.parameters.get("spacing") if volume else None
        voxel = f"\nvoxel size (dz, dy, dx): {', '.join(f'{s:g}' for s in spacing or ())}"
        self.result.value = (
            f"correlation {alignment.correlation_before:.3f} → {alignment.correlation:.3f}\n"
            f"{'volume, ' if volume else ''}{alignment.motion}, init: {alignment.init_method}, "
            f"levels: {alignment.levels}, {alignment.elapsed:.2f} s" + (voxel if spacing else "")
        )
        point = "voxel (x, y, z, 1)" if volume else "pixel (x, y, 1)"
        self.matrix_view.value = f"reference {point} → moving:\n" + np.array2string(
            alignment.matrix, precision=5, suppress_small=True
        )
        self.matrix_view.visible = True
        self.save_button.enabled = True

    def save_transform(self, path: str | None = None) -> str | None:
        """Write the last alignment as JSON (asks for a file name when ``path`` is None)."""
        result = self.last_alignment
        if self.stack_mode and self.last_stack_alignment is not None:
            result = self.last_stack_alignment
        if result is None:
            self._notify("Nothing to save yet: align first.")
            return None
        if path is None:
            path = file_dialog(save=True)
            if not path:
                return None
        result.to_json(path)
        return path

    def apply_transform(self, path: str | None = None) -> None:
        """Apply a saved JSON transform to the current Moving layer without estimating."""
        if path is None:
            path = file_dialog(save=False)
            if not path:
                return
        try:
            alignment = Alignment.from_json(path)
        except (OSError, ValueError, TypeError, json.JSONDecodeError) as exc:
            self._notify(f"cannot load the transform from {path}: {exc}", error=True)
            return
        self.run(alignment)

    def _notify(self, text: str, error: bool = False) -> None:
        from napari.utils.notifications import show_error, show_warning

        self.message.value = text
        self.message.visible = True
        (show_error if error else show_warning)(text)


# ---------------------------------------------------------------------- helpers
class _RemovalWatch(QObject):
    """Calls ``callback`` when ``target`` loses its parent widget."""

    def __init__(self, target, callback):
        super().__init__(target)
        self._callback = callback
        target.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            self._callback()
        return False


@dataclass
class _Failure:
    error: Exception


def _guarded(job: Job | StackJob):
    """run_job, with its exception handed back as a value.

    superqt's workers treat a RuntimeError raised in the thread as "the worker
    was deleted" and swallow it without emitting ``errored`` or ``finished``;
    AlignmentError is a RuntimeError, so it must not propagate there.
    """
    try:
        if isinstance(job, StackJob):
            return (yield from run_stack_job(job))
        return (yield from run_job(job))
    except Exception as exc:  # reported on the main thread by _on_returned
        return _Failure(exc)
