"""The pairs of ``bench_real.py``, read from ``../shared/realdata/`` (never copied here).

Every pair is a :class:`Pair`: reference and moving arrays ((rows, cols) or (z, y, x)),
the true reference -> moving matrix in our convention (3x3 over pixel (x, y, 1), 4x4
over voxel (x, y, z, 1); ``None`` when unknown), the motion model and, for volumes, the
spacing (dz, dy, dx) in mm shared by both grids.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

# Reverses the first three homogeneous coordinates: (x, y, z, 1) <-> (z, y, x, 1).
SWAP = np.eye(4)[[2, 1, 0, 3]]

# The ITK slices' truths (pixels, x = column, about the centre given), reference -> moving.
# ITK's READMEs describe them as "rotated 10 degrees, translated by (13, 17)", but the
# images were not made exactly so: warping the moving image through the description
# correlates visibly worse with the fixed image than through what ITK's own examples
# report (ImageRegistration5/6/7 in its Software Guide), and those reports agree to
# ~0.01 px with a brute-force correlation maximisation made while writing this file.
# ``itk_truth_check`` in bench_real.py prints both correlations.
ITK_DESCRIBED = {  # (angle deg, scale, centre, translation)
    "Shifted13x17y": (0.0, 1.0, (110.0, 128.0), (13.0, 17.0)),
    "Rotated10": (10.0, 1.0, (110.0, 128.0), (0.0, 0.0)),
    "R10X13Y17": (10.0, 1.0, (110.0, 128.0), (13.0, 17.0)),
    "R10X13Y17S12": (-10.0, 1 / 1.2, (110.0, 128.0), (-13.0, -17.0)),
}
ITK_REPORTED = {
    "Shifted13x17y": (0.0, 1.0, (110.0, 128.0), (13.0, 17.0)),  # exact: correlation 1.0
    "Rotated10": (math.degrees(0.177491), 1.0, (110.487, 128.489), (0.0111713, 0.00250842)),
    "R10X13Y17": (math.degrees(0.174585), 1.0, (110.0, 128.0), (13.09, 15.91)),
    "R10X13Y17S12": (math.degrees(-0.174521), 0.833222, (111.437, 131.741), (-12.8272, -12.7862)),
}
ITK_MOTION = {
    "Shifted13x17y": "translation",
    "Rotated10": "euclidean",
    "R10X13Y17": "euclidean",
    "R10X13Y17S12": "affine",
}

# The page's known affine (reference -> moving, about the centre).
PAGE_ANGLE, PAGE_SCALE, PAGE_SHEAR, PAGE_SHIFT = 0.4, 1.003, 0.001, (3.3, -2.1)
PAGE_BINARISATIONS = ("GroundTruth", "Otsu", "Sauvola", "Niblack", "Wolf", "Su", "Gatos")

# The volumes' known poses (physical mm, about the volume centre).
VOLUME_ANGLES, VOLUME_SHIFT = (4.0, -3.0, 5.0), (3.5, -2.5, 4.0)
VOLUME_AFFINE = np.array([[0.03, -0.02, 0.01], [0.015, -0.025, 0.02], [-0.01, 0.02, 0.03]])
VOLUME_GAIN, VOLUME_BIAS, VOLUME_NOISE = 0.8, 0.05, 0.01  # bias and noise: share of vmax


@dataclasses.dataclass
class Pair:
    name: str
    reference: np.ndarray
    moving: np.ndarray
    true: np.ndarray | None
    motion: str
    spacing: tuple | None = None  # (dz, dy, dx) mm for volumes
    multimodal: bool = False  # intensities not a linear function of each other's


def similarity(angle_deg, scale=1.0, centre=(0.0, 0.0), shift=(0.0, 0.0), shear=0.0):
    """3x3 map p -> A (p - c) + c + t, A = scale * R(angle) @ [[1, shear], [0, 1]]."""
    a = math.radians(angle_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    linear = rot @ np.array([[1.0, shear], [0.0, 1.0]])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = np.asarray(centre) + np.asarray(shift) - linear @ np.asarray(centre)
    return matrix


def gray(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)  # 3-channel PNG/PPM -> luminance
    if image is None:
        raise FileNotFoundError(path)
    return image


# --------------------------------------------------------------------------- ITK slices


def itk_pairs(root: Path, truths=ITK_REPORTED):
    d = root / "itk-brain-slices"
    fixed = gray(d / "BrainProtonDensitySliceBorder20.png")
    pairs = []
    for key, (angle, scale, centre, shift) in truths.items():
        moving = gray(d / f"BrainProtonDensitySlice{key}.png")
        true = similarity(angle, scale, centre, shift)
        pairs.append(Pair(f"PD vs PD {key}", fixed, moving, true, ITK_MOTION[key]))
    return pairs


def itk_multimodal_pairs(root: Path):
    """ITK's T1/PD pair: the same grid, so identity; and ImageRegistration2's set-up
    (fixed T1, moving PD shifted): the moving content sits at +(13, 17)."""
    d = root / "itk-brain-slices"
    pd = gray(d / "BrainProtonDensitySliceBorder20.png")
    t1 = gray(d / "BrainT1SliceBorder20.png")
    shifted = gray(d / "BrainProtonDensitySliceShifted13x17y.png")
    return [
        Pair("PD vs T1 (identity)", pd, t1, np.eye(3), "euclidean", multimodal=True),
        Pair(
            "T1 vs PD Shifted13x17y",
            t1,
            shifted,
            similarity(0, shift=(13, 17)),
            "euclidean",
            multimodal=True,
        ),
    ]


def itk_cycle(root: Path):
    """``(name, image, truth from the first image)`` for PD Border20, Rotated10, R10X13Y17."""
    d = root / "itk-brain-slices"
    names = ("Border20", "Rotated10", "R10X13Y17")
    truths = [np.eye(3)] + [similarity(*ITK_REPORTED[n]) for n in names[1:]]
    return [
        (n, gray(d / f"BrainProtonDensitySlice{n}.png"), t)
        for n, t in zip(names, truths, strict=True)
    ]


# --------------------------------------------------------------------------- page


def page_truth(shape):
    rows, cols = shape
    centre = ((cols - 1) / 2, (rows - 1) / 2)
    return similarity(PAGE_ANGLE, PAGE_SCALE, centre, PAGE_SHIFT, PAGE_SHEAR)


def warp_to_moving(image, true, interpolation):
    """moving(true p) = image(p): cv2.warpAffine with WARP_INVERSE_MAP and true^-1
    (output(u) = input(true^-1 u)); the border replicates the page, no dark frame."""
    rows, cols = image.shape
    return cv2.warpAffine(
        image,
        np.linalg.inv(true)[:2],
        (cols, rows),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def page_pairs(root: Path, which=PAGE_BINARISATIONS):
    d = root / "manuscript-page"
    reference = gray(d / "2JohnC1V3.ppm")
    true = page_truth(reference.shape)
    pairs = []
    for name in which:
        binary = (gray(d / f"2JohnC1V3-{name}.pbm") > 127).astype(np.float32)
        moving = warp_to_moving(binary, true, cv2.INTER_LINEAR) >= 0.5  # stays binary
        pairs.append(
            Pair(f"gray vs {name}", reference, moving.astype(np.uint8) * 255, true, "affine")
        )
    return pairs


def page_gray_pair(root: Path):
    reference = gray(root / "manuscript-page" / "2JohnC1V3.ppm").astype(np.float32)
    true = page_truth(reference.shape)
    moving = warp_to_moving(reference, true, cv2.INTER_CUBIC)
    return Pair("gray vs gray (cubic copy)", reference, moving, true, "affine")


# --------------------------------------------------------------------------- volumes


def read_volume(path, like=None):
    """(z, y, x) float32 array of a NIfTI file; reoriented like ``like`` (a SimpleITK image)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    if like is not None:  # ch2 and mni are stored with opposite x directions
        code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(like.GetDirection())
        image = sitk.DICOMOrient(image, code)
    return image, sitk.GetArrayFromImage(image)


