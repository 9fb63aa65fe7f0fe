"""The ECC engine: pairs of 2D arrays in, an :class:`~.alignment.Alignment` out. No Qt, no napari.

In the order data flows through it:

- :mod:`.preprocess` — validation, dtype/channel handling, float32 luminance and masks;
- :mod:`.template` — :class:`~.template.Template`, a reference prepared once;
- :mod:`.initialisation` — the rough pose for ``init="auto"`` (phase correlation,
  Fourier–Mellin, features) on a small pyramid level; :mod:`.spectral` holds the
  first two, on bounded grids;
- :mod:`.ecc` — the pyramid and the coarse-to-fine inverse-compositional ECC loop;
- :mod:`.reference_side` — the reference's half of an ECC level (sample points,
  Jacobians, moment matrices), computed once per level;
- :mod:`.estimate` — :func:`~.estimate.align` / :func:`~.estimate.iter_align`, which
  tie the above together and check the result;
- :mod:`.alignment` — the result type, its matrix convention and serialisation;
- :mod:`.warping` and :mod:`.difference` — applying a result to images
  (:mod:`.exact`: integer fill values and 64-bit integers kept exact).

Users import from :mod:`napari_ecc_align`; the other subpackages import the names
these modules define without a leading underscore.
"""
