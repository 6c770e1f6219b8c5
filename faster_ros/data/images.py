"""Camera message payloads -> RGB arrays: pure functions shared by bag readers and live nodes.

``image_to_rgb`` takes the fields of a ``sensor_msgs/Image`` (encoding, height, width, step,
data, is_bigendian) and ``compressed_to_rgb`` those of a ``sensor_msgs/CompressedImage`` (format,
data); both return an (H, W, 3) uint8 RGB array built with numpy views and OpenCV (no per-pixel
Python). They accept ``bytes``, ``bytearray``, ``memoryview``, ``array.array`` (rclpy) or a uint8
ndarray (rosbags). Anything wrong raises :class:`ImageDecodeError` naming the encoding and the
sizes.

Conventions (documented because ROS leaves them open):
  * ``step == 0`` is taken as tightly packed rows (``width * bytes_per_pixel``).
  * ``data`` must hold ``step * height`` bytes; the padding of the last row may be missing.
  * 16-bit images (mono16, 16UC1, rgb16, bayer_*16, compressedDepth) are scaled to 8 bits
    by ``value * 255 / max16`` (default 65535, the full range; pass e.g. ``max16=4000`` to see a
    16UC1 depth image in millimetres up to 4 m), clipped.
  * ``8UC3`` / ``8UC4`` are taken as BGR / BGRA: the usual producer is an OpenCV image passed
    through cv_bridge with the "passthrough" encoding. ``8UC1`` is grey.
  * ``yuv422`` is ROS's name for UYVY; ``yuv422_yuy2`` is YUYV.
"""

from __future__ import annotations

import re

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """An image payload cannot be converted; the message names the encoding and the sizes."""


