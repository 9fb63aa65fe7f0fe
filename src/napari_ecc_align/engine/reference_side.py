"""The reference side of one ECC level, and the sums each iteration needs.

Inverse-compositional ECC (Evangelidis & Psarakis, TPAMI 2008, section 3.2) takes
the Jacobian from the *reference*, so everything here is computed once per
pyramid level and memoised on the level (``Level.memo`` in :mod:`.ecc`): the sample
points (on large levels the pixels with the strongest x and y gradients, which
carry almost all of ECC's information; on coarse levels every valid pixel), their
Jacobian rows and moment matrix. :class:`Samples` then turns a moving image and a
matrix into the correlation and the ECC update with a handful of large numpy and
OpenCV calls, which matters when stack frames run in threads.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .alignment import AlignmentError
from .structure import NoStructure

N_PARAMS = {"translation": 2, "euclidean": 3, "affine": 6, "homography": 8}
# Sample points per level; more buys little accuracy for linear cost.
_MAX_SAMPLES = 30_000


def reference_side(ref, ksize: int, motion: str, level: int, seeds, finest_samples=None):
    """The level's :class:`Samples` for ``motion`` and its sample points (to seed the next
    finer level; None when every pixel is used), memoised on ``ref``. ``finest_samples``:
    level 0 picks that many strongest-gradient pixels of its own instead of the coarser
    level's ``seeds`` (the precision of a binarised image needs many of its edges).

    Everything here depends on the reference alone, so a stack aligned to one frame
    computes it once per level. Memo keys hold ``id(seeds)``; the entry keeps ``seeds``
    alive, so the id cannot be reused while the entry exists. Two threads may compute
    an entry at once; ``setdefault`` keeps the first, so both use the same objects.
    """
    finest_samples = finest_samples if level == 0 else None
    if finest_samples:
        seeds = None  # level 0 chooses its own: one memo entry whatever the coarser level
    seeds_key = None if seeds is None else id(seeds)
    key = ("problem", ksize, motion, seeds_key, finest_samples)
    found = ref.memo.get(key)
    if found is not None:
        return found[0], found[1]
    points = _reference_points(ref, ksize, level, seeds, finest_samples)
    idx, xs, ys, template, grad_x_s, grad_y_s, selected = points
    if idx.size < 4 * N_PARAMS[motion]:
        margin, side = level_margin(ksize), min(ref.image.shape)
        if side <= 2 * margin + 1:  # a thin strip: the prefilter's margin leaves no samples
            raise NoStructure(
                f"the reference is {side} pixels across on pyramid level {level}, too thin "
                f"for the {margin}-pixel margin gauss_filter_size={ksize} keeps on each side "
                "(use gauss_filter_size=0 or fewer pyramid_levels)"
            )
        raise NoStructure(
            f"the reference has too few valid pixels on pyramid level {level} "
            f"({idx.size}); use fewer pyramid_levels or a larger reference_mask"
        )
    problem = samples_at(xs, ys, template, grad_x_s, grad_y_s, ref.image.shape, motion, level)
    found = ref.memo.setdefault(key, (problem, selected, seeds))
    return found[0], found[1]


def samples_at(xs, ys, template, grad_x, grad_y, shape, motion: str, level: int) -> Samples:
    """The :class:`Samples` of points ``(xs, ys)`` (float64 pixels of an image of
    ``shape``) with their prefiltered values and twice their central-difference gradients."""
    cx, cy, half = centre_and_half_size(*shape)
    gx = grad_x.astype(np.float64) * (0.5 * half)
    gy = grad_y.astype(np.float64) * (0.5 * half)
    n_params = N_PARAMS[motion]
    rows = np.empty((n_params + 2, xs.size))  # the Jacobian's rows, template values, ones
    jacobian_rows(motion, (xs - cx) / half, (ys - cy) / half, gx, gy, out=rows[:n_params])
    rows[n_params], rows[n_params + 1] = template, 1.0
    return Samples(rows, xs, ys, level)


def centre_and_half_size(rows: int, cols: int) -> tuple[float, float, float]:
    """The normalised coordinates the Jacobian uses: pixel (x, y) → ((x - cx) / half,
    (y - cy) / half), centre 0 and half-size 1, which keeps the Hessian well conditioned."""
    return (cols - 1) / 2.0, (rows - 1) / 2.0, max(rows, cols) / 2.0


def flat_overlap_error(level: int) -> NoStructure:
    """The error for a pyramid level with no structure where the images overlap
    (shared with :mod:`.volume`, which samples volumes): a :class:`NoStructure`, so the
    estimate goes on from a finer level."""
    return NoStructure(
        f"one image is flat where they overlap (pyramid level {level}); "
        "use a mask around the textured region or a different init"
    )


def _reference_points(ref, ksize: int, level: int, seeds, finest_samples=None):
    """Sample points of one reference level (motion-independent part), memoised on ``ref``.

    ``seeds`` are the (x, y) points chosen by gradient on the next coarser level; when
    given and this level is large, the samples here are their positions doubled, which
    spares a full-resolution gradient and selection pass. Without them, the strongest
    gradients are chosen, up to ``finest_samples`` (default ``_MAX_SAMPLES``).
    """
    key = ("points", ksize, None if seeds is None else id(seeds), finest_samples)
    found = ref.memo.get(key)
    if found is not None:
        return found[0]
    ref_img = ref.image
    if ksize > 1:
        ref_img = cv2.GaussianBlur(ref_img, (ksize, ksize), 0)
    # The blur spreads masked (and reflected border) pixels by ksize // 2 and the
    # gradient by one more.
    margin = level_margin(ksize)
    ref_ok = erode(ref.valid, margin)
    rows, cols = ref_img.shape
    flat = ref_img.ravel()
    inner = (rows - 2 * margin) * (cols - 2 * margin)
    if seeds is not None and inner > _MAX_SAMPLES:
        idx = _seeded_samples(seeds, rows, cols, margin, ref_ok)
        # 2·gradient at the samples only (halved with the Jacobian).
        grad_x_s = flat[idx + 1] - flat[idx - 1]
        grad_y_s = flat[idx + cols] - flat[idx - cols]
    else:
        idx = select_samples(ref_img, ref_ok, margin, finest_samples)
        grad_x_s = flat[idx + 1] - flat[idx - 1]
        grad_y_s = flat[idx + cols] - flat[idx - cols]
    ys, xs = np.divmod(idx, cols)
    xs = xs.astype(np.float64)
    ys = ys.astype(np.float64)
    template = flat[idx].astype(np.float64)
    selected = (xs, ys) if inner > _MAX_SAMPLES else None
    points = (idx, xs, ys, template, grad_x_s, grad_y_s, selected)
    return ref.memo.setdefault(key, (points, seeds))[0]


def _seeded_samples(seeds, rows, cols, margin, valid) -> np.ndarray:
    """Flat indices of the coarser level's samples on this level (x → 2x, exact for pyrDown)."""
    xs, ys = (2 * seeds[0]).astype(np.intp), (2 * seeds[1]).astype(np.intp)
    keep = (xs >= margin) & (xs < cols - margin) & (ys >= margin) & (ys < rows - margin)
    idx = ys[keep] * cols + xs[keep]
    if valid is not None:
        idx = idx[valid.ravel()[idx]]
    return idx


