"""What a client sends, checked before anything is decoded in full: size of the body,
image header dimensions, then the decode itself. Every refusal is a ``BadInput`` with
an HTTP status and a message that says what was wrong."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np

from distill.core.preprocess import ImageError, decode_image

MAX_IMAGE_BYTES = 10 << 20  # a page scan is a few MB; a line crop a few KB
MAX_PIXELS = 40_000_000  # the header is read first: a 20000 x 20000 bomb is never decoded
MAX_IMAGES = 64  # per request


class BadInput(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def from_base64(text, field: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise BadInput(422, f"{field}: expected a non-empty base64 string")
    if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise BadInput(413, f"{field}: image larger than {MAX_IMAGE_BYTES >> 20} MB")
    if text.startswith("data:"):  # a data URL from a browser
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(422, f"{field}: not valid base64") from None


def check_header(data: bytes, source: str) -> None:
    """Refuse huge images from their header alone (no pixel is decoded here)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError as e:  # PIL's own limit, far above ours
        raise BadInput(413, f"{source}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise BadInput(415, f"{source}: not an image (PNG, JPEG, BMP, TIFF, WebP...)") from None
    except Exception as e:  # a header so broken PIL cannot parse it
        raise BadInput(422, f"{source}: unreadable image header ({e})") from None
    if w * h > MAX_PIXELS:
        raise BadInput(413, f"{source}: image too large ({w}x{h} pixels, limit {MAX_PIXELS:,})")


def decode_upload(data: bytes, source: str) -> np.ndarray:
    """Bytes from a client -> uint8 RGB image, or BadInput."""
    if not data:
        raise BadInput(422, f"{source}: empty image")
    if len(data) > MAX_IMAGE_BYTES:
        raise BadInput(413, f"{source}: image larger than {MAX_IMAGE_BYTES >> 20} MB")
    check_header(data, source)
    try:
        return decode_image(data, source)
    except ImageError as e:  # truncated or corrupt after a valid header
        raise BadInput(422, str(e)) from None
