"""Image payload conversions: every raw encoding with odd sizes and padded rows, compressed
formats, error cases, resize."""

import array

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faster_ros.data.images import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    compressed_to_rgb,
    image_to_rgb,
    resize_rgb,
)


def pad_rows(pixels: np.ndarray, pad: int) -> tuple[bytes, int]:
    """(rows, row_bytes) uint8 -> bytes with ``pad`` junk bytes after each row, and the step."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    out = np.full((rows.shape[0], rows.shape[1] + pad), 0xEE, np.uint8)
    out[:, :rows.shape[1]] = rows
    return out.tobytes(), out.shape[1]


def encode(rgb: np.ndarray, encoding: str, big_endian=False) -> np.ndarray:
    """The pixel rows (H, row_bytes) a camera would send for ``rgb`` in ``encoding``."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    e16 = ">u2" if big_endian else "<u2"
    table = {
        "rgb8": rgb, "bgr8": rgb[..., ::-1], "8uc3": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "8uc4": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "mono8": gray, "8uc1": gray,
        "mono16": (gray.astype(np.uint16) * 257).astype(e16),
        "16uc1": (gray.astype(np.uint16) * 257).astype(e16),
        "rgb16": (rgb.astype(np.uint16) * 257).astype(e16),
        "bgr16": (rgb[..., ::-1].astype(np.uint16) * 257).astype(e16),
        "rgba16": (np.dstack([rgb, rgb[..., :1]]).astype(np.uint16) * 257).astype(e16),
        "bgra16": (np.dstack([rgb[..., ::-1], rgb[..., :1]]).astype(np.uint16) * 257).astype(e16),
    }
    return np.ascontiguousarray(table[encoding])


def expected(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in ("mono8", "8uc1", "mono16", "16uc1"):
        return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return rgb


EXACT = ["rgb8", "bgr8", "8uc3", "rgba8", "bgra8", "8uc4", "mono8", "8uc1", "mono16", "16uc1",
         "rgb16", "bgr16", "rgba16", "bgra16"]


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), pad=st.integers(0, 5),
       encoding=st.sampled_from(EXACT), big=st.booleans(), seed=st.integers(0, 2**16))
def test_exact_encodings_any_size_and_step(h, w, pad, encoding, big, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data, step = pad_rows(encode(rgb, encoding, big), pad)
    out = image_to_rgb(encoding.upper() if seed % 2 else encoding, h, w, step, data,
                       is_bigendian=big)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected(rgb, encoding))


@pytest.mark.parametrize("container", [bytes, bytearray, memoryview, "array", "ndarray", list])
def test_input_buffer_types(container):
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data, step = pad_rows(rgb, 2)
    if container == "array":
        data = array.array("B", data)  # what rclpy gives for uint8[]
    elif container == "ndarray":
        data = np.frombuffer(data, np.uint8)  # what rosbags gives
    else:
        data = container(data) if container is not list else list(data)
    np.testing.assert_array_equal(image_to_rgb("rgb8", 2, 3, step, data), rgb)


BAYER = {"bayer_rggb8": ("R", "G", "G", "B"), "bayer_bggr8": ("B", "G", "G", "R"),
         "bayer_gbrg8": ("G", "B", "R", "G"), "bayer_grbg8": ("G", "R", "B", "G")}


