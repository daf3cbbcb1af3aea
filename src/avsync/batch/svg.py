"""Tiny inline-SVG charts for the batch report (no plotting library, no external files)."""

from __future__ import annotations

from html import escape

W, H = 360, 180
"""Chart size in CSS pixels."""
PAD_L, PAD_R, PAD_T, PAD_B = 44, 10, 18, 30


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _frame(title: str, xlabel: str, ylabel: str, x0: float, x1: float, y0: float, y1: float) -> list[str]:
    px0, px1, py0, py1 = PAD_L, W - PAD_R, H - PAD_B, PAD_T
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'role="img"><title>{escape(title)}</title>',
            f'<text x="{W / 2}" y="12" text-anchor="middle" class="t">{escape(title)}</text>',
            f'<line x1="{px0}" y1="{py0}" x2="{px1}" y2="{py0}" class="ax"/>',
            f'<line x1="{px0}" y1="{py0}" x2="{px0}" y2="{py1}" class="ax"/>',
            f'<text x="{px0}" y="{py0 + 12}" class="l">{_fmt(x0)}</text>',
            f'<text x="{px1}" y="{py0 + 12}" text-anchor="end" class="l">{_fmt(x1)}</text>',
            f'<text x="{(px0 + px1) / 2}" y="{H - 4}" text-anchor="middle" class="l">{escape(xlabel)}</text>',
            f'<text x="{px0 - 3}" y="{py0}" text-anchor="end" class="l">{_fmt(y0)}</text>',
            f'<text x="{px0 - 3}" y="{py1 + 8}" text-anchor="end" class="l">{_fmt(y1)}</text>',
            f'<text x="10" y="{(py0 + py1) / 2}" class="l" transform="rotate(-90 10 {(py0 + py1) / 2})" '
            f'text-anchor="middle">{escape(ylabel)}</text>']


def _scale(v: float, lo: float, hi: float, p_lo: float, p_hi: float) -> float:
    return p_lo if hi == lo else p_lo + (v - lo) / (hi - lo) * (p_hi - p_lo)


def line_chart(xs: list[float], ys: list[float], title: str, xlabel: str, ylabel: str,
               mark_x: float | None = None, dots: bool = False,
               y_range: tuple[float, float] | None = None) -> str:
    """A polyline (or dots) of ys over xs; a dashed vertical line at ``mark_x``."""
    if not xs or len(xs) != len(ys):
        return ""
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range if y_range is not None else (min(ys), max(ys))
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1
    parts = _frame(title, xlabel, ylabel, x0, x1, y0, y1)
    pts = [(_scale(x, x0, x1, PAD_L, W - PAD_R), _scale(y, y0, y1, H - PAD_B, PAD_T))
           for x, y in zip(xs, ys, strict=True)]
    if mark_x is not None:
        mx = _scale(mark_x, x0, x1, PAD_L, W - PAD_R)
        parts.append(f'<line x1="{mx:.1f}" y1="{PAD_T}" x2="{mx:.1f}" y2="{H - PAD_B}" class="mk"/>')
    if dots:
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="d"/>' for x, y in pts]
    else:
        parts.append('<polyline class="c" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
    return "".join(parts) + "</svg>"


def histogram(values: list[float], edges: list[float], title: str, xlabel: str,
              mark_x: float | None = None) -> str:
    """Bars of how many ``values`` fall in each [edges[i], edges[i+1]) (the last bin is closed;
    values outside are clamped into the end bins)."""
    if len(edges) < 2:
        return ""
    counts = [0] * (len(edges) - 1)
    for v in values:
        i = 0
        while i < len(counts) - 1 and v >= edges[i + 1]:
            i += 1
        counts[i] += 1
    top = max(counts) or 1
    parts = _frame(title, xlabel, "inputs", edges[0], edges[-1], 0, top)
    for i, n in enumerate(counts):
        xa = _scale(edges[i], edges[0], edges[-1], PAD_L, W - PAD_R)
        xb = _scale(edges[i + 1], edges[0], edges[-1], PAD_L, W - PAD_R)
        yt = _scale(n, 0, top, H - PAD_B, PAD_T)
        parts.append(f'<rect x="{xa + 0.5:.1f}" y="{yt:.1f}" width="{max(xb - xa - 1, 0.5):.1f}" '
                     f'height="{H - PAD_B - yt:.1f}" class="b"><title>{_fmt(edges[i])} to '
                     f'{_fmt(edges[i + 1])}: {n}</title></rect>')
    if mark_x is not None:
        mx = _scale(mark_x, edges[0], edges[-1], PAD_L, W - PAD_R)
        parts.append(f'<line x1="{mx:.1f}" y1="{PAD_T}" x2="{mx:.1f}" y2="{H - PAD_B}" class="mk"/>')
    return "".join(parts) + "</svg>"