def block_mean(volume, factor):
    """Average factor^3 blocks (the volume cropped to a multiple of factor)."""
    if factor == 1:
        return np.ascontiguousarray(volume, np.float32)
    z, y, x = (n // factor * factor for n in volume.shape)
    v = volume[:z, :y, :x].reshape(z // factor, factor, y // factor, factor, x // factor, factor)
    return v.mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def rotation3(angles_deg):
    """R = Rz @ Ry @ Rx for rotations (about x, y, z) in degrees."""
    ax, ay, az = (math.radians(a) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def physical_pose(linear, centre, shift):
    pose = np.eye(4)
    pose[:3, :3] = linear
    pose[:3, 3] = centre + np.asarray(shift) - linear @ centre
    return pose


def volume_case(scene, scene_spacing, case, seed=0, angles=VOLUME_ANGLES, shift=VOLUME_SHIFT):
    """Reference = the scene (every third plane for ``aniso``); moving = the scene through
    a known pose (cubic spline), then gain, bias and noise (``remap``: sin(pi v / vmax))."""
    step = 3 if case == "aniso" else 1
    spacing = (scene_spacing * step, scene_spacing, scene_spacing)
    reference = np.ascontiguousarray(scene[::step])
    nz, ny, nx = reference.shape
    scale = np.diag([*spacing[::-1], 1.0])  # voxel (x, y, z) -> mm
    centre = scale[:3, :3] @ [(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2]
    linear = rotation3(angles)
    if case == "affine":
        linear = linear @ (np.eye(3) + VOLUME_AFFINE)
    true = np.linalg.inv(scale) @ physical_pose(linear, centre, shift) @ scale
    # moving(true p) = reference(p), p on the reference grid; the reference grid is the
    # scene's with z every ``step`` planes: scene voxel = G p with G = diag(1, 1, step).
    grid = np.diag([1.0, 1.0, step, 1.0])
    sample = SWAP @ (grid @ np.linalg.inv(true)) @ SWAP  # moving voxel -> scene voxel (z, y, x)
    moving = ndimage.affine_transform(
        scene, sample, output_shape=reference.shape, order=3, mode="constant", cval=0.0
    ).astype(np.float32)
    vmax = float(np.percentile(scene, 99.9))
    if case == "remap":  # non-monotonic: mid greys (grey matter) brightest, white matter dark
        moving = np.sin(np.pi * np.clip(moving, 0, vmax) / vmax).astype(np.float32) * vmax
    rng = np.random.default_rng(seed)
    moving = VOLUME_GAIN * moving + VOLUME_BIAS * vmax
    moving += rng.normal(0, VOLUME_NOISE * vmax, moving.shape).astype(np.float32)
    motion = "affine" if case == "affine" else "euclidean"
    label = {
        "rigid": "ch2 rigid",
        "aniso": "ch2 rigid, 3x z spacing",
        "affine": "ch2 affine (+-3 %)",
        "remap": "ch2 rigid, sin remap",
    }[case]
    dims = "x".join(str(n) for n in reference.shape)
    return Pair(f"{label} {dims}", reference, moving, true, motion, spacing, case == "remap")


def ch2_scene(root: Path, factor):
    image, volume = read_volume(root / "brain-volumes" / "ch2.nii.gz")
    return image, block_mean(volume, factor)


def volume_cycle(root: Path, factor=2, seed=0):
    """``(name, volume, truth from the first)``: ch2 on the 3x z grid, and two noisy rigid
    copies of it (the pose of ``rigid`` and a second one); spacing (3f, f, f)."""
    _, scene = ch2_scene(root, factor)
    first = volume_case(scene, float(factor), "aniso", seed)
    second = volume_case(scene, float(factor), "aniso", seed + 1, (-3.0, 2.0, -4.0), (-2, 3, 1.5))
    return [("ch2", first.reference, np.eye(4)), ("pose 1", first.moving, first.true)] + [
        ("pose 2", second.moving, second.true)
    ], first.spacing


def volume_pairs(root: Path, cases, factor=2, seed=0):
    d = root / "brain-volumes"
    ch2_image, scene = ch2_scene(root, factor)
    pairs = [volume_case(scene, float(factor), c, seed) for c in cases if c != "mni"]
    if "mni" in cases:
        _, mni = read_volume(d / "mni.nii.gz", like=ch2_image)
        mni = block_mean(mni, factor)
        dims = "x".join(str(n) for n in scene.shape)
        pairs.append(Pair(f"ch2 vs mni {dims}", scene, mni, None, "affine", (factor,) * 3, True))
    return pairs
