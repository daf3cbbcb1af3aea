"""``avsync report``: one self-contained static HTML page to review a batch run.

Everything is inline (CSS, a few lines of JavaScript, SVG charts): no server, no CDN. The table
(sortable by clicking a header, filterable by text and by status) lists one row per input, the
worst first (errors, then unreliable by confidence, then reliable results off by more than a
frame, by size); histograms show offsets and confidences; per clip, the score curve and the
offset over time. Missing fields are shown empty, so rows of any avsync version render.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from avsync.batch.store import latest_per_path, read_results
from avsync.batch.svg import histogram, line_chart
from avsync.errors import AvsyncError

IN_SYNC_FRAMES = 1
"""|offset_frames| above this is 'off' (the same tolerance as detect's in_sync)."""
RELIABLE_CONFIDENCE = 3.0
"""Where the confidence histogram draws its line (detect's reliability threshold)."""

COLUMNS = (("path", "path"), ("offset_ms", "offset ms"), ("offset_frames", "offset frames"),
           ("confidence", "confidence"), ("reliable", "reliable"), ("duration_s", "duration s"),
           ("tracks", "tracks"), ("error", "error"))

_TEXT = ("path", "error", "reliable")
_ROW_CLASS = {"error": "err", "unreliable": "unrel", "reliable": "ok"}
_CSS = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}td.p,td.e,th.p{text-align:left}
td.p{overflow-wrap:anywhere;max-width:40em}td.e{min-width:16em;max-width:32em}
th{cursor:pointer;background:#f3f3f3;position:sticky;top:0}tr.err td{color:#b00}tr.unrel td{color:#a60}
.ax{stroke:#444}.c{fill:none;stroke:#1565c0;stroke-width:1.5}.d{fill:#1565c0}.b{fill:#90a4ae}
.mk{stroke:#c62828;stroke-dasharray:4 3}.t{font-size:12px;font-weight:600}.l{font-size:10px;fill:#555}
.card{display:inline-block;vertical-align:top;margin:0 1em 1em 0;border:1px solid #ddd;padding:6px}
.card h3{font-size:13px;margin:0 0 4px;max-width:730px;overflow-wrap:anywhere}#bar{margin:1em 0}"""

_ERR_JS = ("window.onerror=function(){var b=document.body;"
           "b.dataset.jsErrors=String((+b.dataset.jsErrors||0)+1);};")

_JS = """(function(){
var tb=document.getElementById('rows'),rows=Array.prototype.slice.call(tb.rows);
var q=document.getElementById('q'),st=document.getElementById('st'),n=document.getElementById('n');
function apply(){var t=q.value.toLowerCase(),s=st.value,k=0;
rows.forEach(function(r){var ok=(!t||r.textContent.toLowerCase().indexOf(t)>=0)&&
(s==='all'||r.dataset.status.split(' ').indexOf(s)>=0);r.style.display=ok?'':'none';if(ok)k++;});
n.textContent=k+' of '+rows.length+' shown';}
q.addEventListener('input',apply);st.addEventListener('change',apply);
Array.prototype.forEach.call(document.querySelectorAll('#tbl th'),function(th,i){
th.addEventListener('click',function(){var d=th.dataset.dir==='asc'?'desc':'asc';th.dataset.dir=d;
var num=th.dataset.num==='1';rows.sort(function(a,b){var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;
if(num){x=x===''?Infinity:+x;y=y===''?Infinity:+y;}var c=x<y?-1:x>y?1:0;return d==='asc'?c:-c;});
rows.forEach(function(r){tb.appendChild(r);});});});
apply();document.body.dataset.ready='1';})();"""


def _num(row: dict, key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _off(row: dict) -> bool:
    f = _num(row, "offset_frames")
    return f is not None and abs(f) > IN_SYNC_FRAMES


def priority(row: dict) -> tuple:
    """Sort key, worst first: errors; unreliable (least confident first); reliable but off by
    more than a frame (largest offset first); the rest (least confident first)."""
    conf = _num(row, "confidence") or 0.0
    if "error" in row:
        return (0, 0.0)
    if not row.get("reliable"):
        return (1, conf)
    if _off(row):
        return (2, -abs(_num(row, "offset_ms") or 0.0))
    return (3, conf)


def _status(row: dict) -> str:
    if "error" in row:
        return "error"
    tags = ["reliable" if row.get("reliable") else "unreliable"]
    if _off(row):
        tags.append("off")
    return " ".join(tags)


def _cell(key: str, row: dict, anchor: str | None) -> str:
    v = row.get(key)
    if key == "tracks":
        v = len(v) if isinstance(v, list) else None
    if v is None:
        return '<td data-v=""></td>'
    if isinstance(v, bool):
        shown = sort = "yes" if v else "no"
    elif isinstance(v, int | float):
        shown, sort = f"{v:g}", f"{float(v):.6g}"
    else:
        shown = sort = str(v)
    cls = {"path": ' class="p"', "error": ' class="e"'}.get(key, "")
    text = escape(shown)
    if key == "path" and anchor:
        text = f'<a href="#{anchor}">{text}</a>'
    return f'<td{cls} data-v="{escape(sort)}">{text}</td>'


def _clip_card(row: dict, anchor: str) -> str:
    curve = row.get("curve") or {}
    xs, ys = curve.get("offset_frames") or [], curve.get("score") or []
    plots = [line_chart([float(x) for x in xs], [float(y) for y in ys], "score per offset",
                        "offset (frames)", "score", mark_x=_num(row, "offset_frames"))]
    pts = [(0.5 * (d["start_s"] + d["end_s"]), d["offset_ms"]) for t in row.get("tracks") or []
           if t.get("speaking") for d in t.get("drift") or [] if "start_s" in d and "offset_ms" in d]
    if pts:
        ys_ms = [p[1] for p in pts]
        plots.append(line_chart([p[0] for p in pts], ys_ms, "offset over time", "time (s)",
                                "offset (ms)", dots=True, y_range=(min(ys_ms + [0.0]), max(ys_ms + [0.0]))))
    head = (f"{escape(str(row.get('path')))}: {row.get('offset_ms', '?')} ms, "
            f"confidence {row.get('confidence', '?')}")
    return f'<div class="card" id="{anchor}"><h3>{head}</h3>{"".join(p for p in plots if p)}</div>'


def render_report(rows: list[dict], title: str = "avsync batch report", max_plots: int = 500) -> str:
    """The HTML page for result rows (the latest row per path is shown)."""
    rows = sorted(latest_per_path(rows), key=priority)
    ok = [r for r in rows if "error" not in r]
    n_err = len(rows) - len(ok)
    n_rel = sum(bool(r.get("reliable")) for r in ok)
    plotted = {id(r): f"clip{i}" for i, r in enumerate([r for r in ok if r.get("curve")][:max_plots])}
    head = "".join(f'<th data-num="{int(k not in _TEXT)}"{" class=p" if k in _TEXT else ""}>{escape(label)}'
                   "</th>" for k, label in COLUMNS)
    body = "".join(f'<tr class="{_ROW_CLASS[_status(r).split()[0]]}" data-status="{_status(r)}">'
                   + "".join(_cell(k, r, plotted.get(id(r))) for k, _ in COLUMNS) + "</tr>" for r in rows)
    frames = [_num(r, "offset_frames") for r in ok]
    frames = [f for f in frames if f is not None]
    lim = max([3.0] + [abs(f) for f in frames])
    offs = histogram(frames, [x - 0.5 for x in range(-int(lim), int(lim) + 2)],
                     "offset of each input", "offset (frames)", mark_x=0.0) if frames else ""
    confs = [c for c in (_num(r, "confidence") for r in ok) if c is not None]
    top = max([RELIABLE_CONFIDENCE * 2] + confs)
    conf_h = histogram(confs, [top * i / 20 for i in range(21)], "confidence of each input",
                       "confidence", mark_x=RELIABLE_CONFIDENCE) if confs else ""
    cards = "".join(_clip_card(r, plotted[id(r)]) for r in ok if id(r) in plotted)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_CSS}</style><script>{_ERR_JS}</script></head>
<body data-rows="{len(rows)}"><h1>{escape(title)}</h1>
<p>{len(rows)} inputs: {len(ok)} measured ({n_rel} reliable, {len(ok) - n_rel} low confidence),
{n_err} failed.
Offset &gt; 0: the audio is late. Worst first; click a header to sort, a path for its plots.</p>
<div>{offs}{conf_h}</div>
<div id="bar"><input id="q" placeholder="filter (path, error...)" size="40">
<select id="st"><option value="all">all</option><option value="error">errors</option>
<option value="unreliable">low confidence</option><option value="reliable">reliable</option>
<option value="off">off by more than {IN_SYNC_FRAMES} frame</option></select> <span id="n"></span></div>
<table id="tbl"><thead><tr>{head}</tr></thead><tbody id="rows">{body}</tbody></table>
<h2>Per clip ({len(plotted)} of {len(ok)}, worst first)</h2>{cards}
<script>{_JS}</script></body></html>
"""


def write_report(results: str | Path, out: str | Path, overwrite: bool = False,
                 max_plots: int = 500) -> tuple[Path, int]:
    """Render ``results`` (JSONL of ``avsync batch``) to ``out`` atomically; (path, rows)."""
    from avsync.io import atomic_output

    rows = read_results(results)
    if not rows:
        raise AvsyncError(f"{results}: no result lines")
    html = render_report(rows, title=f"avsync batch report: {Path(results).name}", max_plots=max_plots)
    with atomic_output(out, overwrite=overwrite, protect=[results]) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return Path(out), len(latest_per_path(rows))
