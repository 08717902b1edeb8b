"""Image decoding: every format we take, and a clear error for everything we refuse."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facefleet.engine.decode import check_pixel_budget, declared_pixels, decode_image, to_rgb
from facefleet.errors import ImageError, ImageTooLargeError, RequestTooLargeError, UnsupportedImageError


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


def _gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose screen is width x height, holding one 1 x 1 frame: decoding it in full would
    need width x height pixels, so only a refusal from the header is safe."""
    screen = struct.pack("<6sHHBBB", b"GIF89a", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b";"


def _tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian greyscale TIFF whose first page declares width x height, with 64 bytes of pixels."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0)]
    tags += [(277, 3, 1), (278, 4, height), (279, 4, 64)]
    pixels_at = 8 + 2 + 12 * len(tags) + 4

    def entry(tag: int, kind: int, value: int) -> bytes:
        value = pixels_at if tag == 273 else value
        return struct.pack("<HHI", tag, kind, 1) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )

    ifd = struct.pack("<H", len(tags)) + b"".join(entry(*tag) for tag in tags) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64


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


def test_a_format_we_do_not_take_is_refused_by_name(photo):
    """PCX: Pillow reads it, neither facefleet nor InsightFace-REST takes it (GIF was refused here until issue 19)."""
    with pytest.raises(ImageError, match=r"^unsupported image format PCX: expected JPEG, PNG, WebP, BMP, GIF or TIFF$"):
        decode_image(_encode(photo, "PCX"))


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


# ----------------------------------------------------------------- GIF and TIFF (issue 19: what InsightFace-REST takes)
def _tiff(array: np.ndarray, **params) -> bytes:
    return _encode(array, "TIFF", **params)


def test_a_gif_decodes_through_its_palette(photo):
    """A GIF is a palette image: every pixel is its palette colour, close to the photo (GIF has 256 colours)."""
    data = _encode(photo, "GIF")
    decoded = decode_image(data)
    assert decoded.shape == photo.shape and decoded.dtype == np.uint8
    assert np.array_equal(decoded, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert np.abs(decoded.astype(int) - photo.astype(int)).mean() < 12


def test_an_animated_gif_is_its_first_frame(photo):
    data = io.BytesIO()
    first, second = Image.fromarray(photo), Image.fromarray(255 - photo)
    first.save(data, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(io.BytesIO(data.getvalue())).n_frames == 2
    decoded = decode_image(data.getvalue())
    assert np.abs(decoded.astype(int) - photo.astype(int)).mean() < 12  # the inverted frame would be ~120 off


def test_a_gif_with_a_transparent_colour_is_rgb(photo):
    data = io.BytesIO()
    Image.fromarray(photo).quantize(colors=64).save(data, format="GIF", transparency=0)
    assert "transparency" in Image.open(io.BytesIO(data.getvalue())).info
    assert decode_image(data.getvalue()).shape == photo.shape


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg"])
def test_tiff_compressions_decode(photo, compression):
    data = _tiff(photo, compression=compression)
    assert Image.open(io.BytesIO(data)).info["compression"] == compression
    decoded = decode_image(data)
    assert decoded.shape == photo.shape and decoded.dtype == np.uint8
    tolerance = 12 if compression == "jpeg" else 0
    assert np.abs(decoded.astype(int) - photo.astype(int)).mean() <= tolerance


def test_a_multi_page_tiff_is_its_first_page(photo):
    data = io.BytesIO()
    Image.fromarray(photo).save(data, format="TIFF", save_all=True, append_images=[Image.fromarray(255 - photo)])
    assert Image.open(io.BytesIO(data.getvalue())).n_frames == 2
    assert np.array_equal(decode_image(data.getvalue()), photo)


def test_a_cmyk_tiff_is_rgb(photo):
    data = io.BytesIO()
    Image.fromarray(photo).convert("CMYK").save(data, format="TIFF")
    assert Image.open(io.BytesIO(data.getvalue())).mode == "CMYK"
    assert np.array_equal(decode_image(data.getvalue()), photo)  # Pillow's CMYK is 255 - RGB with no black


def test_16_bit_tiffs_keep_their_tones(photo):
    """Greyscale at 16 bits, in either byte order, scaled to 8 bits like a 16-bit PNG; RGB at 16 bits
    (Pillow opens it at 8 bits per channel). tifffile (scikit-image's dependency) writes what Pillow cannot."""
    tifffile = pytest.importorskip("tifffile")

    def written(array: np.ndarray, **params) -> bytes:
        data = io.BytesIO()
        tifffile.imwrite(data, array, **params)
        return data.getvalue()

    grey = photo[..., 1].astype(np.uint16) * 257
    for data, mode in ((_tiff(grey), "I;16"), (written(grey.astype(">u2")), "I;16B")):
        assert Image.open(io.BytesIO(data)).mode == mode
        decoded = decode_image(data)
        assert np.array_equal(decoded[..., 0], photo[..., 1]) and np.array_equal(decoded[..., 2], photo[..., 1])
    wide = written(photo.astype(np.uint16) * 257, photometric="rgb")
    assert np.array_equal(decode_image(wide), photo)


@pytest.mark.parametrize("white", [1.0, 255.0, 65535.0])
def test_a_float_tiff_is_read_against_its_white_point(photo, white):
    """A float greyscale TIFF (mode F) holding the photo as 0..1, 0..255 or 0..65535: the same 8-bit picture."""
    grey = photo[..., 1].astype(np.float32) * np.float32(white / 255.0)
    data = _tiff(grey)
    assert Image.open(io.BytesIO(data)).mode == "F"
    decoded = decode_image(data)
    assert decoded.shape == photo.shape
    assert np.abs(decoded[..., 0].astype(int) - photo[..., 1].astype(int)).max() <= 1


def test_a_broken_tiff_is_a_clear_image_error(photo):
    """Cut short (Pillow, like most writers, puts the image directory at the end: gone with it) or
    with its compressed strips overwritten (the directory intact, decoding fails)."""
    data = _tiff(photo, compression="tiff_lzw")
    with pytest.raises(ImageError, match=r"^truncated or corrupt TIFF data: its image directory cannot be read$"):
        decode_image(data[: len(data) // 2])
    garbled = bytearray(data)
    garbled[2000:60000] = b"\xff" * 58000
    with pytest.raises(ImageError, match=r"^truncated or corrupt TIFF data: "):
        decode_image(bytes(garbled))


@pytest.mark.parametrize("declaring", [_gif_declaring, _tiff_declaring], ids=["GIF", "TIFF"])
def test_a_gif_or_tiff_declaring_a_huge_size_is_refused_from_its_header(declaring):
    """A small one opens and decodes: the refusal of the large one is its declared size, from the header."""
    assert decode_image(declaring(8, 8)).shape == (8, 8, 3)
    with pytest.raises(ImageTooLargeError, match=r"60000x60000 = 3600.0 megapixels exceeds the limit of 40 megapixels"):
        decode_image(declaring(60000, 60000))


def test_gif_and_tiff_headers_count_against_the_request_budget():
    """6000 x 6000 each: under the per-image limit, over a 64-megapixel request budget together."""
    images = [_gif_declaring(6000, 6000), _tiff_declaring(6000, 6000)]
    assert [declared_pixels(data) for data in images] == [36_000_000, 36_000_000]
    with pytest.raises(RequestTooLargeError, match="declare 72,000,000 pixels"):
        check_pixel_budget(images, budget=64_000_000)
    check_pixel_budget(images[:1], budget=64_000_000)
