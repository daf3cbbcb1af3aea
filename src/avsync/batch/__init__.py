"""Corpus-scale measurement: ``avsync batch`` (local process pool or Ray) and ``avsync report``.

inputs (files, folders, globs, manifests) -> engine (local | ray) -> results JSONL (resumable)
-> optional ``--keep`` manifest and ``--fix-dir`` copies; report renders a run as one HTML page.
Ray is imported only by the ray engine (pip extra ``avsync[ray]``).
"""

from avsync.batch.keep import KeepFilter
from avsync.batch.runner import BatchSummary, run_batch
from avsync.batch.store import ResultStore, read_results

__all__ = ["BatchSummary", "KeepFilter", "ResultStore", "read_results", "run_batch"]
