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

# Pillow's format name -> ours. GIF is its first frame and TIFF its first page (what Pillow opens, and
# what InsightFace-REST decodes); TIFF with any compression Pillow reads (LZW, deflate, PackBits, JPEG).
ACCEPTED_FORMATS = {
    "JPEG": "JPEG",
    "PNG": "PNG",
    "WEBP": "WebP",
    "BMP": "BMP",
    "MPO": "JPEG",
    "GIF": "GIF",
    "TIFF": "TIFF",
}
ACCEPTED_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"
# The file names of those formats: what a folder of photos (gallery build, calibration) is read for
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow's modes for 16-bit greyscale PNGs and TIFFs ("I" in older releases, and for signed 16-bit
# TIFFs): scaled to 8 bits, not clipped. (16-bit RGB TIFFs Pillow itself opens at 8 bits per channel.)
WIDE_GREY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# Modes Pillow's convert("RGB") maps faithfully (palettes through their colours); anything else is
# refused by name rather than guessed at.
TO_RGB = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
# TIFF's byte-order marks. Writers put a TIFF's image directory (its header proper) at the end of the
# file, so a TIFF cut short is not recognised at all: these name it.
TIFF_MARKS = (b"II*\x00", b"MM\x00*")
# The white points a float greyscale image (TIFF, mode F) is read against: the smallest its
# brightest sample fits (1.0: the float convention; 255 and 65535: integer samples stored as floats).
FLOAT_WHITES = (1.0, 255.0, 65535.0)

# facefleet enforces its own pixel limit (configurable); Pillow's bomb check would be a second,
# different one with a less helpful message.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode JPEG (EXIF orientation applied), PNG, WebP, BMP, GIF (first frame) or TIFF (first page)
    bytes to an H x W x 3 uint8 RGB array."""
    if not data:
        raise ImageError("empty input: the image has 0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns of corrupt EXIF and such: the answer says what counts
        with _open(data) as image:
            kind = _accepted(image, max_pixels)
            try:
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                return to_rgb(image, kind)
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageError(f"truncated or corrupt {kind} data: {exc}") from None


def _open(data: bytes) -> Image.Image:
    """The image with its header read, and not one pixel decoded yet."""
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if data.startswith(TIFF_MARKS):
            raise ImageError("truncated or corrupt TIFF data: its image directory cannot be read") from None
        raise ImageError(f"not a recognised image: expected {ACCEPTED_NAMES} data") from None
    except Exception as exc:  # Pillow raises assorted errors on malformed headers
        raise ImageError(f"unreadable image header: {exc}") from None


def _accepted(image: Image.Image, max_pixels: int) -> str:
    """The image's format by our name, once its header shows a format and a size we decode."""
    kind = ACCEPTED_FORMATS.get(image.format or "")
    if kind is None:
        raise ImageError(f"unsupported image format {image.format}: expected {ACCEPTED_NAMES}")
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image of {width}x{height} = {width * height / 1e6:.1f} megapixels exceeds the limit of "
            f"{max_pixels / 1e6:g} megapixels"
        )
    return kind


def to_rgb(image: Image.Image, kind: str) -> np.ndarray:
    """A loaded image as H x W x 3 uint8 RGB: 16-bit and float grey scaled (convert("RGB") would clip
    them to white or black), palettes through their colours (a GIF's transparent entry shows its
    colour), and a mode with no faithful RGB refused by name."""
    if image.mode in WIDE_GREY:
        grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        return np.repeat(float_grey(np.asarray(image, dtype=np.float32))[:, :, None], 3, axis=2)
    if image.mode not in TO_RGB:
        raise UnsupportedImageError(f"{kind} image in pixel mode {image.mode} cannot be converted to RGB")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return np.asarray(rgb)


def float_grey(values: np.ndarray) -> np.ndarray:
    """Float samples to 8 bits against the smallest white point of FLOAT_WHITES their brightest fits
    (or that brightest itself): a 0..1 image is not crushed to black, a 0..65535 one not clipped to
    white. Negative, NaN and infinite samples are black."""
    finite: np.ndarray = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(finite.max(initial=0.0))
    white = next((w for w in FLOAT_WHITES if top <= w), top)
    scaled: np.ndarray = finite * np.float32(255.0 / white)
    return scaled.clip(0, 255).astype(np.uint8)


def declared_pixels(data: bytes) -> int:
    """Width x height as the image's header declares it (Pillow opens lazily: no pixel is decoded);
    0 for bytes that are no image, which then fail alone when they are decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decode_image reports what is wrong with it
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
