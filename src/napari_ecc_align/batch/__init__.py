"""Batch alignment of whole datasets on Dask: pairs of files in, files and a CSV out.

:func:`batch_align` is the entry point (also ``napari-ecc-align batch``);
:class:`BatchReport` is what it returns. The modules, in the order a batch runs:

- :mod:`.pairs` — which files pair up (two folders, or a pairs CSV), one :class:`PairJob` each;
- :mod:`.run` — :func:`batch_align`: checks, resume, the output-folder lock, the CSV;
- :mod:`.cluster` — the Dask client, submitting pairs and collecting results;
- :mod:`.worker` — one pair on one worker (:func:`align_pair`), never raising;
- :mod:`.report` — :class:`BatchReport` and ``alignment.csv``.
"""

from .pairs import CSV_COLUMNS, CSV_NAME, PairJob, find_pairs
from .report import BatchReport, write_csv
from .run import batch_align, remove_temporary_files
from .worker import align_pair, save_image

__all__ = [
    "CSV_COLUMNS",
    "CSV_NAME",
    "BatchReport",
    "PairJob",
    "align_pair",
    "batch_align",
    "find_pairs",
    "remove_temporary_files",
    "save_image",
    "write_csv",
]
