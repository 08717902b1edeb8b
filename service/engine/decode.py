"""Image bytes to an RGB array, refusing what would hurt the service before decoding it.

Pillow reads the header lazily, so an image that declares 60000 x 60000 pixels is refused
from its first bytes, before a single row is decompressed.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facefleet.errors import ImageError, ImageTooLargeError

ACCEPTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "MPO": "JPEG"}
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow's modes for 16-bit greyscale PNGs ("I" in older releases): scaled to 8 bits, not clipped
WIDE_GREY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})

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
                if image.mode in WIDE_GREY:  # 16-bit greyscale: convert("RGB") would clip it to white
                    grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
                    return np.repeat(grey[:, :, None], 3, axis=2)
                rgb = image if image.mode == "RGB" else image.convert("RGB")
                return np.asarray(rgb)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"truncated or corrupt {kind} data: {exc}") from None
