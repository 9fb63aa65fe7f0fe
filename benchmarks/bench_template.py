"""Many images against one reference: ``align(reference, m)`` in a loop vs one ``Template``.

For each size it builds one reference and N moving images, each seen through its own
random small similarity (rotation within ±1°, shift within ±6 px, scale within ±1 %)
with noise, then aligns all N twice, interleaved round by round so that the machine's
drift hits both alike:

* ``plain``: ``align(reference, moving)`` for every image (what a loop does without help);
* ``template``: ``Template(reference)`` once (its cost included), then
  ``align(template, moving)`` for every image.

It prints ms per image (best round), the ratio template/plain, and checks that both
give the same matrices and the corner error against the known transforms.

Usage::

    python benchmarks/bench_template.py                 # 512, 1024, 2048 px; 20 images
    python benchmarks/bench_template.py --sizes 1024 --images 40 --rounds 5 --motion euclidean
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import cv2
import numpy as np

from napari_ecc_align import Template, align
from napari_ecc_align.data import make_pair, natural_image


def similarity(rng, center, margin):
    angle = math.radians(rng.uniform(-1, 1))
    scale = 1 + rng.uniform(-0.01, 0.01)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    shift = rng.uniform(-6, 6, 2) + margin
    m[:2, 2] = np.asarray(center) + shift - m[:2, :2] @ np.asarray(center)
    return m


def dataset(side: int, images: int, seed: int = 0):
    """One reference, ``images`` moving images and their true reference→moving matrices."""
    margin = 24
    rng = np.random.default_rng(seed)
    scene = natural_image((side + 2 * margin, side + 2 * margin), seed=seed)
    to_reference = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1.0]])
    reference = make_pair(scene, to_reference, (side, side))
    center = ((side - 1) / 2, (side - 1) / 2)
    moving, truths = [], []
    for _ in range(images):
        scene_from_moving = similarity(rng, center, margin)
        view = make_pair(scene, scene_from_moving, (side, side))
        view = view * rng.uniform(0.8, 1.0) + rng.normal(0, 0.01, view.shape).astype(np.float32)
        moving.append(view.astype(np.float32))
        truths.append(np.linalg.inv(scene_from_moving) @ to_reference)
    return reference, moving, truths


def run_plain(reference, moving, motion):
    return [align(reference, m, motion=motion) for m in moving]


def run_template(reference, moving, motion):
    template = Template(reference)
    return [align(template, m, motion=motion) for m in moving]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--motion", default="affine")
    args = parser.parse_args()
    cv2.setNumThreads(cv2.getNumberOfCPUs())
    print(
        f"machine: {platform.machine()}, {cv2.getNumberOfCPUs()} cores, OpenCV {cv2.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}; motion {args.motion}, "
        f"{args.images} images per size, best of {args.rounds} interleaved rounds"
    )
    print("| size | plain ms/image | Template ms/image | Template/plain | same matrices | err px |")
    print("|---|---|---|---|---|---|")
    for side in args.sizes:
        reference, moving, truths = dataset(side, args.images)
        run_plain(reference, moving[:2], args.motion)  # warm-up (imports, OpenCV kernels)
        best = {"plain": math.inf, "template": math.inf}
        results = {}
        for _ in range(args.rounds):
            for name, fn in (("plain", run_plain), ("template", run_template)):
                start = time.perf_counter()
                results[name] = fn(reference, moving, args.motion)
                best[name] = min(best[name], time.perf_counter() - start)
        same = all(
            np.array_equal(a.matrix, b.matrix)
            for a, b in zip(results["plain"], results["template"], strict=True)
        )
        error = max(a.corner_error(t) for a, t in zip(results["template"], truths, strict=True))
        plain_ms, template_ms = (1e3 * best[k] / args.images for k in ("plain", "template"))
        print(
            f"| {side}x{side} | {plain_ms:.1f} | {template_ms:.1f} | "
            f"{template_ms / plain_ms:.2f} | {'yes' if same else 'NO'} | {error:.3f} |"
        )


if __name__ == "__main__":
    main()
