"""PNG plots people would rather look at: the score curve and the offset over time."""

from __future__ import annotations

from pathlib import Path

from avsync.types import SyncResult


def plot_result(result: SyncResult, out_path: str | Path, overwrite: bool = True) -> Path:
    """Two panels: score per candidate offset, and per-track offset over time (drift)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avsync.io import atomic_output

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax1.plot(result.curve["offset_frames"], result.curve["score"], marker=".")
    ax1.axvline(result.offset_frames, color="tab:red", ls="--",
                label=f"offset {result.offset_frames:+.1f} fr ({result.offset_ms:+.0f} ms)")
    ax1.axvline(0, color="grey", lw=0.8)
    ax1.set_xlabel("candidate offset (frames; > 0 = audio late)")
    ax1.set_ylabel(f"score ({result.method})")
    ax1.set_title(f"confidence {result.confidence:.1f}")
    ax1.legend(loc="best", fontsize=8)
    for tr in result.tracks:
        if tr.drift:
            xs = [0.5 * (p.start_s + p.end_s) for p in tr.drift]
            ax2.plot(xs, [p.offset_frames for p in tr.drift], marker="o",
                     label=f"track {tr.track_id}" + (" (speaking)" if tr.speaking else ""))
        else:
            ax2.plot([tr.start_s, tr.end_s], [tr.offset_frames] * 2, lw=3,
                     label=f"track {tr.track_id} (whole)")
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("offset (frames)")
    ax2.set_title("offset over time")
    ax2.legend(loc="best", fontsize=8)
    fig.suptitle(Path(result.path).name, fontsize=10)
    fig.tight_layout()
    with atomic_output(out_path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(out_path)
