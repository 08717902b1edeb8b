"""Charts drawn on the server as SVG: no charting library, no script, nothing from a CDN."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup


def _points(values: Sequence[float | None], width: float, height: float, pad: float) -> list[str]:
    known = [v for v in values if v is not None]
    if not known:
        return []
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    step = (width - 2 * pad) / max(1, len(values) - 1)
    return [
        f"{pad + i * step:.1f},{height - pad - (v - low) / span * (height - 2 * pad):.1f}"
        for i, v in enumerate(values)
        if v is not None
    ]


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 24) -> Markup:
    """A one-line trend; an empty frame (and no points) when there is no data yet."""
    points = _points(values, width, height, 2)
    line = f'<polyline class="spark-line" fill="none" points="{" ".join(points)}"/>' if len(points) > 1 else ""
    dot = ""
    if points:
        x, y = points[-1].split(",")
        dot = f'<circle class="spark-dot" cx="{x}" cy="{y}" r="2"/>'
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="trend of the last hour" data-points="{len(points)}">{line}{dot}</svg>'
    )


def chart(
    series: dict[str, Sequence[float | None]],
    unit: str,
    width: int = 560,
    height: int = 140,
    empty: str = "no data yet",
) -> Markup:
    """Several series on one frame, with the range printed (the axis a reader needs); without
    data, `empty` says why (a GPU chart of a host without a GPU says "no GPU", not "no data yet"
    forever)."""
    known = [v for values in series.values() for v in values if v is not None]
    body = []
    for index, (name, values) in enumerate(series.items()):
        points = _points(values, width, height - 16, 6)
        if len(points) > 1:
            body.append(f'<polyline class="series s{index}" fill="none" points="{" ".join(points)}"/>')
        body.append(
            f'<text class="legend s{index}" x="{8 + index * 110}" y="{height - 2}">{Markup.escape(name)}</text>'
        )
    scale = f"{min(known):.3g} to {max(known):.3g} {unit}" if known else empty
    return Markup(
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<rect class="frame" x="0.5" y="0.5" width="{width - 1}" height="{height - 17}"/>'
        f'<text class="scale" x="{width - 6}" y="12" text-anchor="end">{Markup.escape(scale)}</text>'
        f"{''.join(body)}</svg>"
    )
