"""Input images as the vendors receive them: inline `data:` URLs or links they download."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable, Sequence

import httpx

from sandbox.imaging import ImageInfo, inspect_image

MAX_IMAGE_BYTES = 10 * 1024 * 1024


class InputImageError(ValueError):
    """An input image could not be read; `reason` says which rule it broke."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "unreadable", "oversized", "format", "dimensions", "fetch"


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """An input image's bytes and what they are."""

    data: bytes
    info: ImageInfo


def load_image(ref: str, *, allowed_formats: frozenset[str], timeout: float) -> LoadedImage:
    """Decode a data URL or download an http(s) URL, then check format and size."""
    if ref.startswith("data:"):
        data = _decode_data_url(ref)
    elif ref.startswith(("http://", "https://")):
        data = _download(ref, timeout)
    else:
        raise InputImageError("unreadable", "image must be a data URL or an http(s) URL")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputImageError("oversized", "image exceeds 10 MB")
    try:
        info = inspect_image(data)
    except ValueError:
        raise InputImageError("format", "image data is not a supported image") from None
    if info.format not in allowed_formats:
        allowed = ", ".join(sorted(f.lower() for f in allowed_formats))
        message = f"image format {info.format.lower()} is not one of {allowed}"
        raise InputImageError("format", message)
    return LoadedImage(data, info)


def check_dimensions(info: ImageInfo) -> None:
    """Ark's geometry rules: both sides > 14 px and width/height strictly inside (1/3, 3)."""
    if info.width <= 14 or info.height <= 14:
        raise InputImageError("dimensions", "image width and height must be greater than 14 px")
    if not 1 / 3 < info.width / info.height < 3:
        raise InputImageError("dimensions", "image aspect ratio must be within (1/3, 3)")


def load_edit_inputs(
    refs: Sequence[str],
    *,
    allowed_formats: frozenset[str],
    timeout: float,
    refuse: Callable[[InputImageError, int], Exception],
) -> list[LoadedImage]:
    """Load each input and apply Ark's geometry rules; the first refusal is raised as
    `refuse(error, index)`, the vendor's own error."""
    loaded = []
    for index, ref in enumerate(refs):
        try:
            image = load_image(ref, allowed_formats=allowed_formats, timeout=timeout)
            check_dimensions(image.info)
        except InputImageError as exc:
            raise refuse(exc, index) from None
        loaded.append(image)
    return loaded


def _decode_data_url(ref: str) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep or not header.endswith(";base64"):
        raise InputImageError("unreadable", "data URL must be data:image/<fmt>;base64,<data>")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputImageError("unreadable", "data URL payload is not valid base64") from None


def _download(url: str, timeout: float) -> bytes:
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise InputImageError("fetch", f"image URL answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            received = 0
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > MAX_IMAGE_BYTES:
                    raise InputImageError("oversized", "image exceeds 10 MB")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise InputImageError("fetch", f"image URL could not be downloaded ({exc})") from None
