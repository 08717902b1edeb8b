"""Image decoding: every format we take, and a clear error for everything we refuse."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facefleet.engine.decode import decode_image, to_rgb
from facefleet.errors import ImageError, ImageTooLargeError, UnsupportedImageError


def _encode(array: np.ndarray, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_header_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, followed by a few bytes of compressed data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture(scope="module")
def photo(astronaut) -> np.ndarray:
    return astronaut


@pytest.mark.parametrize(("fmt", "lossless"), [("PNG", True), ("BMP", True), ("WEBP", False), ("JPEG", False)])
def test_formats_decode_to_rgb(photo, fmt, lossless):
    params = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(_encode(photo, fmt, **params))
    assert decoded.shape == photo.shape and decoded.dtype == np.uint8
    tolerance = 0 if lossless or fmt == "WEBP" else 12
    assert np.abs(decoded.astype(int) - photo.astype(int)).mean() <= tolerance


def test_grayscale_and_alpha_become_three_channels(photo):
    gray = decode_image(_encode(photo[..., 0], "PNG"))
    rgba = decode_image(_encode(np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)]), "PNG"))
    assert gray.shape == rgba.shape == photo.shape


def test_a_16_bit_greyscale_png_keeps_its_tones(photo):
    """A 16-bit greyscale PNG is scaled to 8 bits, not clipped: Pillow's convert("RGB") made it all white."""
    grey = photo[..., 1].astype(np.uint16) * 257  # the same picture at 16 bits (0..65535)
    decoded = decode_image(_encode(grey, "PNG"))
    assert decoded.shape == photo.shape and decoded.dtype == np.uint8
    assert np.array_equal(decoded[..., 0], photo[..., 1]) and np.array_equal(decoded[..., 2], photo[..., 1])


def test_jpeg_exif_orientation_is_applied(photo):
    wide = np.ascontiguousarray(photo[:200, :, :])  # 200 high, 512 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _encode(wide, "JPEG", exif=exif.tobytes())
    upright = decode_image(data)
    assert upright.shape[:2] == (512, 200)


def test_empty_input():
    with pytest.raises(ImageError, match="empty input"):
        decode_image(b"")


def test_text_is_not_an_image():
    with pytest.raises(ImageError, match="not a recognised image"):
        decode_image(b"hello, this is a text file\n" * 10)


def test_truncated_jpeg(photo):
    data = _encode(photo, "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt JPEG"):
        decode_image(data[: len(data) // 2])


def test_truncated_png(photo):
    data = _encode(photo, "PNG")
    with pytest.raises(ImageError, match="truncated or corrupt PNG"):
        decode_image(data[: len(data) // 2])


def test_corrupt_jpeg_body(photo):
    data = bytearray(_encode(photo, "JPEG"))
    data[600:4000] = b"\xff" * 3400
    with pytest.raises(ImageError):
        decode_image(bytes(data))


def test_huge_declared_size_is_refused_from_the_header():
    """The file holds 64 bytes of pixel data: a decode attempt would report truncation, so the
    size error proves the refusal came from the header alone."""
    data = _png_header_declaring(60000, 60000)
    with pytest.raises(ImageTooLargeError, match=r"60000x60000 = 3600.0 megapixels exceeds the limit of 40 megapixels"):
        decode_image(data)


def test_pixel_limit_is_configurable(photo):
    data = _encode(photo, "PNG")
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=512 * 511)
    assert decode_image(data, max_pixels=512 * 512).shape == photo.shape


def test_gif_is_refused_by_name(photo):
    with pytest.raises(ImageError, match="unsupported image format GIF"):
        decode_image(_encode(photo, "GIF"))


def test_a_palette_png_keeps_its_colours(photo):
    """P (and P with a transparent entry): every pixel is its palette colour, not an index shown as grey."""
    paletted = Image.fromarray(photo).quantize(colors=64)
    expected = np.asarray(paletted.convert("RGB"))
    assert np.abs(expected.astype(int) - photo.astype(int)).mean() < 12  # the palette is the photo's colours
    plain = io.BytesIO()
    paletted.save(plain, format="PNG")
    with_alpha = io.BytesIO()
    paletted.save(with_alpha, format="PNG", transparency=0)
    for data in (plain.getvalue(), with_alpha.getvalue()):
        assert Image.open(io.BytesIO(data)).mode == "P"
        assert np.array_equal(decode_image(data), expected)


def test_palette_with_alpha_keeps_its_colours(photo):
    """PA (a palette plus an alpha band, what Pillow makes of some PNGs) converts through its palette."""
    paletted = Image.fromarray(photo).quantize(colors=16)
    with_alpha = paletted.convert("PA")
    assert with_alpha.mode == "PA"
    assert np.array_equal(to_rgb(with_alpha, "PNG"), np.asarray(paletted.convert("RGB")))


def test_a_mode_without_a_faithful_rgb_is_refused_by_format_and_mode():
    """No accepted format makes such an image today; should a Pillow release start to, the client gets
    415 unsupported_image naming the format and mode instead of a 500 or a guess."""
    image = Image.new("La", (8, 8))
    with pytest.raises(UnsupportedImageError, match=r"^PNG image in pixel mode La cannot be converted to RGB$") as info:
        to_rgb(image, "PNG")
    assert info.value.code == "unsupported_image" and info.value.status == 415
