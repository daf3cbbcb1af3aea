"""The order in which a batch hands its inputs to the workers: longest first.

With W workers the run ends when the last worker finishes; started last, a long input keeps one
worker busy while the others idle (the "tail"). Handing the inputs out longest first (the LPT
rule) leaves the shortest ones for the end, so the tail is at most one short input.

The cost of an input is about proportional to its duration (face analysis per frame dominates).
Where the duration comes from, cheapest first:

1. a manifest's ``duration_s`` column (``BatchInput.duration_s``, also written to ``--kept``);
2. the container header, read in the driver with PyAV (2-5 ms per file, no decoding), only for
   regular files and only when at most :data:`PROBE_MAX_INPUTS` inputs need it: probing is done
   while the workers start, and in a larger batch the tail is a negligible part of the run;
3. otherwise the file size, scaled by the batch's median bytes per second where some durations
   are known (a poor proxy across codecs, a fair one within one corpus).

Results still arrive in completion order and carry their ``input_id``, so the order changes
nothing for ``--resume`` or for the results themselves.
"""

from __future__ import annotations

import os
import stat
import statistics

from avsync.batch.inputs import BatchInput

PROBE_MAX_INPUTS: int = 2000
"""Header probes in the driver at most (2-5 ms of CPU each, measured: 4-10 s, overlapping the
workers' start-up); above that the order falls back to manifest durations and file sizes."""


def probe_duration_s(path: str) -> float | None:
    """The container's duration from its header (no decoding), or None: not a regular file,
    unreadable, or no duration in the header. Never raises."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a FIFO or a device would block the driver
        import av

        with av.open(path, metadata_errors="ignore") as container:
            duration = container.duration  # microseconds (AV_TIME_BASE), None when unknown
    except Exception:  # noqa: BLE001  (any failure: no hint; the worker reports the real error)
        return None
    if duration is None or duration <= 0:
        return None
    return duration / 1e6


def with_durations(items: list[BatchInput], probe: bool = True) -> list[BatchInput]:
    """``items`` with ``duration_s`` filled in from the header where unknown (when ``probe`` and
    at most :data:`PROBE_MAX_INPUTS` of them need it)."""
    unknown = [i for i in items if i.duration_s is None and i.size_bytes >= 0]
    if not probe or not unknown or len(unknown) > PROBE_MAX_INPUTS:
        return list(items)
    from dataclasses import replace

    return [replace(i, duration_s=probe_duration_s(i.path)) if i.duration_s is None and i.size_bytes >= 0
            else i for i in items]


def cost_keys(items: list[BatchInput]) -> list[float]:
    """Estimated cost of each input in seconds of video (see the module docstring); a missing
    file (size -1) costs nothing (it fails at once)."""
    rates = [i.size_bytes / i.duration_s for i in items
             if i.duration_s is not None and i.duration_s > 0 and i.size_bytes > 0]
    bytes_per_s = statistics.median(rates) if rates else 1.0
    keys = []
    for i in items:
        if i.duration_s is not None:
            keys.append(float(i.duration_s))
        else:
            keys.append(max(i.size_bytes, 0) / bytes_per_s)
    return keys


def longest_first(items: list[BatchInput], probe: bool = True) -> list[BatchInput]:
    """The order to run ``items`` in: the longest (estimated) first; ties keep the given order."""
    filled = with_durations(items, probe)
    keys = cost_keys(filled)
    order = sorted(range(len(filled)), key=lambda k: -keys[k])  # sorted() is stable
    return [filled[k] for k in order]