@pytest.mark.parametrize("encoding", list(BAYER))
@pytest.mark.parametrize("h, w, pad", [(6, 8, 0), (7, 9, 3), (5, 11, 1)])
def test_bayer_demosaic_colours(encoding, h, w, pad):
    colour = {"R": 200, "G": 90, "B": 30}
    pattern = BAYER[encoding]
    mosaic = np.empty((h, w), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = colour[pattern[2 * dy + dx]]
    data, step = pad_rows(mosaic, pad)
    out = image_to_rgb(encoding, h, w, step, data)
    assert out.shape == (h, w, 3)
    np.testing.assert_array_equal(out[1:-1, 1:-1], np.broadcast_to([200, 90, 30], (h - 2, w - 2,
                                                                                    3)))
    out16 = image_to_rgb(encoding.replace("8", "16"), h, w, 0,
                         (mosaic.astype(np.uint16) * 257).astype("<u2").tobytes())
    np.testing.assert_array_equal(out16, out)


def uyvy(y: np.ndarray, u: np.ndarray, v: np.ndarray, order: str) -> np.ndarray:
    """Pack per-pixel Y with per-pair U, V (H, W/2) into UYVY or YUYV rows (H, 2W)."""
    h, w = y.shape
    out = np.empty((h, w * 2), np.uint8)
    if order == "uyvy":
        out[:, 0::4], out[:, 1::4], out[:, 2::4], out[:, 3::4] = u, y[:, 0::2], v, y[:, 1::2]
    else:
        out[:, 0::4], out[:, 1::4], out[:, 2::4], out[:, 3::4] = y[:, 0::2], u, y[:, 1::2], v
    return out


@pytest.mark.parametrize("encoding, order", [("yuv422", "uyvy"), ("uyvy", "uyvy"),
                                             ("yuyv", "yuyv"), ("yuv422_yuy2", "yuyv")])
@pytest.mark.parametrize("h, w, pad", [(3, 4, 0), (5, 10, 3)])
def test_packed_yuv422(encoding, order, h, w, pad):
    rng = np.random.default_rng(h * w)
    y = rng.integers(16, 236, (h, w), dtype=np.uint8)
    u = rng.integers(16, 241, (h, w // 2), dtype=np.uint8)
    v = rng.integers(16, 241, (h, w // 2), dtype=np.uint8)
    packed = uyvy(y, u, v, order)
    data, step = pad_rows(packed, pad)
    out = image_to_rgb(encoding, h, w, step, data)
    code = cv2.COLOR_YUV2RGB_UYVY if order == "uyvy" else cv2.COLOR_YUV2RGB_YUYV
    np.testing.assert_array_equal(out, cv2.cvtColor(packed.reshape(h, w, 2), code))
    # a neutral grey stays grey
    grey = uyvy(np.full((2, 2), 128, np.uint8), np.full((2, 1), 128, np.uint8),
                np.full((2, 1), 128, np.uint8), order)
    assert np.ptp(image_to_rgb(encoding, 2, 2, 4, grey.tobytes())) == 0
    with pytest.raises(ImageDecodeError, match="even"):
        image_to_rgb(encoding, h, w + 1, 0, b"\0" * (h * (w + 1) * 2))


@pytest.mark.parametrize("encoding", ["nv12", "nv21"])
def test_planar_nv(encoding):
    h, w, pad = 4, 6, 2
    planes = np.random.default_rng(1).integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    data, step = pad_rows(planes, pad)
    code = cv2.COLOR_YUV2RGB_NV12 if encoding == "nv12" else cv2.COLOR_YUV2RGB_NV21
    np.testing.assert_array_equal(image_to_rgb(encoding, h, w, step, data),
                                  cv2.cvtColor(planes, code))


def test_mono16_scaling_and_all_encodings_listed():
    depth_mm = np.array([[0, 1000, 2000, 9000]], "<u2")
    out = image_to_rgb("16UC1", 1, 4, 8, depth_mm.tobytes(), max16=2000)
    assert out[0, :, 0].tolist() == [0, 128, 255, 255]
    assert {"rgb8", "bgr8", "mono16", "16uc1", "bayer_grbg8", "yuv422", "nv21"} <= set(
        SUPPORTED_ENCODINGS)


@pytest.mark.parametrize(
    "encoding, h, w, step, size, match",
    [
        ("rgb8", 2, 3, 8, 16, "step 8 is smaller than a row of 9 bytes"),
        ("rgb8", 2, 3, 9, 10, r"data truncated, got 10 bytes, expected 18"),
        ("mono16", 2, 3, 6, 30, "data too long"),
        ("rgb8", 0, 3, 9, 0, "empty size"),
        ("hsv8", 2, 2, 6, 12, "unknown image encoding 'hsv8'"),
    ],
)
def test_raw_errors(encoding, h, w, step, size, match):
    with pytest.raises(ImageDecodeError, match=match) as info:
        image_to_rgb(encoding, h, w, step, b"\0" * size)
    assert isinstance(info.value, ValueError)


def test_last_row_padding_may_be_missing():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data, step = pad_rows(rgb, 4)
    np.testing.assert_array_equal(image_to_rgb("rgb8", 2, 3, step, data[:-4]), rgb)


# -------------------------------------------------------------------------------------------------
# compressed


def smooth_rgb(h=24, w=33):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 7 % 256, yy * 9 % 256, np.full((h, w), 200)]).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["png", "rgb8; png compressed bgr8", "bgr8; png compressed bgr8"])
def test_png_exact(fmt):
    rgb = smooth_rgb()
    data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    np.testing.assert_array_equal(compressed_to_rgb(fmt, data), rgb)


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "JPEG"])
def test_jpeg_colours(fmt):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :8] = (255, 0, 0)
    rgb[:, 8:16] = (0, 255, 0)
    rgb[:, 16:] = (0, 0, 255)
    data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    out = compressed_to_rgb(fmt, data)
    assert out.shape == (16, 24, 3)
    assert np.abs(out[4:12, [3, 11, 19]].astype(int) - rgb[4:12, [3, 11, 19]]).max() < 40


