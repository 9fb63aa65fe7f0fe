"""Seeded synthetic images, float32 in ``[0, 1]``, built on the fly (no downloads).

Each generator takes ``shape=(rows, cols)`` and ``seed``; :data:`KINDS` names them.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable

import cv2
import numpy as np

Shape = tuple[int, int]


# --------------------------------------------------------------------------- helpers


def check_shape(shape) -> Shape:
    rows, cols = (int(v) for v in shape[:2])
    if rows < 8 or cols < 8:
        raise ValueError(f"shape must be at least (8, 8), got {tuple(shape)!r}")
    return rows, cols


def _random_u8(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Uniform random bytes of ``shape``, straight from the bit generator.

    About 20x faster than ``rng.standard_normal`` on multi-megapixel images;
    weak image noise does not need to be Gaussian.
    """
    n = int(shape[0]) * int(shape[1])
    raw = rng.bit_generator.random_raw((n + 7) // 8).view(np.uint8)
    return raw[:n].reshape(shape)


def _add_noise(img: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Return ``img`` plus zero-mean uniform noise of peak-to-peak ``amplitude``."""
    # One fused, multi-threaded pass: convert the bytes, scale, add, offset.
    return cv2.addWeighted(
        img, 1.0, _random_u8(rng, img.shape), amplitude / 255, -amplitude / 2, dtype=cv2.CV_32F
    )


def _fractal_small(
    rng: np.random.Generator,
    shape: Shape,
    *,
    finest: float = 2,
    decay: float = 0.55,
    octaves: int | None = None,
) -> np.ndarray:
    """Multi-octave smooth random field at ``1/finest`` of ``shape``, float32, ~zero mean.

    Octaves are accumulated coarse to fine on a doubling grid and upsampled with
    ``INTER_CUBIC``, so the cost is a geometric series dominated by the finest
    level, and the result is not periodic. ``finest`` is the pixel period of the
    finest octave at full resolution; ``decay`` the amplitude ratio between
    successive octaves (1/f-like spectra look photographic around 0.5-0.6);
    ``octaves`` keeps only that many of the finest octaves. Resize the result
    to ``shape`` (it is smooth at that scale).
    """
    rows, cols = shape
    coarsest = 4
    n_levels = max(0, int(math.ceil(math.log2(max(rows, cols) / (coarsest * finest)))))
    field = np.zeros((coarsest, coarsest), np.float32)
    first = 0 if octaves is None else max(0, n_levels + 1 - octaves)
    amp = 1.0
    for level in range(first, n_levels + 1):
        factor = 2.0 ** (n_levels - level) * finest
        h = max(coarsest, int(math.ceil(rows / factor)))
        w = max(coarsest, int(math.ceil(cols / factor)))
        field = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
        field += np.float32(amp) * (rng.random((h, w), dtype=np.float32) - np.float32(0.5))
        amp *= decay
    return field


def fractal_field(rng: np.random.Generator, shape: Shape, **kwargs) -> np.ndarray:
    """:func:`_fractal_small` upsampled to ``shape``."""
    small = _fractal_small(rng, shape, **kwargs)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _normalise(img: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Stretch robustly to [0, 1] (percentiles from a subsample: cheap on big images)."""
    step = max(1, int(math.sqrt(img.size / 250_000)))
    lo, hi = np.percentile(img[::step, ::step], [lo_pct, hi_pct])
    scale = 1.0 / max(float(hi - lo), 1e-6)
    out = cv2.addWeighted(img, scale, img, 0.0, -lo * scale)  # one pass, float32 kept
    return np.clip(out, 0.0, 1.0, out=out)


_SHIFT = 3  # fractional bits of the fixed-point coordinates given to cv2 drawing calls


def _fixed(xy: np.ndarray) -> np.ndarray:
    """Subpixel coordinates as the fixed-point int32 that cv2 drawing expects."""
    return np.rint(np.asarray(xy) * (1 << _SHIFT)).astype(np.int32)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur truncated at 3 sigma (OpenCV's float default, 4 sigma, is slower)."""
    k = 2 * int(math.ceil(3 * sigma)) + 1
    return cv2.GaussianBlur(img, (k, k), sigma)


def _to_unit(img_u8: np.ndarray) -> np.ndarray:
    return img_u8.astype(np.float32) * np.float32(1 / 255)


def translation_matrix(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def similarity_matrix(angle_deg: float, shift, scale: float, center) -> np.ndarray:
    """Rotate by ``angle_deg`` and scale about ``center``, then shift; 3x3 float64."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    linear = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    cx, cy = center
    return (
        translation_matrix(*shift)
        @ translation_matrix(cx, cy)
        @ linear
        @ translation_matrix(-cx, -cy)
    )


# --------------------------------------------------------------------------- images


def natural_image(shape: Shape = (512, 512), seed: int = 0) -> np.ndarray:
    """Photo-like scene: fractal shading, soft-edged objects and fine texture.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the output.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    ndarray of float32, shape ``shape``
        Values in ``[0, 1]``. Not periodic; gradients everywhere.
    """
    rows, cols = check_shape(shape)
    rng = np.random.default_rng(seed)
    n = max(rows, cols)

    # Objects: occluding ellipses and polygons with flat grey levels, antialiased. A second,
    # coarser canvas records how strongly each object's surface is textured (grass vs sky).
    # Edges are blurred by ~0.8 + n/2000 px anyway, so big images are drawn at half size.
    d = 2 if n >= 1600 else 1
    canvas = np.full((-(-rows // d), -(-cols // d)), int(rng.integers(60, 200)), np.uint8)
    q = 4
    grain_map = np.full((-(-rows // q), -(-cols // q)), int(rng.integers(40, 256)), np.uint8)
    n_shapes = 60 + (rows * cols) // 60_000
    # Log-uniform sizes so that every scale is populated; big ones drawn first (background).
    r_min, r_max = 0.01 * n + 2, max(0.22 * n, 0.01 * n + 3)
    radii = np.sort(np.exp(rng.uniform(math.log(r_min), math.log(r_max), n_shapes)))
    for r in radii[::-1]:
        centre = rng.uniform((-0.1 * cols, -0.1 * rows), (1.1 * cols, 1.1 * rows))
        grey, grain = int(rng.integers(0, 256)), int(rng.integers(40, 256))
        if rng.random() < 0.5:
            axes = np.array([r, r * rng.uniform(0.3, 1.0)])
            angle = float(rng.uniform(0, 180))
            for target, f, value, line in (
                (canvas, d, grey, cv2.LINE_AA),
                (grain_map, q, grain, 8),
            ):
                c, a = _fixed(centre / f), _fixed(np.maximum(axes / f, 1))
                cv2.ellipse(target, c, a, angle, 0, 360, value, -1, line, _SHIFT)
        else:
            k = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.5, 1.0, k)
            pts = centre + np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
            cv2.fillPoly(canvas, [_fixed(pts / d)], grey, cv2.LINE_AA, _SHIFT)
            cv2.fillPoly(grain_map, [_fixed(pts / q)], grain, 8, _SHIFT)
    canvas = cv2.GaussianBlur(canvas, (0, 0), (0.8 + n / 2000) / d)
    if d > 1:
        canvas = cv2.resize(canvas, (cols, rows), interpolation=cv2.INTER_LINEAR)
    # Blur the coarse map so that texture strength changes smoothly, not in 4 px steps.
    grain_map = cv2.resize(cv2.GaussianBlur(grain_map, (0, 0), 1.5), (cols, rows))

    # Multiplicative illumination: smooth, so built small and upsampled (cubic to 1/4 size,
    # then linear: a direct cubic upsampling by 100x is several times slower).
    illum = _fractal_small(rng, (rows, cols), finest=max(8, n / 16), decay=0.5)
    shading = cv2.resize(
        1 + 1.2 * illum, (-(-cols // q), -(-rows // q)), interpolation=cv2.INTER_CUBIC
    )
    shading = cv2.resize(shading, (cols, rows), interpolation=cv2.INTER_LINEAR)
    img = cv2.multiply(canvas, shading, scale=1 / 255, dtype=cv2.CV_32F)
    # Surface detail from 2 to ~128 px (coarser scales come from objects and shading), its
    # strength modulated per object.
    detail = fractal_field(rng, (rows, cols), finest=2, decay=0.7, octaves=6)
    img += cv2.multiply(detail, grain_map, scale=0.45 / 255, dtype=cv2.CV_32F)
    return _normalise(img)


def text_page(shape: Shape = (1200, 900), seed: int = 0) -> np.ndarray:
    """Sheet-music / document page: white paper (1.0) and dark ink (about 0.0).

    Staff systems (5 lines, note heads with stems, bar lines, ledger lines,
    beams) alternate with lines of small random-letter text. Line spacing and
    thickness scale with the page, so it works from 200x200 up to 3400x2400.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the output.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    ndarray of float32, shape ``shape``
        Values in ``[0, 1]``, antialiased edges.
    """
    rows, cols = check_shape(shape)
    rng = np.random.default_rng(seed)
    page = np.full((rows, cols), 255, np.uint8)
    ink = 0

    # Staff spacing: ~22 px on an A4 page at 300 dpi, never below 4 px.
    sp = max(4.0, math.sqrt(rows * cols) / 130)
    lw = int(np.clip(round(sp / 7), 1, 3))
    font = cv2.FONT_HERSHEY_SIMPLEX
    letters = np.array(list(string.ascii_letters + string.digits))

    def text_line(y: float, x0: float, x1: float, height: float) -> None:
        scale = height / 22.0  # Hershey simplex cap height is ~22 px at scale 1
        thick = max(1, int(round(scale * 1.6)))
        x = x0
        while True:
            word = "".join(rng.choice(letters, int(rng.integers(1, 9))))
            (w, _), _ = cv2.getTextSize(word, font, scale, thick)
            if x + w > x1:
                break
            cv2.putText(page, word, (int(x), int(y)), font, scale, ink, thick, cv2.LINE_AA)
            x += w + height * rng.uniform(0.5, 1.0)

    def staff(y0: float, x0: float, x1: float) -> None:
        ys = [int(round(y0 + i * sp)) for i in range(5)]
        for y in ys:
            cv2.line(page, (int(x0), y), (int(x1), y), ink, lw, cv2.LINE_AA)
        # Clef-like glyph at the start of the staff.
        cv2.putText(
            page,
            str(rng.choice(letters)),
            (int(x0 + 0.3 * sp), int(y0 + 3.5 * sp)),
            font,
            4.5 * sp / 22,
            ink,
            max(1, lw + 1),
            cv2.LINE_AA,
        )
        # Bar lines split the staff into measures of random width.
        n_bars = int(rng.integers(2, 6))
        inner = np.sort(rng.uniform(x0 + 3 * sp, x1, n_bars - 1))
        bars = [x0 + 3 * sp, *inner.tolist(), x1]
        for xb in bars[1:]:
            cv2.line(page, (int(xb), ys[0]), (int(xb), ys[4]), ink, lw, cv2.LINE_AA)
        head = (max(1, int(round(0.62 * sp))), max(1, int(round(0.42 * sp))))
        prev = None
        for left, right in zip(bars[:-1], bars[1:], strict=True):
            x = left + sp * rng.uniform(1.0, 2.0)
            while x < right - 1.5 * sp:
                pitch = int(rng.integers(-4, 13))  # 0 = bottom line, steps of half a space
                y = y0 + 4 * sp - pitch * sp / 2
                hollow = rng.random() < 0.2
                cv2.ellipse(
                    page,
                    (int(round(x)), int(round(y))),
                    head,
                    -20,
                    0,
                    360,
                    ink,
                    lw if hollow else -1,
                    cv2.LINE_AA,
                )
                for p in range(-2, pitch - 1, -2) if pitch < -1 else range(10, pitch + 1, 2):
                    yl = int(round(y0 + 4 * sp - p * sp / 2))
                    cv2.line(page, (int(x - sp), yl), (int(x + sp), yl), ink, lw, cv2.LINE_AA)
                up = pitch < 4
                xs = x + (0.58 * sp if up else -0.58 * sp)
                y_end = y - 3.3 * sp if up else y + 3.3 * sp
                cv2.line(page, (int(xs), int(y)), (int(xs), int(y_end)), ink, lw, cv2.LINE_AA)
                # Beam to the previous stem (eighth notes) now and then.
                if prev is not None and prev[2] == up and rng.random() < 0.35:
                    beam = max(lw + 1, int(round(0.45 * sp)))
                    cv2.line(
                        page,
                        (int(prev[0]), int(prev[1])),
                        (int(xs), int(y_end)),
                        ink,
                        beam,
                        cv2.LINE_AA,
                    )
                    prev = None
                else:
                    prev = (xs, y_end, up)
                x += sp * rng.uniform(1.8, 4.0)
            prev = None

    margin_x = 0.06 * cols
    x0, x1 = margin_x, cols - margin_x
    y = max(2 * sp, 0.04 * rows)
    # Title line, bigger letters, roughly centred.
    if rows > 30 * sp:
        width = (x1 - x0) * rng.uniform(0.3, 0.6)
        start = x0 + (x1 - x0 - width) / 2
        text_line(y + 2.2 * sp, start, start + width, 2.2 * sp)
        y += 4.5 * sp
    wide_enough = x1 - x0 > 8 * sp  # for a staff with a clef and a measure
    while True:
        if wide_enough and rng.random() < 0.75:
            # Notes reach 2.5 spaces above and below the 4-space staff.
            if y + 9.5 * sp > rows:
                break
            staff(y + 2.5 * sp, x0, x1)
            y += 9.5 * sp
            if rng.random() < 0.5 and y + 1.5 * sp < rows:  # lyrics under the staff
                text_line(y + 0.8 * sp, x0 + 2 * sp, x1, 1.0 * sp)
                y += 1.5 * sp
        else:
            n_lines = int(rng.integers(1, 4))
            if y + (n_lines + 1) * 2 * sp > rows:
                break
            for _ in range(n_lines):
                y += 2.0 * sp
                text_line(y, x0, x1 - rng.uniform(0, 0.3) * (x1 - x0), 1.2 * sp)
            y += 1.0 * sp
    return _to_unit(page)


def texture(shape: Shape = (512, 512), seed: int = 0) -> np.ndarray:
    """Repetitive texture: 2-3 oriented gratings with slowly drifting phase.

    Locally periodic (the hard case for ECC: many local optima one period apart)
    but not periodic over the whole image, thanks to smooth phase noise.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the output.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    ndarray of float32, shape ``shape``
        Values in ``[0, 1]``.
    """
    rows, cols = check_shape(shape)
    rng = np.random.default_rng(seed)
    n_gratings = int(rng.integers(2, 4))
    theta0 = rng.uniform(0, np.pi)
    base_period = max(8.0, max(rows, cols) / 100)
    periods = base_period * rng.uniform(0.8, 1.6, n_gratings)
    # Band-limited content: synthesise with >= 8 samples per period, then upsample once.
    f = max(1, int(periods.min() // 8))
    small = (int(math.ceil(rows / f)), int(math.ceil(cols / f)))
    xs = np.arange(small[1], dtype=np.float32) * np.float32(f)
    ys = np.arange(small[0], dtype=np.float32) * np.float32(f)
    img = np.zeros(small, np.float32)
    for i, period in enumerate(periods):
        theta = theta0 + i * np.pi / n_gratings + rng.uniform(-0.2, 0.2)
        k = np.float32(2 * np.pi / period)
        arg = np.add.outer(
            ys * (k * np.float32(np.sin(theta))), xs * (k * np.float32(np.cos(theta)))
        )
        # Phase drift of a few radians over tens of periods: locally periodic only.
        arg += np.float32(6.0) * fractal_field(rng, small, finest=6 * period / f, decay=0.5)
        arg += np.float32(rng.uniform(0, 2 * np.pi))
        img += np.float32(rng.uniform(0.6, 1.0)) * np.cos(arg, out=arg)
    if f > 1:
        img = cv2.resize(img, (cols, rows), interpolation=cv2.INTER_CUBIC)
    img = _add_noise(img, rng, 0.5 * n_gratings)
    return _normalise(img, 0.1, 99.9)


def fluorescence_spots(shape: Shape = (512, 512), seed: int = 0) -> np.ndarray:
    """Sparse fluorescence-like image: Gaussian spots and dim cells on black.

    About 300 spots per 512x512 (scaled with area) with log-normal brightness
    and 0.9-2.7 px sigma, a few dim elongated cells, a faint uneven background
    and low noise.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the output.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    ndarray of float32, shape ``shape``
        Values in ``[0, 1]``, background around 0.04.
    """
    rows, cols = check_shape(shape)
    rng = np.random.default_rng(seed)
    area = rows * cols

    # Smooth parts at quarter resolution, upsampled once: dim elongated cells on a faint,
    # uneven background.
    q = 4
    small = (max(2, rows // q), max(2, cols // q))
    cells = np.zeros(small, np.uint8)
    for _ in range(max(3, round(8 * area / 512**2))):
        centre = (int(rng.uniform(0, small[1])), int(rng.uniform(0, small[0])))
        axes = (int(rng.uniform(12, 40) / q) + 1, int(rng.uniform(5, 14) / q) + 1)
        grey = int(rng.integers(60, 160))
        cv2.ellipse(cells, centre, axes, float(rng.uniform(0, 180)), 0, 360, grey, -1)
    smooth = cv2.GaussianBlur(cells, (0, 0), 1.5).astype(np.float32) * np.float32(0.2 / 255)
    background = fractal_field(rng, small, finest=max(8, max(small) / 8), decay=0.5)
    smooth += np.float32(0.04) + np.float32(0.03) * background
    smooth = cv2.resize(smooth, (cols, rows), interpolation=cv2.INTER_LINEAR)

    # Spots: log-normal brightness, sigma 0.9-2.7 px. Small ones are rendered at full
    # resolution, big ones at half resolution (then upsampled), each with a single blur.
    n_spots = max(30, round(300 * area / 512**2))
    px = rng.uniform(1, cols - 2, n_spots)
    py = rng.uniform(1, rows - 2, n_spots)
    sigma = np.exp(rng.uniform(math.log(0.9), math.log(2.7), n_spots))
    peak = np.minimum(rng.lognormal(math.log(0.25), 0.6, n_spots), 0.9)
    small_spot = sigma < 1.6
    spots = _render_spots(
        (rows, cols), px[small_spot], py[small_spot], sigma[small_spot], peak[small_spot], 0.9
    )
    big = ~small_spot
    half = ((rows + 1) // 2, (cols + 1) // 2)
    # Pixel centres: full-res x maps to (x + 0.5) / 2 - 0.5 at half resolution.
    spots_half = _render_spots(
        half, (px[big] + 0.5) / 2 - 0.5, (py[big] + 0.5) / 2 - 0.5, sigma[big] / 2, peak[big], 0.8
    )
    spots += cv2.resize(spots_half, (cols, rows), interpolation=cv2.INTER_LINEAR)

    img = _add_noise(cv2.add(spots, smooth), rng, 0.04)
    return np.clip(img, 0.0, 1.0, out=img)


def _render_spots(
    shape: Shape, x: np.ndarray, y: np.ndarray, sigma: np.ndarray, peak: np.ndarray, sigma0: float
) -> np.ndarray:
    """Gaussian spots of ``sigma`` in ``[sigma0, 1.7 * sigma0]`` with one blur of ``sigma0``.

    Each spot is splatted as a 3x3 binomial cluster of point masses (spacing ``s``,
    variance ``s**2 / 2`` per axis) so that after the blur its variance is
    ``sigma**2``; up to ``s = 2 * sigma0`` the result stays unimodal and within
    ~7% of a Gaussian. One small kernel for all spots instead of one per size.
    """
    spacing = np.sqrt(2 * np.maximum(sigma**2 - sigma0**2, 0.0))
    mass = 2 * np.pi * sigma**2 * peak  # a 2D Gaussian of peak a integrates to 2*pi*sigma^2*a
    offsets = np.array([-1.0, 0.0, 1.0])
    binomial = np.array([0.25, 0.5, 0.25])
    # All 9 cluster points of all spots at once: arrays of shape (9, n_spots).
    oy, ox = (o.reshape(9, 1) for o in np.meshgrid(offsets, offsets, indexing="ij"))
    w = np.outer(binomial, binomial).reshape(9, 1)
    img = np.zeros(shape, np.float32)
    _splat(img, (x + ox * spacing).ravel(), (y + oy * spacing).ravel(), (w * mass).ravel())
    return _blur(img, sigma0)


def _splat(img: np.ndarray, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
    """Add point masses at subpixel positions with bilinear weights (in place).

    Masses falling outside ``img`` are dropped. ``np.add.at`` sums duplicates; on a
    flat index it is ~10x faster than ``np.unique`` + ``bincount`` or a 2D index.
    """
    rows, cols = img.shape
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    fx, fy = x - x0, y - y0
    xx = np.concatenate([x0, x0 + 1, x0, x0 + 1])
    yy = np.concatenate([y0, y0, y0 + 1, y0 + 1])
    ww = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    ww *= np.tile(weight, 4)
    inside = (yy >= 0) & (yy < rows) & (xx >= 0) & (xx < cols)
    flat = img.reshape(-1)  # a view: img is C-contiguous
    np.add.at(flat, yy[inside] * cols + xx[inside], ww[inside].astype(np.float32))


KINDS: dict[str, Callable[..., np.ndarray]] = {
    "natural": natural_image,
    "text": text_page,
    "texture": texture,
    "spots": fluorescence_spots,
}
