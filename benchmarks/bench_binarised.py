"""Binarised against grayscale: ``align`` next to OpenCV's own calls, pair by pair.

Issue 12's suite. Each grayscale image (8 kinds of content: a photograph, a low-contrast
photograph, a text page, a scanned score page, a texture, fluorescence spots, cells and
silhouettes) is seen through a small random similarity (rotation <= 3 deg, scale +- 2 %,
shift <= 8 px). One side of the pair is binarised with a global, an Otsu or a local
threshold (Sauvola where the window has contrast, Otsu where it is flat), with no edge
change, one pixel of ink bleed (the dark class dilated) or one pixel of erosion; the
grayscale side is JPEG-compressed (quality 75) in about 30 % of the pairs. Both
directions run: binarised reference against grayscale moving, and the reverse. Every
combination once per kind and seed: 8 x 3 x 3 x 2 = 144 pairs per seed.

For every pair it reports the corner RMS error (pixels, against the known transform) of

* ``ours``: ``align`` with its defaults;
* ``identity``: ``align`` with ``init="identity"`` (where the default start must not
  end worse);
* ``recipe``: ``cv2.findTransformECC`` at full resolution, affine, 100 iterations,
  eps 1e-7, Gaussian prefilter 5 (the article's recipe);
* ``MultiScale``: ``cv2.findTransformECCMultiScale`` (OpenCV >= 5, affine, default
  ECCParameters, on uint8 images).

then median / worst / share <= 0.1 px per kind and per threshold, and a summary against
issue 12's targets. ``--score-page`` prints the article's visual check as a number: the
share of pixels where a binarised score page and the aligned grayscale page, binarised
with the same threshold, disagree, at the estimated and at the true warp.

Usage::

    python benchmarks/bench_binarised.py               # 144 pairs at 512 px
    python benchmarks/bench_binarised.py --seeds 2 --size 384
    python benchmarks/bench_binarised.py --score-page  # the disagreement figure only
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import time

import cv2
import numpy as np
from skimage.filters import threshold_sauvola

from napari_ecc_align import AlignmentError, align, difference, warp
from napari_ecc_align.data import (
    fluorescence_spots,
    make_pair,
    natural_image,
    score_pair,
    text_page,
    texture,
)
from napari_ecc_align.engine.alignment import corner_rms


def _silhouettes(shape, seed):
    """Filled, softly shaded blobs on a plain background (a segmentation's source)."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), min(shape) / 14)
    inside = field > np.quantile(field, 0.6)
    shading = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), min(shape) / 6)
    image = np.where(inside, 0.35 + 0.3 * shading / shading.max(), 0.85).astype(np.float32)
    return cv2.GaussianBlur(image, (0, 0), 1.2)