# encoding -> (channels, bytes per channel, cv2 conversion to RGB or None)
_RAW: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 1, None),
    "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "8uc3": (3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "8uc4": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    "8uc1": (1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
    "16uc1": (1, 2, cv2.COLOR_GRAY2RGB),
    "rgb16": (3, 2, None),
    "bgr16": (3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": (4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": (4, 2, cv2.COLOR_BGRA2RGB),
    # ROS bayer_XXXX names the 2x2 pattern from the top-left pixel; OpenCV names it from the
    # second row/column, hence the shifted codes (the same table as cv_bridge).
    "bayer_rggb8": (1, 1, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, 1, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, 1, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, 1, cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": (1, 2, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": (1, 2, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": (1, 2, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": (1, 2, cv2.COLOR_BayerGB2RGB),
    # packed 4:2:2, 2 bytes per pixel
    "yuv422": (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuyv": (2, 1, cv2.COLOR_YUV2RGB_YUYV),
    "yuv422_yuy2": (2, 1, cv2.COLOR_YUV2RGB_YUYV),
}
# planar 4:2:0: a Y plane of ``height`` rows then a chroma plane of ``height // 2`` rows
_PLANAR: dict[str, int] = {"nv12": cv2.COLOR_YUV2RGB_NV12, "nv21": cv2.COLOR_YUV2RGB_NV21}
_SUBSAMPLED = {"yuv422", "uyvy", "yuyv", "yuv422_yuy2", "nv12", "nv21"}
SUPPORTED_ENCODINGS = tuple(sorted([*_RAW, *_PLANAR]))


def _as_bytes(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.frombuffer(data.tobytes(), np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    try:
        return np.frombuffer(memoryview(data).cast("B"), np.uint8)
    except TypeError as exc:
        raise ImageDecodeError(f"image data of type {type(data).__name__} is not bytes") from exc


def _to8(a: np.ndarray, max16: float) -> np.ndarray:
    """uint16 -> uint8, ``value * 255 / max16`` clipped."""
    return cv2.convertScaleAbs(a, alpha=255.0 / max16)


def image_to_rgb(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data,
    *,
    is_bigendian: bool = False,
    max16: float = 65535.0,
) -> np.ndarray:
    """Convert a raw ``sensor_msgs/Image`` payload to an (H, W, 3) uint8 RGB array.

    ``data`` holds ``height`` rows of ``step`` bytes each; only the first
    ``width * bytes_per_pixel`` bytes of each row are pixels (the rest is padding).
    """
    enc = str(encoding).strip().lower()
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{encoding!r} image has an empty size {width}x{height}")
    if max16 <= 0:
        raise ImageDecodeError(f"max16 must be positive, got {max16}")
    if enc in _PLANAR:
        channels, depth, code = 1, 1, _PLANAR[enc]
        rows = height + height // 2
    elif enc in _RAW:
        channels, depth, code = _RAW[enc]
        rows = height
    else:
        raise ImageDecodeError(
            f"unknown image encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    if enc in _SUBSAMPLED and (width % 2 or (enc in _PLANAR and height % 2)):
        raise ImageDecodeError(f"{encoding!r} needs even image sizes, got {width}x{height}")
    row_bytes = width * channels * depth
    step = step or row_bytes
    if step < row_bytes:
        raise ImageDecodeError(
            f"{encoding!r} {width}x{height}: step {step} is smaller than a row of "
            f"{row_bytes} bytes ({width} px x {channels * depth} bytes)"
        )
    buf = _as_bytes(data)
    need, full = step * (rows - 1) + row_bytes, step * rows
    if not need <= buf.size <= full:
        what = "truncated" if buf.size < need else "too long"
        raise ImageDecodeError(
            f"{encoding!r} {width}x{height} step {step}: data {what}, got {buf.size} bytes, "
            f"expected {full}"
        )
    if buf.size < full:  # last row without its padding
        buf = np.concatenate([buf, np.zeros(full - buf.size, np.uint8)])
    pixels = buf[:full].reshape(rows, step)[:, :row_bytes]  # (rows, row_bytes) view
    if depth == 2:
        pixels = np.ascontiguousarray(pixels).view(">u2" if is_bigendian else "<u2")
        pixels = _to8(pixels.astype(np.uint16, copy=False), max16)
    img = np.ascontiguousarray(pixels)  # no copy unless rows are padded
    if enc not in _PLANAR:
        img = img.reshape(height, width, channels) if channels > 1 else img
    if code is None:
        return img
    try:
        return cv2.cvtColor(img, code)
    except cv2.error as exc:
        raise ImageDecodeError(f"{encoding!r} {width}x{height}: OpenCV failed: {exc}") from exc


_NO_SWAP = re.compile(r"compressed\s+(rgb8|rgba8|rgb16|rgba16)\b")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def compressed_to_rgb(fmt: str, data, *, max16: float = 65535.0) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` payload (JPEG, PNG, anything OpenCV reads) to an
    (H, W, 3) uint8 RGB array.

    The container is recognised from the bytes; ``fmt`` ("jpeg", "png", "rgb8; jpeg compressed
    bgr8", "16UC1; compressedDepth png", ...) only says the channel order of the stored image:
    "compressed bgr8" (what image_transport writes) or no order means BGR as usual for OpenCV,
    "compressed rgb8" means the channels were stored in RGB order. compressedDepth payloads have
    their 12-byte depth header skipped; 16-bit results are scaled like :func:`image_to_rgb`.
    """
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError(f"compressed image {fmt!r}: no data")
    fmt_l = str(fmt).lower()
    if "compresseddepth" in fmt_l and buf[:8].tobytes() != _PNG_MAGIC:
        start = buf.tobytes().find(_PNG_MAGIC, 0, 64)
        if start < 0:
            raise ImageDecodeError(
                f"compressed image {fmt!r}: compressedDepth payload without a PNG (RVL is not "
                f"supported)"
            )
        buf = buf[start:]
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageDecodeError(
            f"compressed image {fmt!r}: {buf.size} bytes are not a decodable image "
            f"(corrupt or truncated)"
        )
    if img.dtype == np.uint16:
        img = _to8(img, max16)
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"compressed image {fmt!r}: unsupported pixel type {img.dtype}")
    swap = not _NO_SWAP.search(fmt_l)
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if swap else img
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if swap else cv2.COLOR_RGBA2RGB)
    raise ImageDecodeError(f"compressed image {fmt!r}: {img.shape[2]} channels")


def resize_rgb(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) image to ``size = (h, w)``: INTER_AREA when shrinking (no aliasing),
    INTER_LINEAR when enlarging; returned unchanged when already that size."""
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"resize_rgb: size must be positive, got {size}")
    if img.shape[:2] == (h, w):
        return img
    shrink = h <= img.shape[0] and w <= img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