class Samples:
    """One level's sample points with what inverse-compositional ECC precomputes.

    The rows r = (g₁ … g_p, t, 1) per point (Jacobian of the reference, template
    value, one) hold everything fixed for the level: their moment matrix Σrrᵀ
    contains Σggᵀ, Σg·t, Σg, Σt², Σt and n. Each iteration needs one product
    Σr·w (Σg·w, Σt·w, Σw) and Σw². When some points fall outside the moving image,
    their share of the moments is subtracted (one small product). Few, large numpy
    and OpenCV calls per iteration matter when stack frames run in threads: the
    Python between them holds the GIL. (np.dot, not @: matmul on 1-D float64 takes a
    slow path in numpy 2.)
    """

    def __init__(self, rows, xs, ys, level):
        """``rows``: the Jacobian's rows (one per parameter), the template values, ones."""
        n = rows.shape[1]
        self.n, self.level, self.n_params = n, level, rows.shape[0] - 2
        self.rows = rows
        self.moments = np.dot(self.rows, self.rows.T)
        # cv2.remap takes one (rows, width, 2) float32 map; it refuses sides of 32767+.
        self.width = n if n < 32767 else 1024
        padded = -(-n // self.width) * self.width
        self.points = np.zeros((padded, 3))  # x, y, 1 per row; the padding is ignored
        self.points[:n, 0], self.points[:n, 1], self.points[:, 2] = xs, ys, 1.0
        # The same points as a float32 map for cv2.transform (exact: integer pixels).
        # float32 keeps 5e-4 px at 8000 px; cv2.remap rounds positions to 1/32 px anyway.
        self.map = self.points[:, :2].astype(np.float32).reshape(-1, self.width, 2)
        # With every point usable, the Hessian and the template terms are fixed too.
        self.full = self._fixed_terms(self.moments)

    @property
    def template(self) -> np.ndarray:
        return self.rows[-2]

    def sample_moving(self, mov_img, mov_ok, matrix, margin):
        """Moving-image values at W·(x, y) (bilinear, float64), a uint8 mask of the usable
        points (nonzero) and their count. Points within ``margin`` pixels of the moving
        image's edge are not usable: the blur there mixes in reflected pixels."""
        rows, cols = mov_img.shape
        if matrix[2, 0] != 0 or matrix[2, 1] != 0:
            mapped = np.dot(self.points, matrix.T)
            with np.errstate(divide="ignore", invalid="ignore"):
                xy = mapped[:, :2] / mapped[:, 2:]
            xy[~(mapped[:, 2] > 0) | ~np.isfinite(xy).all(axis=1)] = -1  # never usable
            xy = xy.astype(np.float32).reshape(self.map.shape)
        else:
            xy = cv2.transform(self.map, matrix[:2])
        values = _remap(mov_img, xy, cv2.INTER_LINEAR)
        inside = cv2.inRange(xy, (margin, margin), (cols - 1 - margin, rows - 1 - margin))
        if mov_ok is not None:
            valid = _remap(mov_ok.view(np.uint8), xy, cv2.INTER_NEAREST)
            inside = cv2.bitwise_and(inside, inside, mask=valid)
        inside = inside.reshape(-1)[: self.n]
        values = values.reshape(-1)[: self.n].astype(np.float64)
        return values, inside, cv2.countNonZero(inside)

    def _fixed_terms(self, moments):
        """What the template side contributes, from the moments of the usable points:
        Σg(t - t̄), Σ(t - t̄)², H⁻¹, H⁻¹Σg(t - t̄), the paper's e, Σr and n."""
        p = self.n_params
        sums = moments[-1]  # Σg, Σt, n
        n = sums[-1]
        centred = moments - sums[:, None] * (sums / n)  # Σ(r - r̄)(r - r̄)ᵀ
        tt = centred[p, p]
        if not tt > 1e-10 * moments[p, p]:  # relative: rounding error of a flat template
            raise flat_overlap_error(self.level)
        t_proj = centred[:p, p]
        invertible, h_inv = cv2.invert(centred[:p, :p].copy())  # LU, as np.linalg.inv
        if not invertible:
            raise NoStructure(
                f"the reference has no structure that fixes this motion on pyramid level "
                f"{self.level}; try a simpler motion model or fewer pyramid_levels"
            )
        h_t = np.dot(h_inv, t_proj)
        return t_proj, tt, h_inv, h_t, tt - np.dot(t_proj, h_t), sums, n

    def update(self, warped, inside, usable):
        """The correlation now and the ECC parameter update Δp, over the points where
        ``inside`` is nonzero (``usable`` of them). ``warped`` may be changed."""
        rows = self.rows
        if usable == self.n:
            terms = self.full
        elif 2 * usable >= self.n:  # a few points lost: subtract their share
            bad = np.flatnonzero(inside == 0)
            warped[bad] = 0.0  # so the products below sum over the usable points only
            left_out = rows[:, bad]
            terms = self._fixed_terms(self.moments - np.dot(left_out, left_out.T))
        else:  # most points lost: sum over the usable ones
            good = np.flatnonzero(inside)
            rows, warped = rows[:, good], warped[good]
            terms = self._fixed_terms(np.dot(rows, rows.T))
        t_proj, tt, h_inv, h_t, e, sums, n = terms
        p = self.n_params
        products = np.dot(rows, warped)  # Σg·w, Σt·w, Σw
        w_sum = products[-1]
        centred = products - sums * (w_sum / n)  # Σg(w - w̄), Σt(w - w̄), 0
        ww_sum = float(np.dot(warped, warped))
        ww = ww_sum - w_sum * w_sum / n
        if not ww > 1e-10 * ww_sum:
            raise flat_overlap_error(self.level)
        tw, w_proj = centred[p], centred[:p]
        corr = float(tw / math.sqrt(tt * ww))
        # Δp = H⁻¹Gᵀ(λw - t) moves the linearised template towards the gain-matched
        # warped image. The best λ is e/c (the paper's closed form); when c <= 0 the
        # linearised correlation rises monotonically with λ and any λ > 0 ascends, so
        # take the paper's fallback λ = sqrt(e / d) instead of giving up.
        h_w = np.dot(h_inv, w_proj)
        c = tw - np.dot(t_proj, h_w)
        d = np.dot(w_proj, h_w)
        if c > 0:
            lam = e / c
        elif d > 0:
            lam = math.sqrt(max(e, 0.0) / d)
        else:
            raise AlignmentError(
                f"ECC found no correlation on pyramid level {self.level} (correlation "
                f"{corr:.3f}): the images may be unrelated or too far apart; try an init "
                "matrix, a mask, or another motion model"
            )
        return corr, lam * h_w - h_t


def level_margin(ksize: int) -> int:
    return max(ksize, 1) // 2 + 1


def erode(valid: np.ndarray | None, margin: int) -> np.ndarray | None:
    if valid is None:
        return None
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.erode(valid.astype(np.uint8), kernel, borderValue=1).astype(bool)


def select_samples(image, valid, margin, budget=None) -> np.ndarray:
    """Flat indices of the pixels ECC uses on one (prefiltered) level.

    Levels of at most ``budget`` (default ``_MAX_SAMPLES``) inner pixels use every
    valid pixel away from the border; larger ones the strongest |gx| and the strongest
    |gy| pixels (about half of ``budget`` each, so that e.g. the horizontal staff
    lines of a score do not crowd out the stems that fix x). The central-difference
    gradients are computed in bands of rows (see :func:`_strong_pixels`).
    """
    budget = budget or _MAX_SAMPLES
    rows, cols = image.shape
    inner = (rows - 2 * margin) * (cols - 2 * margin)
    if inner <= 0:
        return np.empty(0, np.intp)
    if inner <= budget:
        return _flat_indices(np.s_[margin:-margin, margin:-margin], rows, cols, valid)
    flat = image.ravel()
    rng = np.random.default_rng(0)  # deterministic: same inputs, same samples
    n_probe = 30_000
    probe_rows = rng.integers(margin, rows - margin, size=n_probe)
    probe_cols = rng.integers(margin, cols - margin, size=n_probe)
    probe = probe_rows * cols + probe_cols
    keep = 0.5 * budget / inner  # fraction of pixels each direction keeps
    kth = min(n_probe - 1, int(n_probe * (1.0 - keep)))
    thresholds = [
        max(float(np.partition(np.abs(flat[probe + step] - flat[probe - step]), kth)[kth]), 1e-12)
        for step in (1, cols)
    ]
    idx = _strong_pixels(image, valid, margin, *thresholds)
    if idx.size > budget:  # ties, e.g. the flat gradients of a binary image
        idx = np.sort(rng.choice(idx, size=budget, replace=False))
    elif idx.size < 64:  # almost flat image: add a regular grid of pixels
        grid = _flat_indices(np.s_[margin:-margin:4, margin:-margin:4], rows, cols, valid)
        idx = np.union1d(idx, grid)
    return idx


def _strong_pixels(image, valid, margin, x_threshold, y_threshold) -> np.ndarray:
    """Flat indices, row by row, of the inner pixels whose |2·gx| or |2·gy| reaches its
    threshold. OpenCV calls on cache-sized bands of rows into buffers reused from band
    to band: whole-image numpy gradient, magnitude and mask passes had taken 46 ms on a
    3400 x 2400 page, these 23 ms."""
    rows, cols = image.shape
    inner = np.s_[margin : cols - margin]
    band = max(1, _BAND_PIXELS // cols)
    abs_x, abs_y = (np.empty((band, cols - 2 * margin), image.dtype) for _ in range(2))
    hit_x, hit_y = (np.empty((band, cols - 2 * margin), np.uint8) for _ in range(2))
    hits = np.zeros((band, cols), np.uint8)  # 0 or 1; the margins stay 0
    found = []
    for y0 in range(margin, rows - margin, band):
        y1 = min(rows - margin, y0 + band)
        n = y1 - y0
        right, left = (
            image[y0:y1, margin + 1 : cols - margin + 1],
            image[y0:y1, margin - 1 : -margin - 1],
        )
        cv2.absdiff(right, left, dst=abs_x[:n])
        cv2.absdiff(image[y0 + 1 : y1 + 1, inner], image[y0 - 1 : y1 - 1, inner], dst=abs_y[:n])
        cv2.compare(abs_x[:n], x_threshold, cv2.CMP_GE, dst=hit_x[:n])
        cv2.compare(abs_y[:n], y_threshold, cv2.CMP_GE, dst=hit_y[:n])
        cv2.bitwise_or(hit_x[:n], hit_y[:n], dst=hit_x[:n])
        usable = 1 if valid is None else valid[y0:y1, inner].view(np.uint8)
        cv2.bitwise_and(hit_x[:n], usable, dst=hits[:n, inner])
        found.append(np.flatnonzero(hits[:n].view(bool)) + y0 * cols)
    return np.concatenate(found)


_BAND_PIXELS = 1 << 18  # float32 bands of 1 MB


def _flat_indices(region, rows, cols, valid) -> np.ndarray:
    """Flat indices of the valid pixels in ``region`` (a 2D slice) of a level."""
    chosen = np.zeros((rows, cols), bool)
    chosen[region] = True
    if valid is not None:
        chosen &= valid
    return np.flatnonzero(chosen)


def jacobian_rows(motion, x, y, gx, gy, out) -> None:
    """∂template(W(x; p))/∂p at p = 0 into ``out``, one row per parameter."""
    if motion == "translation":
        out[0], out[1] = gx, gy
    elif motion == "euclidean":
        out[0], out[1], out[2] = x * gy - y * gx, gx, gy
    else:
        for row, (coordinate, gradient) in enumerate(((x, gx), (x, gy), (y, gx), (y, gy))):
            np.multiply(coordinate, gradient, out=out[row])
        out[4], out[5] = gx, gy
        if motion == "homography":
            radial = x * gx + y * gy
            np.multiply(x, radial, out=out[6])
            np.multiply(y, radial, out=out[7])
            out[6:8] *= -1


def _remap(image, xy, interpolation):
    """``cv2.remap`` (edges replicated) of ``image`` at the float32 map ``xy``; beyond its
    32767-pixel limit (a long strip), ``scipy.ndimage.map_coordinates`` does the same."""
    if max(image.shape) < CV_REMAP_LIMIT:
        return cv2.remap(image, xy, None, interpolation, borderMode=cv2.BORDER_REPLICATE)
    from scipy import ndimage

    order = 1 if interpolation == cv2.INTER_LINEAR else 0
    coords = [xy[..., 1], xy[..., 0]]  # (row, col) order
    return ndimage.map_coordinates(image, coords, order=order, mode="nearest")


CV_REMAP_LIMIT = 32767  # SHRT_MAX: cv2.remap refuses larger source or map sides


def check_thick_enough(name: str, shape, ksize: int) -> None:
    """ECC samples only pixels ``level_margin`` away from every edge (the prefilter
    reflects the image there), and a sample band one pixel wide cannot move across
    it: a strip needs two margins and two pixels."""
    need, side = _thinnest(ksize), min(shape)
    if side < need:
        hint = (
            f"use gauss_filter_size=0, which needs {_thinnest(0)}"
            if side >= _thinnest(0)
            else "ECC cannot align an image this thin"
        )
        raise AlignmentError(
            f"the {name} image is {side} pixels across, too thin for gauss_filter_size="
            f"{ksize}, which needs {need} (a {level_margin(ksize)}-pixel margin on each "
            f"side); {hint}"
        )


def _thinnest(ksize: int) -> int:
    return 2 * level_margin(ksize) + 2