def _cells(shape, seed):
    """Fluorescent cells: large dim blobs with bright nuclei on black."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    for _ in range(int(shape[0] * shape[1] / 2500)):
        y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        a, b = rng.uniform(6, 14, 2)
        cv2.ellipse(image, (int(x), int(y)), (int(a), int(b)), rng.uniform(0, 180), 0, 360,
                    float(rng.uniform(0.3, 0.6)), -1)  # fmt: skip
        cv2.circle(image, (int(x), int(y)), int(min(a, b) / 2), 1.0, -1)
    return cv2.GaussianBlur(image, (0, 0), 1.5)


def _score(shape, seed):
    """A score/document page as a scanner sees it: blurred ink on paper."""
    return cv2.GaussianBlur(text_page(shape, seed), (0, 0), 0.8)


def _low_contrast(shape, seed):
    return 0.4 + 0.2 * natural_image(shape, seed)


KINDS = {
    "photo": natural_image,
    "text": lambda shape, seed: text_page(shape, seed + 100),
    "score": _score,
    "texture": texture,
    "spots": fluorescence_spots,
    "cells": _cells,
    "silhouette": _silhouettes,
    "low contrast": _low_contrast,
}
THRESHOLDS = ("global", "otsu", "sauvola")
EDGES = ("none", "bleed", "erode")
DIRECTIONS = ("binary ref", "binary mov")


def binarise(gray: np.ndarray, how: str, edge: str) -> np.ndarray:
    """Bilevel version of a float image in [0, 1] (True = bright class), then bleed/erode."""
    if how == "global":
        bright = gray > 0.5 * (float(gray.min()) + float(gray.max()))
    elif how == "otsu":
        u8 = np.clip(gray * 255, 0, 255).astype(np.uint8)
        bright = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1] > 0
    else:
        bright = local_threshold(gray)
    kernel = np.ones((3, 3), np.uint8)
    if edge == "bleed":  # the dark class (ink) grows by a pixel
        bright = cv2.erode(bright.astype(np.uint8), kernel) > 0
    elif edge == "erode":
        bright = cv2.dilate(bright.astype(np.uint8), kernel) > 0
    return bright


def local_threshold(gray: np.ndarray, window: int = 51) -> np.ndarray:
    """Sauvola's local threshold where the window has contrast, Otsu's in flat regions.

    Sauvola alone turns a flat, noisy background (fluorescence on black) into speckle:
    with no local contrast its threshold sits just below the local mean.
    """
    gray = np.asarray(gray, np.float32)
    mean = cv2.blur(gray, (window, window))
    std = np.sqrt(np.maximum(cv2.blur(gray * gray, (window, window)) - mean**2, 0))
    sauvola = gray > threshold_sauvola(gray, window_size=window)
    u8 = np.clip(gray * 255, 0, 255).astype(np.uint8)
    otsu = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1] > 0
    return np.where(std > 0.1, sauvola, otsu)


def jpeg(gray: np.ndarray, quality: int = 75) -> np.ndarray:
    u8 = np.clip(gray * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 0)


def random_similarity(rng, size):
    angle = math.radians(rng.uniform(-3, 3))
    scale = 1 + rng.uniform(-0.02, 0.02)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    centre = np.array([(size - 1) / 2, (size - 1) / 2])
    m[:2, 2] = centre + rng.uniform(-8, 8, 2) - m[:2, :2] @ centre
    return m


def multiscale(reference, moving) -> np.ndarray:
    params = cv2.ECCParameters()
    params.motionType = cv2.MOTION_AFFINE
    _, warp = cv2.findTransformECCMultiScale(
        to_u8(reference), to_u8(moving), np.eye(2, 3, dtype=np.float32), params
    )
    return np.vstack([warp, [0, 0, 1]]).astype(np.float64)


def to_u8(image) -> np.ndarray:
    image = np.asarray(image, np.float32)
    lo, hi = float(image.min()), float(image.max())
    return np.clip((image - lo) * (255 / max(hi - lo, 1e-6)) + 0.5, 0, 255).astype(np.uint8)


def recipe(reference, moving) -> np.ndarray:
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-7)
    ref32, mov32 = (np.asarray(a, np.float32) for a in (reference, moving))
    _, warp = cv2.findTransformECC(ref32, mov32, warp, cv2.MOTION_AFFINE, criteria, None, 5)
    return np.vstack([warp, [0, 0, 1]]).astype(np.float64)


def pairs(size: int, seeds: int):
    """(kind, threshold, edge, direction, jpeg, reference, moving, truth) for the suite."""
    margin = 16
    for kind, make in KINDS.items():
        for seed in range(seeds):
            rng = np.random.default_rng(1000 * seed + len(kind))
            scene = make((size + 2 * margin, size + 2 * margin), seed)
            scene = (scene - scene.min()) / max(float(np.ptp(scene)), 1e-6)
            truth = random_similarity(rng, size)
            offset = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1.0]])
            # The moving image is the scene cut through the true warp; the reference is
            # the straight cut: reference(x) = moving(truth x).
            straight = make_pair(scene, offset, (size, size))
            moved = make_pair(scene, offset @ np.linalg.inv(truth), (size + 24, size + 24))
            for how, edge, direction in itertools.product(THRESHOLDS, EDGES, DIRECTIONS):
                compressed = bool(rng.random() < 0.3)
                if direction == "binary ref":
                    reference = binarise(straight, how, edge)
                    moving = jpeg(moved) if compressed else moved
                    yield kind, how, edge, direction, compressed, reference, moving, truth
                else:
                    # The binarised image moves: estimate grayscale -> binary, whose
                    # true matrix is the same reference->moving warp.
                    reference = jpeg(straight) if compressed else straight
                    moving = binarise(moved, how, edge)
                    yield kind, how, edge, direction, compressed, reference, moving, truth


METHODS = {
    "ours": lambda r, m: align(r, m),
    "identity": lambda r, m: align(r, m, init="identity"),
    "recipe": recipe,
}
if hasattr(cv2, "findTransformECCMultiScale"):
    METHODS["MultiScale"] = multiscale


def run_suite(size: int, seeds: int) -> list[dict]:
    rows = []
    for kind, how, edge, direction, compressed, reference, moving, truth in pairs(size, seeds):
        row = {"kind": kind, "threshold": how, "edge": edge, "direction": direction,
               "jpeg": compressed}  # fmt: skip
        results = {}
        for name, fn in METHODS.items():
            try:
                results[name] = fn(reference, moving)
                matrix = getattr(results[name], "matrix", results[name])
                row[name] = corner_rms(matrix, truth, reference.shape[:2])
            except (AlignmentError, cv2.error):
                row[name] = math.inf
        # The rule of issue 12: the default start may not end over a pixel from where the
        # identity start ends, scoring about the same, unless it moves the image less.
        if "ours" in results and "identity" in results:
            ours, ident = results["ours"], results["identity"]
            eye = np.eye(3)
            row["rule broken"] = bool(
                corner_rms(ours.matrix, ident.matrix, reference.shape) > 1
                and abs(ours.correlation - ident.correlation) <= 0.01
                and corner_rms(ours.matrix, eye, reference.shape)
                > corner_rms(ident.matrix, eye, reference.shape)
            )
        rows.append(row)
    return rows


def _stats(values) -> str:
    values = np.asarray(values)
    return f"{np.median(values):.3f} / {values.max():.2f} / {np.mean(values <= 0.1):.0%}"


def print_table(rows, key: str, groups) -> None:
    names = [n for n in METHODS if n != "identity"]
    print(f"| {key} | pairs | " + " | ".join(f"{n}: median / worst / <= 0.1 px" for n in names)
          + " |")  # fmt: skip
    print("|---|---|" + "---|" * len(names))
    for group in [*groups, "all"]:
        sel = [r for r in rows if group == "all" or r[key] == group]
        cells = " | ".join(_stats([r[n] for r in sel]) for n in names)
        print(f"| {group} | {len(sel)} | {cells} |")


def summary(rows) -> None:
    ours = np.array([r["ours"] for r in rows])
    ident = np.array([r["identity"] for r in rows])
    rec = np.array([r["recipe"] for r in rows])
    global_otsu = np.array([r["threshold"] in ("global", "otsu") for r in rows])
    print(f"median corner error: ours {np.median(ours):.3f} px (target <= 0.15), "
          f"recipe {np.median(rec):.3f}")  # fmt: skip
    if "MultiScale" in METHODS:
        print(f"                     MultiScale {np.median([r['MultiScale'] for r in rows]):.3f}")
    print(f"median on global + Otsu: ours {np.median(ours[global_otsu]):.3f} px (target <= 0.10)")
    print(f"pairs <= 0.1 px: ours {np.mean(ours <= 0.1):.0%} (target >= 35 %), "
          f"recipe {np.mean(rec <= 0.1):.0%}")  # fmt: skip
    worse = np.mean(ours > rec + 0.05)
    print(f"ours worse than the recipe by > 0.05 px: {worse:.0%} of pairs (target <= 10 %)")
    failed = {name: int(np.sum(np.isinf(v))) for name, v in (("ours", ours), ("recipe", rec),
                                                             ("identity", ident))}  # fmt: skip
    print(f"failed (AlignmentError or cv2.error): {failed}")
    far = int(np.sum((ours > 2) & (ident < 1)))
    print(f"pairs > 2 px off where the identity start is < 1 px off: {far} (target 0)")
    with np.errstate(invalid="ignore"):  # inf - inf where both failed
        apart = int(np.sum((np.abs(ours - ident) > 1) & (ident < 1)))
    print(f"pairs ending > 1 px from an identity start that is < 1 px off: {apart}")
    broken = sum(r.get("rule broken", False) for r in rows)
    print(f"pairs ending > 1 px further out than the identity start, correlating within "
          f"0.01 of it: {broken} (target 0)")  # fmt: skip


def disagreement(reference, moving, matrix, threshold, inside) -> float:
    """Share of pixels (within ``inside``) where the binarised reference and the moving
    page, aligned by ``matrix`` and binarised at ``threshold``, disagree."""
    aligned = warp(moving, matrix, reference.shape) > threshold
    return float(np.mean((reference > 127) != aligned, where=inside))


def score_pages(shape=(1200, 900), seeds=5, picture=None) -> None:
    """The article's visual check as a number, on :func:`score_pair` pages."""
    print("| page | corner error px | disagreement at the estimate | at the true warp | ratio |")
    print("|---|---|---|---|---|")
    ratios = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        reference, moving, truth = score_pair(
            shape, seed, angle_deg=rng.uniform(-1, 1), scale=1 + rng.uniform(-0.005, 0.005),
            shift=tuple(rng.uniform(-8, 8, 2)),
        )  # fmt: skip
        result = align(reference, moving)
        # One threshold for the scan (Otsu's), used at both warps; pixels that either warp
        # takes from outside the scan are left out of both counts.
        threshold = cv2.threshold(moving, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]
        ones = np.ones(moving.shape, np.float32)
        inside = (warp(ones, result) > 0.999) & (warp(ones, truth, reference.shape) > 0.999)
        estimated = disagreement(reference, moving, result.matrix, threshold, inside)
        true = disagreement(reference, moving, truth, threshold, inside)
        ratios.append(estimated / true)
        print(f"| {seed} | {result.corner_error(truth):.3f} | {estimated:.3%} | {true:.3%} | "
              f"{estimated / true:.3f} |")  # fmt: skip
        if picture and seed == 0:
            save_picture(picture, reference, moving, result)
    print(f"worst ratio {max(ratios):.3f} (target <= 1.05)")