def test_compressed_channel_layouts():
    rgb = smooth_rgb(7, 5)
    stored_rgb = cv2.imencode(".png", rgb)[1]  # channels written in RGB order
    np.testing.assert_array_equal(compressed_to_rgb("rgb8; png compressed rgb8", stored_rgb), rgb)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = compressed_to_rgb("mono8; png compressed mono8", cv2.imencode(".png", gray)[1])
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, 2))
    bgra = np.dstack([rgb[..., ::-1], np.full((7, 5), 9, np.uint8)])
    np.testing.assert_array_equal(compressed_to_rgb("bgra8; png compressed bgra8",
                                                    cv2.imencode(".png", bgra)[1]), rgb)


def test_compressed_depth_png():
    depth = np.array([[0, 257 * 10], [257 * 100, 65535]], np.uint16)
    png = cv2.imencode(".png", depth)[1].tobytes()
    header = np.array([0], "<i4").tobytes() + np.array([0.0, 0.0], "<f4").tobytes()
    out = compressed_to_rgb("16UC1; compressedDepth png", header + png)
    assert out[..., 0].tolist() == [[0, 10], [100, 255]]
    with pytest.raises(ImageDecodeError, match="RVL"):
        compressed_to_rgb("16UC1; compressedDepth rvl", header + b"\1" * 40)


def test_compressed_errors():
    png = cv2.imencode(".png", smooth_rgb())[1].tobytes()
    with pytest.raises(ImageDecodeError, match=r"'png': \d+ bytes are not a decodable image"):
        compressed_to_rgb("png", png[: len(png) // 2])
    with pytest.raises(ImageDecodeError, match="jpeg"):
        compressed_to_rgb("jpeg", b"\xff\xd8garbage" * 3)
    with pytest.raises(ImageDecodeError, match="no data"):
        compressed_to_rgb("jpeg", b"")


# -------------------------------------------------------------------------------------------------
# resize


def test_resize_rgb():
    img = np.zeros((4, 4, 3), np.uint8)
    img[::2, ::2] = 255  # one white pixel per 2x2 block
    small = resize_rgb(img, (2, 2))
    np.testing.assert_array_equal(small, np.full((2, 2, 3), 64))  # area average, no aliasing
    assert resize_rgb(img, (4, 4)) is img
    assert resize_rgb(smooth_rgb(), (50, 70)).shape == (50, 70, 3)
    assert resize_rgb(smooth_rgb(), (10, 70)).shape == (10, 70, 3)
    with pytest.raises(ValueError):
        resize_rgb(img, (0, 3))
