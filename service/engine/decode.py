"""Image bytes to an RGB array, refusing what would hurt the service before decoding it.

Pillow reads the header lazily, so an image that declares 60000 x 60000 pixels is refused
from its first bytes, before a single row is decompressed; and the pixels all the images of
one request declare are summed from their headers (`check_pixel_budget`) before the first of
them is decoded, since a small body of many well-compressed large images costs gigabytes.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facefleet.errors import ImageError, ImageTooLargeError, RequestTooLargeError, UnsupportedImageError

ACCEPTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "MPO": "JPEG"}
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow's modes for 16-bit greyscale PNGs ("I" in older releases): scaled to 8 bits, not clipped
WIDE_GREY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# Modes Pillow's convert("RGB") maps faithfully (palettes through their colours); anything else is
# refused by name rather than guessed at.
TO_RGB = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})

# facefleet enforces its own pixel limit (configurable); Pillow's bomb check would be a second,
# different one with a less helpful message.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode JPEG (EXIF orientation applied), PNG, WebP or BMP bytes to an H x W x 3 uint8 RGB array."""
    if not data:
        raise ImageError("empty input: the image has 0 bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not a recognised image: expected JPEG, PNG, WebP or BMP data") from None
    except Exception as exc:  # Pillow raises assorted errors on malformed headers
        raise ImageError(f"unreadable image header: {exc}") from None
    with image:
        kind = ACCEPTED_FORMATS.get(image.format or "")
        if kind is None:
            raise ImageError(f"unsupported image format {image.format}: expected JPEG, PNG, WebP or BMP")
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageError(f"invalid image size {width}x{height}")
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"image of {width}x{height} = {width * height / 1e6:.1f} megapixels exceeds the limit of "
                f"{max_pixels / 1e6:g} megapixels"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                return to_rgb(image, kind)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"truncated or corrupt {kind} data: {exc}") from None


def to_rgb(image: Image.Image, kind: str) -> np.ndarray:
    """A loaded image as H x W x 3 uint8 RGB: 16-bit grey scaled (convert("RGB") would clip it to
    white), palettes through their colours, and a mode with no faithful RGB refused by name."""
    if image.mode in WIDE_GREY:
        grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode not in TO_RGB:
        raise UnsupportedImageError(f"{kind} image in pixel mode {image.mode} cannot be converted to RGB")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return np.asarray(rgb)


def declared_pixels(data: bytes) -> int:
    """Width x height as the image's header declares it (Pillow opens lazily: no pixel is decoded);
    0 for bytes that are no image, which then fail alone when they are decoded."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # unreadable headers are decode_image's to report, per image
        return 0
    return max(int(width), 0) * max(int(height), 0)


def counted_pixels(item: bytes | np.ndarray | ImageError, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """What one input counts against the budget: an array its pixels, bytes what their header
    declares, nothing for an image over `max_pixels` (decode_image refuses it alone, from the same
    header) or for a reference that could not be read."""
    if isinstance(item, np.ndarray):
        return int(item.shape[0]) * int(item.shape[1]) if item.ndim >= 2 else 0
    if isinstance(item, bytes | bytearray):
        pixels = declared_pixels(bytes(item))
        return pixels if pixels <= max_pixels else 0
    return 0


def check_pixel_budget(
    inputs: Sequence[bytes | np.ndarray | ImageError],
    budget: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    field: str = "images",
) -> None:
    """Refuse the whole request when its images declare more pixels in all than `budget`: nothing
    has been decoded yet when this raises (RequestTooLargeError, HTTP 413)."""
    total = sum(counted_pixels(item, max_pixels) for item in inputs)
    if total > budget:
        count = sum(not isinstance(item, ImageError) for item in inputs)
        raise RequestTooLargeError(
            f"{field}: the {count} images of this request declare {total:,} pixels "
            f"({total / 1e6:.1f} megapixels) in all; the limit per request is {budget:,} "
            f"({budget / 1e6:g} megapixels, FACEFLEET_MAX_REQUEST_PIXELS)"
        )


def budget_groups(
    inputs: Sequence[bytes | np.ndarray | ImageError], budget: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[list[int]]:
    """Indices of `inputs` in consecutive groups that each fit `budget`: how a command line run over
    a folder of photos calls the engine (one image over the budget alone makes a group of one, which
    the engine then refuses)."""
    groups: list[list[int]] = []
    total = budget + 1  # the first input opens a group
    for i, item in enumerate(inputs):
        pixels = counted_pixels(item, max_pixels)
        if total + pixels > budget:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += pixels
    return groups
