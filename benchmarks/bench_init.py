"""How often alignment succeeds on badly misaligned pairs: init="auto" vs the identity
vs OpenCV's own pyramid ECC.

Pairs are cut from one scene: the reference is a crop; the moving image is another
crop of the same scene seen through a random similarity or affine (translation up to
±20 % of the crop, rotation up to ±30°, scale 0.85–1.15), with a gain/bias change
and noise. Eight kinds of image: natural photo, text page, repetitive texture, sparse
fluorescence-like spots, a low-contrast photo, a binary silhouette of blobs (the
reference stays bilevel; the moving image is resampled, so its edges are gray), a clock
face (radially symmetric ticks, two hands) and one binary animal silhouette on a flat
background (issue 21's held-out misses were of these two kinds). A second set draws the
rotation from the whole circle. Success = corner RMS error ≤ 0.25 px.

    python benchmarks/bench_init.py [--pairs 20] [--size 320] [--kinds "clock face" ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import partial

import cv2
import numpy as np

from napari_ecc_align import AlignmentError, align
from napari_ecc_align.data import KINDS
from napari_ecc_align.engine.alignment import corner_rms

SUCCESS_PX = 0.25


def low_contrast(shape, seed):
    return 0.45 + 0.1 * KINDS["natural"](shape, seed=seed)


def silhouette(shape, seed):
    """A binary mask (blobs of a smooth random field): a segmentation against its image."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), min(shape) / 40)
    return (field > np.quantile(field, 0.55)).astype(np.float32)


def clock(shape, seed):
    """A clock face in the middle of the scene: a dial with 60 minute and 12 hour ticks
    (radially symmetric to 6 and 30 degrees) and two hands that break the symmetry."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    image = np.full(shape, 0.85, np.float32)
    centre = (cols // 2, rows // 2)
    radius = min(shape) // 7  # the scene is 3 crops wide: the dial fills most of a crop
    cv2.circle(image, centre, radius, 0.95, -1, cv2.LINE_AA)
    cv2.circle(image, centre, radius, 0.15, max(2, radius // 40), cv2.LINE_AA)
    for tick in range(60):
        a = 2 * math.pi * tick / 60
        inner = radius * (0.8 if tick % 5 == 0 else 0.9)
        width = max(1, radius // (25 if tick % 5 == 0 else 80))
        p0 = (int(centre[0] + inner * math.cos(a)), int(centre[1] + inner * math.sin(a)))
        p1 = (
            int(centre[0] + 0.95 * radius * math.cos(a)),
            int(centre[1] + 0.95 * radius * math.sin(a)),
        )
        cv2.line(image, p0, p1, 0.1, width, cv2.LINE_AA)
    for length, width in ((0.5, radius // 20), (0.8, radius // 40)):
        a = rng.uniform(0, 2 * math.pi)
        tip = (
            int(centre[0] + length * radius * math.cos(a)),
            int(centre[1] + length * radius * math.sin(a)),
        )
        cv2.line(image, centre, tip, 0.05, max(1, width), cv2.LINE_AA)
    return image


def shape_silhouette(shape, seed):
    """One binary object on a flat background (an animal's silhouette: a body, a head,
    legs and a tail), as a segmentation of a single thing."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    image = np.zeros(shape, np.float32)
    cx, cy, unit = cols / 2, rows / 2, min(shape) / 30  # about 60 % of a crop wide
    body = (
        (int(cx), int(cy)),
        (int(unit * rng.uniform(1.6, 2.2)), int(unit * rng.uniform(0.7, 1.0))),
    )
    cv2.ellipse(image, body[0], body[1], rng.uniform(-10, 10), 0, 360, 1.0, -1, cv2.LINE_AA)
    head = (int(cx + body[1][0] * 1.1), int(cy - unit * rng.uniform(0.8, 1.3)))
    cv2.ellipse(
        image,
        head,
        (int(unit * 0.6), int(unit * 0.35)),
        rng.uniform(-40, 0),
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
    )
    cv2.line(image, (int(cx + body[1][0] * 0.8), int(cy)), head, 1.0, int(unit * 0.4), cv2.LINE_AA)
    for k in range(4):
        x = cx + body[1][0] * (-0.7 + 0.45 * k) + rng.uniform(-3, 3)
        foot = (int(x + rng.uniform(-0.4, 0.4) * unit), int(cy + unit * rng.uniform(1.8, 2.3)))
        cv2.line(image, (int(x), int(cy)), foot, 1.0, max(2, int(unit * 0.18)), cv2.LINE_AA)
    tail = (int(cx - body[1][0] * 1.5), int(cy + rng.uniform(-0.5, 1.0) * unit))
    cv2.line(
        image,
        (int(cx - body[1][0] * 0.9), int(cy - unit * 0.2)),
        tail,
        1.0,
        max(2, int(unit * 0.12)),
        cv2.LINE_AA,
    )
    return (image > 0.5).astype(np.float32)


