"""The "ECC Align" dock widget.

Thin by design: it composes small control groups (:class:`.EstimateOptions`,
:class:`.StackControls`, :class:`.OutputOptions`, :class:`.ResultPanel`), each owning its
controls and their signals; their controls sit in this one form so the labels line up.
It keeps the layer pickers and the "Align as" question, snapshots the layers' arrays,
runs :func:`napari_ecc_align.plugin.jobs.run_job` in a napari ``thread_worker`` and,
back on the main thread, turns the result into layers. No layer or Qt object is touched inside
the worker. The work itself is in :mod:`napari_ecc_align.plugin.jobs`, every output's
layer keywords in :mod:`napari_ecc_align.plugin.outputs`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, Label, PushButton

from ...engine import Alignment
from ...io.transform_files import load_transform, save_transform, transform_format
from ..jobs import Job, JobResult, StackJob
from ..layers import image_for_alignment, layer_spacing, spatial_shape
from ..modes import Mode, align_as_choices, mode_for, pair_problem, spacing_mismatch
from ..outputs import carrier, is_output, kind, pair_updates, rasterise_mask, stack_updates
from .dialogs import chosen_format, file_dialog
from .estimate_options import EstimateOptions
from .output_options import OutputOptions
from .result_panel import ResultPanel
from .running import Failure, RemovalWatch, StepProgress, guarded, progress_for
from .stack_controls import StackControls

if TYPE_CHECKING:
    import napari

CARRY_TYPES = ("Image", "Labels", "Points", "Shapes", "Vectors", "Tracks")
# The controls of the composed groups, reachable on the widget itself as before.
_OPTIONS = ("motion", "max_iterations", "eps", "show_advanced", "advanced")
_ADVANCED = ("pyramid_levels", "gauss_filter_size", "init", "reference_points", "moving_points",
             "intensity", "mask", "interpolation")  # fmt: skip
_OUTPUTS = ("out_aligned", "out_difference", "difference_mode", "move_only", "also")
_RESULTS = ("result", "matrix_view", "save_button", "apply_button")


class AlignWidget(Container):
    """Align a moving image layer onto a reference image layer with ECC."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = viewer
        self._closed = False
        self._discard = False  # the widget was taken off the viewer: drop this run's results
        self._worker = None
        self._progress: StepProgress | None = None
        self._expected_levels = 0
        self._pending: list = []  # layer updates still to apply, one per event-loop turn
        self.last_alignment: Alignment | None = None
        self._result_layers: tuple = (None, None)  # the layers last_alignment was made on
        self.last_stack_alignment = None
        # The answers given per moving layer, by (layer id, data shape): asked once each.
        self._align_as_answers: dict[tuple, str | None] = {}
        self._moving_seen: int | None = None  # id of the moving layer outputs were suited to
        self._suited_multiscale = False

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
        self.estimate_options = EstimateOptions(masks=self._mask_layers, points=self._points_layers)
        self.stack = StackControls()
        self.output_options = OutputOptions(carriable=self._other_layers)
        self.align_button = PushButton(text="Align")
        self.cancel_button = PushButton(text="Cancel", enabled=False, visible=False)
        self.result_panel = ResultPanel(self, save=self.save_transform, apply=self.apply_transform)
        groups = [
            (self.estimate_options, _OPTIONS),
            (self.estimate_options.advanced, _ADVANCED),
            (self.output_options, _OUTPUTS),
            (self.result_panel, _RESULTS),
        ]
        for group, names in groups:
            for name in names:
                setattr(self, name, getattr(group, name))
        inputs = [self.reference, self.moving, self.align_as, self.message]
        outputs = [self.stack, *self.output_options.widgets, self.align_button, self.cancel_button]
        self.extend([*inputs, *self.estimate_options.widgets, *outputs, *self.result_panel.widgets])
        self._add_callbacks()
        self._on_layers_changed()

    def _add_callbacks(self) -> None:
        self.estimate_options.motion.changed.connect(self.output_options.follow_motion)
        self.reference.changed.connect(self._on_moving)
        self.moving.changed.connect(self._on_moving)
        self.align_as.changed.connect(self._on_align_as_chosen)
        self.align_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._on_layers_changed)
        # A rename changes the choices too. The layer list's own `renamed` event is
        # napari >= 0.7 only; each layer's `name` event is there in every version.
        events.inserted.connect(self._on_layer_inserted)
        events.removed.connect(self._on_layer_removed)
        for layer in self._viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.native.destroyed.connect(self._on_destroyed)
        # The dock's close button (napari's remove_dock_widget) unparents the widget
        # without destroying it: a run still going then has nowhere to deliver.
        self._removal_watch = RemovalWatch(self.native, self._on_removed)

    @property
    def drift_plot(self):
        """The stack result's drift plot (None before the first stack result)."""
        return self.result_panel.drift_plot

    # ------------------------------------------------------------------ layer lists
    def _image_layers(self, _widget=None):
        return [(layer.name, layer) for layer in self._viewer.layers if kind(layer) == "Image"]

    def _mask_layers(self, _widget=None):
        masks = ("Labels", "Shapes")
        return [(layer.name, layer) for layer in self._viewer.layers if kind(layer) in masks]

    def _points_layers(self, _widget=None):
        return [(layer.name, layer) for layer in self._viewer.layers if kind(layer) == "Points"]

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
        images = [layer for _, layer in self._image_layers()]
        if len(images) >= 2 and self.moving.value is self.reference.value and not self.stack_mode:
            others = [x for x in images if x is not self.reference.value and not is_output(x)]
            if others:
                self.moving.value = others[0]
        self._on_moving()
        self._validate()

    def _validate(self, _value=None) -> bool:
        """Inline hint when there is nothing to align; returns whether Align may run."""
        reference, moving = self.reference.value, self.moving.value
        text = pair_problem(self.mode, reference, moving, len(self._image_layers()))
        self.message.value = text
        self.message.visible = bool(text)
        self.output_options.also.reset_choices()
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
        moving = self.moving.value
        if id(moving) != self._moving_seen:  # a new moving layer: outputs that suit it
            self._moving_seen = id(moving)
            multiscale = bool(getattr(moving, "multiscale", False))
            if multiscale or self._suited_multiscale:
                self.output_options.suit_moving_layer(multiscale)
            self._suited_multiscale = multiscale
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
        self.output_options.show_pair_outputs(not stack)
        self.estimate_options.fit(mode.ndim if mode is not None else 2, stack=stack)
        motion = self.estimate_options.motion
        if stack and motion.value == "affine" and not self.estimate_options.motion_touched:
            motion.value = "euclidean"  # drift is rigid; affine fits noise on stacks
        self._validate()

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """True from Align until the last output layer is in place."""
        return self._worker is not None or bool(self._pending)

    def parameters(self) -> dict:
        """``align`` keyword arguments from the controls (raises ValueError for a choice
        that does not fit the layers)."""
        ndim = self.mode.ndim if self.mode is not None else 2
        layers = (self.reference.value, self.moving.value)
        params = self.estimate_options.parameters(ndim, self.last_alignment, layers)
        if self.mode is Mode.VOLUMES and params["motion"] != "affine":
            mismatch = spacing_mismatch(self.reference.value, self.moving.value)
            if mismatch:
                raise ValueError(mismatch)
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

        reference, moving = self.reference.value, self.moving.value
        self._progress = progress_for(job)
        self._expected_levels = self._progress.levels
        worker = create_worker(guarded, job, _start_thread=False)
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
            shape = spatial_shape(reference)[:ndim]
            align_kwargs["reference_mask"] = rasterise_mask(self.mask.value, shape)
        fit = self.estimate_options.landmark_fit if alignment is None else None
        note = f"landmarks: {fit[0]} pairs, fit residual {fit[1]:.2f} px" if fit else None
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
            note=note,
        )

    def _on_step(self, step) -> None:
        progress = self._progress  # local: a progress event may run _on_finished meanwhile
        if progress is not None:
            progress.step(step)

    def _on_returned(self, result, reference, moving, job: Job) -> None:
        if self._closed or self._discard:
            return
        inputs = (moving,) if isinstance(job, StackJob) else (reference, moving)
        gone = [layer.name for layer in inputs if layer not in self._viewer.layers]
        if isinstance(result, Failure):
            self._on_error(result.error)
        elif gone:  # a layer was deleted meanwhile: its outputs would be orphans
            self._notify(f"'{gone[0]}' was removed while aligning; no layer was added")
        elif isinstance(job, StackJob):
            self._on_stack_result(result, moving)
        else:
            self._on_result(result, reference, moving, job)

    def _on_stack_result(self, result, moving) -> None:
        updates = stack_updates(self._viewer, result, moving)
        self._pending = [*updates, partial(self._show_stack_result, result.stack_alignment)]
        self._next_update()

    def _show_stack_result(self, stack_alignment) -> None:
        self.last_stack_alignment = stack_alignment
        self.result_panel.show_stack(stack_alignment, on_frame=self._go_to_frame)

    def _go_to_frame(self, frame: int) -> None:
        """Move the viewer's slider for the frame axis to ``frame``."""
        layer = self.moving.value
        axis = self.last_stack_alignment.axis
        world_axis = self._viewer.dims.ndim - layer.ndim + axis
        self._viewer.dims.set_current_step(world_axis, frame)

    def _on_result(self, result: JobResult, reference, moving, job: Job) -> None:
        self.last_alignment = result.alignment
        updates = pair_updates(self._viewer, result, reference, moving, job.interpolation,
                               self.move_only.value)  # fmt: skip
        self._result_layers = (reference, moving)
        show = partial(self.result_panel.show_alignment, result.alignment, job.note)
        self._pending = [*updates, show]
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
        self.result_panel.apply_button.enabled = not running
        self.cancel_button.visible = running
        self.cancel_button.enabled = running

    # ------------------------------------------------------------------ results
    def save_transform(self, path: str | None = None, format: str | None = None) -> str | None:
        """Write the last alignment (asks for a file name and format when ``path`` is
        None): ours (JSON; a stack's too), or ITK, elastix, OME-NGFF, BigWarp or TransformJ
        with the layers' scale and translate as voxel size and origin."""
        result = self.last_alignment
        if self.stack_mode and self.last_stack_alignment is not None:
            result = self.last_stack_alignment
        if result is None:
            self._notify("Nothing to save yet: align first.")
            return None
        if path is None:
            path, format = file_dialog(save=True)
            if not path:
                return None
        try:
            kind = transform_format(path, chosen_format(path, format))
            if kind == "json":
                result.to_json(path)
            elif not isinstance(result, Alignment):
                raise ValueError("a stack's transforms (one per frame) are saved as .json")
            else:
                save_transform(result, path, kind,
                               **self._geometry(result.ndim, self._result_layers))  # fmt: skip
        except (OSError, ValueError, TypeError) as exc:
            self._notify(f"cannot save the transform to {path}: {exc}", error=True)
            return None
        return path

    def apply_transform(self, path: str | None = None, format: str | None = None) -> None:
        """Apply a saved transform of any format to the current Moving layer without
        estimating; a file that does not fit the layers is refused with the reason."""
        if path is None:
            path, format = file_dialog(save=False)
            if not path:
                return
        reference, moving = self.reference.value, self.moving.value
        if reference is None or moving is None:
            self._notify("choose the Reference and Moving layers first")
            return
        ndim = self.mode.ndim if self.mode is not None else 2
        try:
            alignment = load_transform(
                path, format=chosen_format(path, format),
                reference_shape=spatial_shape(reference)[:ndim],
                moving_shape=spatial_shape(moving)[:ndim],
                **self._geometry(ndim, (reference, moving)),
            )  # fmt: skip
        except (OSError, ValueError, TypeError) as exc:
            self._notify(f"cannot load the transform from {path}: {exc}", error=True)
            return
        self.run(alignment)

    @staticmethod
    def _geometry(ndim: int, layers) -> dict:
        """The ``(reference, moving)`` layers' voxel size and origin (their scale and
        translate) for the physical transform formats, in array order."""
        geometry = {}
        for role, layer in zip(("reference", "moving"), layers, strict=True):
            if layer is not None:
                geometry[f"{role}_spacing"] = tuple(abs(float(s)) for s in layer.scale[-ndim:])
                geometry[f"{role}_origin"] = tuple(float(t) for t in layer.translate[-ndim:])
        return geometry

    def _notify(self, text: str, error: bool = False) -> None:
        from napari.utils.notifications import show_error, show_warning

        self.message.value = text
        self.message.visible = True
        (show_error if error else show_warning)(text)