def save_picture(path, reference, moving, result) -> None:
    """Before/after: |reference - moving| unaligned and aligned, one crop side by side."""
    before = difference(reference, moving[: reference.shape[0], : reference.shape[1]])
    after = difference(reference, warp(moving, result))
    rows, cols = reference.shape
    crop = np.s_[rows // 4 : rows // 4 + 300, cols // 4 : cols // 4 + 400]
    gap = np.full((300, 12), 255, np.uint8)
    # Inverted, like the article's ImageChops pictures: white where the pages agree.
    panel = np.hstack([255 - before[crop], gap, 255 - after[crop]])
    cv2.imwrite(str(path), panel)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--score-page", action="store_true",
                        help="only the score-page disagreement figure")  # fmt: skip
    parser.add_argument("--picture", metavar="PNG",
                        help="with --score-page: save a before/after picture")  # fmt: skip
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, OpenCV {cv2.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}; {args.size}x{args.size} px, {args.seeds} seed(s)"
    )
    if args.score_page:
        score_pages(picture=args.picture)
        return
    start = time.perf_counter()
    rows = run_suite(args.size, args.seeds)
    print(f"{len(rows)} pairs in {time.perf_counter() - start:.0f} s\n")
    print_table(rows, "kind", KINDS)
    print()
    print_table(rows, "threshold", THRESHOLDS)
    print()
    print_table(rows, "edge", EDGES)
    print()
    summary(rows)


if __name__ == "__main__":
    main()
