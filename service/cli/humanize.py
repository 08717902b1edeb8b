"""Numbers as an operator reads them: file sizes in the unit that fits, no negative zero.

Kept free of heavy imports (numpy, onnx): the command line imports it before any work starts.
"""

from __future__ import annotations

UNITS = ("kB", "MB", "GB", "TB")


def human_size(size: float) -> str:
    """Bytes in decimal units (the ones `ls -h --si` and download pages use): `512 B`, `8.4 kB`,
    `35.2 MB`, `1.27 GB`. Three significant figures at most, so a small file never reads `0.00 MB`."""
    if size < 1000:
        return f"{int(size)} B"
    value = float(size)
    for unit in UNITS:
        value /= 1000
        if value < 999.5 or unit == UNITS[-1]:
            break
    digits = 2 if value < 9.995 else 1 if value < 99.95 else 0
    return f"{value:.{digits}f} {unit}"


def fixed(value: float, digits: int, *, sign: bool = False) -> str:
    """`value` with `digits` decimals, where a value that rounds to zero prints as 0, never -0
    (`f"{-0.0001:.3f}"` is `-0.000`, which reads as a sign that is not there)."""
    rounded = round(float(value), digits) + 0.0  # -0.0 + 0.0 is +0.0
    return f"{rounded:{'+' if sign else ''}.{digits}f}"