SCENES = {
    **KINDS,
    "low contrast": low_contrast,
    "silhouette": silhouette,
    "clock face": clock,
    "one silhouette": shape_silhouette,
}


def random_pose(rng, size, full_circle: bool, affine: bool) -> np.ndarray:
    """Reference pixel -> moving pixel, about the crop centre."""
    angle = rng.uniform(0, 360) if full_circle else rng.uniform(-30, 30)
    scale = rng.uniform(0.85, 1.15)
    a = math.radians(angle)
    linear = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    if affine:
        linear = linear @ np.array(
            [[1 + rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)], [0, 1.0]]
        )
    c = (size - 1) / 2
    pose = np.eye(3)
    pose[:2, :2] = linear
    pose[:2, 2] = [c, c] - linear @ [c, c] + rng.uniform(-0.2, 0.2, 2) * size
    return pose


def make_pair(kind, seed, size, full_circle):
    rng = np.random.default_rng(seed)
    affine = bool(seed % 2)
    scene = SCENES[kind]((3 * size, 3 * size), seed=seed).astype(np.float32)
    true = random_pose(rng, size, full_circle, affine)
    offset = np.array([[1, 0, size], [0, 1, size], [0, 0, 1.0]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    reference = cv2.warpPerspective(scene, offset, (size, size), flags=flags)
    # moving(W x) = reference(x) = scene(x + offset)  =>  moving(u) = scene(offset W^-1 u)
    moving = cv2.warpPerspective(scene, offset @ np.linalg.inv(true), (size, size), flags=flags)
    span = float(np.ptp(moving)) or 1.0
    moving = rng.uniform(0.6, 1.2) * moving + rng.uniform(-0.1, 0.1) * span
    moving = moving + rng.normal(0, 0.02 * span, moving.shape).astype(np.float32)
    return reference, moving.astype(np.float32), true, ("affine" if affine else "euclidean")


def ours(reference, moving, motion, init):
    # A rotation with a scale change is affine: euclidean has no scale.
    return align(reference, moving, motion="affine", init=init).matrix


def multiscale(reference, moving, motion):
    def u8(im):
        lo, hi = float(im.min()), float(im.max())
        return np.round((im - lo) / (hi - lo) * 255).astype(np.uint8)

    params = cv2.ECCParameters()
    params.motionType = cv2.MOTION_AFFINE
    _, warp = cv2.findTransformECCMultiScale(
        u8(reference), u8(moving), np.eye(2, 3, dtype=np.float32), params
    )
    return warp


def run_set(title, pairs, size, full_circle, methods):
    print(
        f"\n{title}: {pairs} pairs per kind, {size}x{size} crops, "
        f"success = corner RMS <= {SUCCESS_PX} px"
    )
    print("| kind | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    totals = dict.fromkeys(methods, 0)
    seconds = dict.fromkeys(methods, 0.0)
    for kind in SCENES:
        wins = dict.fromkeys(methods, 0)
        for seed in range(pairs):
            reference, moving, true, motion = make_pair(kind, seed, size, full_circle)
            for name, fn in methods.items():
                start = time.perf_counter()
                try:
                    matrix = fn(reference, moving, motion)
                    ok = corner_rms(matrix, true, reference.shape) <= SUCCESS_PX
                except (AlignmentError, cv2.error):
                    ok = False
                seconds[name] += time.perf_counter() - start
                wins[name] += ok
        for name in methods:
            totals[name] += wins[name]
        print(f"| {kind} | " + " | ".join(f"{100 * wins[m] / pairs:.0f} %" for m in methods) + " |")
    n = pairs * len(SCENES)
    print("| **all** | " + " | ".join(f"**{100 * totals[m] / n:.1f} %**" for m in methods) + " |")
    print(
        "| time per pair | " + " | ".join(f"{1000 * seconds[m] / n:.0f} ms" for m in methods) + " |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20, help="pairs per kind and set")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--kinds", nargs="*", choices=list(SCENES), help="default: all")
    args = parser.parse_args(argv)
    if args.kinds:
        for kind in set(SCENES) - set(args.kinds):
            del SCENES[kind]
    methods = {
        'init="auto"': partial(ours, init="auto"),
        'init="identity"': partial(ours, init="identity"),
    }
    if hasattr(cv2, "findTransformECCMultiScale"):
        methods["findTransformECCMultiScale"] = multiscale
    run_set("Set 1: rotation within ±30°", args.pairs, args.size, False, methods)
    run_set("Set 2: any rotation", args.pairs, args.size, True, methods)
    return 0


if __name__ == "__main__":
    sys.exit(main())
