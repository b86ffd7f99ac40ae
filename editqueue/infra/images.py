"""Fetch input images safely and check them against a model's documented constraints.

Every message of ``ImageRejected`` is shown to the API client, so it says what is wrong
in plain words. ``ImageFetchError`` is for failures that are not the image's fault
(timeouts, refused connections, 5xx); its ``retryable`` flag tells the worker to retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from PIL import Image

from editqueue.infra.netguard import (
    Network,
    UnresolvableHost,
    UnsafeURL,
    guarded_client,
    open_following_redirects,
)

MB = 1024 * 1024
MAX_REDIRECTS = 3

# Pillow format name -> (content type, file extension) for the formats vendors accept.
_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}

# Statuses that say "try again later" rather than "this URL is wrong".
_RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ImageRejected(ValueError):
    """The image (or its URL) breaks a constraint; the message is user-facing.

    The image check's own failure; the API reports it as `errors.InvalidImageError` (422).
    """


class ImageFetchError(Exception):
    """Downloading an image failed for a reason outside the image itself."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ImageConstraints:
    """What a model accepts; the catalog builds one per model."""

    formats: frozenset[str]
    min_side_exclusive: int = 14
    max_ratio_exclusive: float = 3.0
    max_bytes: int = 10 * MB
    max_pixels: int = 36_000_000

    def __post_init__(self) -> None:
        unknown = set(self.formats) - _FORMATS.keys()
        if not self.formats or unknown:
            raise ValueError(f"formats must be a non-empty subset of {sorted(_FORMATS)}")


@dataclass(frozen=True)
class ImageInfo:
    """What ``inspect_image`` found out about valid image bytes."""

    format: str
    content_type: str
    width: int
    height: int
    size: int
    sha256: str
    ext: str


def _format_mb(size: int, *, rounding: str = "up") -> str:
    """Bytes as MB to 2 decimals plus the exact count: "10.01 MB (10,485,761 bytes)".

    Sizes round up and limits down (`rounding="down"`), so an image just over its limit
    never reads as the same figure.
    """
    hundredths = math.ceil(size * 100 / MB) if rounding == "up" else size * 100 // MB
    figure = f"{hundredths / 100:.2f}".rstrip("0").rstrip(".")
    return f"{figure} MB ({size:,} bytes)"


def _size_over_limit(size: int, limit: int) -> str:
    """ "image is X; the limit is Y" with figures that differ."""
    return f"image is {_format_mb(size)}; the limit is {_format_mb(limit, rounding='down')}"


def _format_names(formats: frozenset[str]) -> str:
    """ "JPEG/PNG" from a set of format names (stable order)."""
    return "/".join(name for name in _FORMATS if name in formats)


