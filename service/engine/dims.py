"""Comparing a model's declared or answered output shapes with what a decoder reads: a dimension that is
not a number (symbolic, decided at run time) fits any value. Shared by the start-up checks
(facefleet.engine.roles), `facefleet models verify` and each detector family's own layout check."""

from __future__ import annotations

from typing import Any

Shape = tuple[Any, ...]


def fits(dim: Any, want: int) -> bool:
    """A dimension matches when it is that number, or not a number (symbolic, decided at run time)."""
    return not isinstance(dim, int) or dim == want


def shape_text(shape: Shape) -> str:
    """[1, 3, ?, ?]: unknown dimensions as `?`, as the refusals print them."""
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def cells(hw: tuple[int, int] | None, stride: int) -> tuple[int | None, int | None]:
    """Rows and columns of a stride's feature map for an input of hw (ceil, as a padded conv gives);
    (None, None) when the input size is not known (a file declared with a dynamic H x W)."""
    if hw is None:
        return None, None
    return -(-hw[0] // stride), -(-hw[1] // stride)


def map_problem(name: str, shape: Shape, channels: int, hw: tuple[int, int] | None, stride: int) -> str:
    """Why an NCHW output map is not [N, channels, H/stride, W/stride]; "" when it is."""
    rows, cols = cells(hw, stride)
    if len(shape) != 4:
        return f"output {name} is {shape_text(shape)}, not an [N, C, H, W] map"
    wanted = (channels, rows, cols)
    if any(w is not None and not fits(d, w) for d, w in zip(shape[1:], wanted, strict=True)):
        rows_text = "H" if rows is None else str(rows)
        cols_text = "W" if cols is None else str(cols)
        return (
            f"output {name} is {shape_text(shape)}, not [N, {channels}, {rows_text}, {cols_text}] for stride {stride}"
        )
    return ""