def _detected_format(data: bytes) -> str | None:
    """The real format of bytes Pillow can identify at all (for a helpful message)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            return probe.format
    except Exception:  # any failure just means "unknown"; the caller refuses the bytes anyway
        return None


def _open_allowed(data: bytes, constraints: ImageConstraints) -> Image.Image:
    """The image opened from its header only, restricted to the allowed formats."""
    allowed = _format_names(constraints.formats)
    try:
        # formats= stops Pillow from trying any other decoder on untrusted bytes; opening
        # reads the header only. Pillow raises DecompressionBombError from the header for
        # absurd sizes (and the warning, if a filter turns it into an error).
        return Image.open(io.BytesIO(data), formats=sorted(constraints.formats))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("image has too many pixels to process safely") from None
    except Exception:  # UnidentifiedImageError, or any parser error on hostile bytes
        found = _detected_format(data)
        suffix = f" (it is {found})" if found else ""
        raise ImageRejected(f"not a {allowed} image{suffix}") from None


def _check_dimensions(width: int, height: int, constraints: ImageConstraints) -> None:
    """Pixel count, minimum side and aspect ratio, all from the header."""
    if width * height > constraints.max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} px ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {constraints.max_pixels / 1e6:g} megapixels"
        )
    limit = constraints.min_side_exclusive
    for side, name in ((width, "wide"), (height, "high")):
        if side <= limit:
            raise ImageRejected(
                f"image is {side} px {name}; both sides must be more than {limit} px"
            )
    ratio = max(width, height) / min(width, height)
    if ratio >= constraints.max_ratio_exclusive:
        raise ImageRejected(
            f"image is {width}x{height} px, an aspect ratio of {ratio:.2f}:1; the long side "
            f"must be less than {constraints.max_ratio_exclusive:g} times the short side"
        )


def _check_decodes(data: bytes, opened: Image.Image) -> None:
    """Decode every pixel, so truncated or corrupt files are refused now, not by a vendor."""
    try:
        # verify() checks chunk CRCs (PNG) but leaves an image unusable, hence its own
        # open; load() of the image opened for its header decodes the pixel data and fails
        # on truncation. Neither touches the global ImageFile.LOAD_TRUNCATED_IMAGES, which
        # stays at its strict default.
        with Image.open(io.BytesIO(data), formats=[str(opened.format)]) as im:
            im.verify()
        opened.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("image has too many pixels to process safely") from None
    except Exception:  # decoders raise OSError, SyntaxError, ValueError, struct.error…
        raise ImageRejected("image data is truncated or corrupt") from None


def header_pixels(data: bytes) -> int | None:
    """Width x height from the header of a JPEG, PNG or WebP; None if unreadable.

    Cheap (no pixel is decoded): for budgeting the full checks before running them.
    """
    try:
        with Image.open(io.BytesIO(data), formats=sorted(_FORMATS)) as im:
            return im.width * im.height
    except Exception:  # hostile bytes: the full check reports what is wrong with them
        return None


def inspect_image(data: bytes, constraints: ImageConstraints) -> ImageInfo:
    """Check image bytes against ``constraints``; ImageRejected says what is wrong."""
    if not data:
        raise ImageRejected("image is empty")
    if len(data) > constraints.max_bytes:
        raise ImageRejected(_size_over_limit(len(data), constraints.max_bytes))
    with _open_allowed(data, constraints) as opened:
        fmt, width, height = str(opened.format), opened.width, opened.height
        # Header checks come before decoding: a 50000x50000 header is refused without
        # allocating its pixels (our own limit, independent of Image.MAX_IMAGE_PIXELS).
        _check_dimensions(width, height, constraints)
        _check_decodes(data, opened)
    content_type, ext = _FORMATS[fmt]
    return ImageInfo(
        format=fmt,
        content_type=content_type,
        width=width,
        height=height,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        ext=ext,
    )


_DATA_URL = re.compile(r"data:(image/[a-z0-9.+-]+);base64,(.*)", re.IGNORECASE | re.DOTALL)


def parse_data_url(value: str) -> tuple[str, bytes]:
    """Split ``data:image/<fmt>;base64,…`` into its declared media type and decoded bytes.

    The media type is only what the client declared; ``inspect_image`` finds the real one.
    """
    match = _DATA_URL.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ImageRejected("not a data URL of the form data:image/<format>;base64,<data>")
    media_type, payload = match.group(1).lower(), match.group(2)
    if not payload:
        raise ImageRejected("data URL holds no data")
    try:
        # validate=True refuses characters outside the alphabet (including whitespace)
        # instead of silently dropping them; bad padding raises too.
        return media_type, base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("data URL is not valid base64") from None


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    """The body, refused as soon as it passes ``max_bytes`` or the overall deadline."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageRejected(_size_over_limit(int(declared), max_bytes))
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # We asked for identity: a compressed body could inflate far past the cap per chunk.
        raise ImageRejected(f"could not fetch image: unsupported Content-Encoding {encoding}")
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise ImageRejected(
                f"image is larger than {_format_mb(max_bytes, rounding='down')}, the limit"
            )
        # httpx timeouts are per read; this bounds a server that drips bytes forever.
        if time.monotonic() > deadline:
            raise ImageFetchError("timed out fetching image", retryable=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _download(
    client: httpx.Client, url: str, allowed: Sequence[Network], max_bytes: int, timeout: float
) -> bytes:
    """GET ``url`` through the guard and return its capped body."""
    deadline = time.monotonic() + timeout
    headers = {"Accept": "image/*", "Accept-Encoding": "identity"}
    with open_following_redirects(
        client, url, allowed, max_hops=MAX_REDIRECTS, headers=headers
    ) as response:
        status = response.status_code
        if status in _RETRYABLE_STATUSES:
            raise ImageFetchError(f"could not fetch image: HTTP {status}", retryable=True)
        if not response.is_success:
            raise ImageRejected(f"could not fetch image: HTTP {status}")
        return _read_capped(response, max_bytes, deadline)


def fetch_image(
    url: str,
    *,
    allowed_networks: Sequence[Network],
    max_bytes: int,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
) -> bytes:
    """Download an http(s) image URL: SSRF-guarded, at most 3 re-checked redirects, capped.

    Pass ``client`` (from ``netguard.guarded_client``) to reuse connections; every hop is
    re-checked either way. ImageRejected for bad URLs or responses, ImageFetchError otherwise.
    """
    own_client = client is None
    if client is None:
        client = guarded_client(allowed_networks, timeout=httpx.Timeout(timeout))
    try:
        return _download(client, url, allowed_networks, max_bytes, timeout)
    except UnresolvableHost as exc:
        if exc.temporary:
            raise ImageFetchError(f"could not fetch image: {exc}", retryable=True) from None
        raise ImageRejected(f"could not fetch image: {exc}") from None
    except UnsafeURL as exc:
        raise ImageRejected(f"image URL refused: {exc}") from None
    except httpx.TooManyRedirects:
        raise ImageRejected(f"could not fetch image: more than {MAX_REDIRECTS} redirects") from None
    except httpx.TimeoutException:
        raise ImageFetchError("timed out fetching image", retryable=True) from None
    except httpx.InvalidURL:
        raise ImageRejected("not a valid image URL") from None
    except httpx.TransportError as exc:
        # Connection refused or reset, protocol errors: the host may be back later.
        raise ImageFetchError(
            f"could not fetch image: {type(exc).__name__}", retryable=True
        ) from None
    finally:
        if own_client:
            client.close()
