"""Image checks on bytes made with Pillow, and fetches from a loopback HTTP server."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from typing import Any

import pytest
from PIL import Image

from api.offload import run_blocking
from editqueue.infra.images import (
    ImageConstraints,
    ImageFetchError,
    ImageRejected,
    fetch_image,
    header_pixels,
    inspect_image,
    parse_data_url,
)
from editqueue.infra.storage import LocalStorage
from editqueue.jobs.intake import InlineImages, InlineImagesTooLarge

JPEG_PNG = ImageConstraints(formats=frozenset({"JPEG", "PNG"}))
WITH_WEBP = ImageConstraints(formats=frozenset({"JPEG", "PNG", "WEBP"}))
LOOPBACK = [ip_network("127.0.0.0/8")]


def encode(width: int, height: int, fmt: str = "PNG", *, noise: bool = False, **opts: Any) -> bytes:
    """An image of the given size, solid or random noise, encoded as ``fmt``."""
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (200, 80, 40))
    out = io.BytesIO()
    image.save(out, format=fmt, **opts)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``x``height`` (a decompression bomb's header)."""
    data = bytearray(encode(1, 1))
    # The IHDR chunk follows the 8-byte signature: length(4) type(4) width(4) height(4)…
    struct.pack_into(">II", data, 16, width, height)
    ihdr = bytes(data[12:29])  # chunk type + 13 data bytes, which the CRC covers
    struct.pack_into(">I", data, 29, zlib.crc32(ihdr))
    return bytes(data)


# -- inspect_image -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "ext"),
    [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg")],
)
def test_valid_images_are_described(fmt: str, content_type: str, ext: str) -> None:
    data = encode(64, 48, fmt)
    info = inspect_image(data, JPEG_PNG)
    assert (info.format, info.content_type, info.ext) == (fmt, content_type, ext)
    assert (info.width, info.height, info.size) == (64, 48, len(data))
    assert len(info.sha256) == 64


def test_webp_only_where_the_model_allows_it() -> None:
    data = encode(64, 64, "WEBP")
    assert inspect_image(data, WITH_WEBP).content_type == "image/webp"
    with pytest.raises(ImageRejected, match=r"^not a JPEG/PNG image \(it is WEBP\)$"):
        inspect_image(data, JPEG_PNG)


def test_a_gif_is_refused() -> None:
    with pytest.raises(ImageRejected, match=r"not a JPEG/PNG image \(it is GIF\)"):
        inspect_image(encode(64, 64, "GIF"), JPEG_PNG)


@pytest.mark.parametrize(
    "data",
    [os.urandom(4096), b"<html><body>not an image</body></html>", b"\x89PNG\r\n\x1a\n"],
    ids=["random-bytes", "html", "png-signature-only"],
)
def test_bytes_that_are_not_images_are_refused(data: bytes) -> None:
    with pytest.raises(ImageRejected, match=r"^not a JPEG/PNG image$"):
        inspect_image(data, JPEG_PNG)


def test_empty_bytes() -> None:
    with pytest.raises(ImageRejected, match="image is empty"):
        inspect_image(b"", JPEG_PNG)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((12, 100), "image is 12 px wide; both sides must be more than 14 px"),
        ((100, 14), "image is 14 px high; both sides must be more than 14 px"),
    ],
)
def test_small_sides_are_refused(size: tuple[int, int], message: str) -> None:
    with pytest.raises(ImageRejected, match=f"^{message}$"):
        inspect_image(encode(*size), JPEG_PNG)


def test_side_limit_is_exclusive() -> None:
    assert inspect_image(encode(15, 15), JPEG_PNG).width == 15


@pytest.mark.parametrize("size", [(400, 100), (100, 400), (300, 100)])
def test_extreme_aspect_ratios_are_refused(size: tuple[int, int]) -> None:
    with pytest.raises(ImageRejected, match="less than 3 times the short side"):
        inspect_image(encode(*size), JPEG_PNG)


def test_ratio_just_under_the_limit_passes() -> None:
    assert inspect_image(encode(299, 100), JPEG_PNG).width == 299


def test_an_11_mb_image_is_refused_before_decoding() -> None:
    # Noise does not compress, so a 1950x1950 RGB PNG is a valid image of about 11 MB.
    data = encode(1950, 1950, noise=True, compress_level=0)
    assert 10 * 1024 * 1024 < len(data) < 12 * 1024 * 1024
    with pytest.raises(
        ImageRejected,
        match=r"^image is 1[01]\.\d\d? MB \([\d,]+ bytes\); "
        r"the limit is 10 MB \(10,485,760 bytes\)$",
    ):
        inspect_image(data, JPEG_PNG)
    # The same bytes are a fine image when the limit allows them.
    roomy = ImageConstraints(formats=frozenset({"PNG"}), max_bytes=20 * 1024 * 1024)
    assert inspect_image(data, roomy).width == 1950


def test_truncated_images_are_refused() -> None:
    png = encode(200, 200, noise=True)
    jpeg = encode(200, 200, "JPEG", noise=True)
    for data in (png[: len(png) // 2], jpeg[: len(jpeg) // 2]):
        with pytest.raises(ImageRejected, match="truncated or corrupt"):
            inspect_image(data, JPEG_PNG)


def test_corrupt_png_chunk_is_refused() -> None:
    data = bytearray(encode(64, 64, noise=True))
    data[len(data) // 2] ^= 0xFF  # flips a byte inside IDAT: its CRC no longer matches
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        inspect_image(bytes(data), JPEG_PNG)


def test_decompression_bomb_is_refused_from_its_header() -> None:
    # 50000x50000 is 2.5 gigapixels; Pillow refuses it while reading the header.
    with pytest.raises(ImageRejected, match="too many pixels"):
        inspect_image(png_declaring(50_000, 50_000), JPEG_PNG)


def test_pixel_limit_is_ours_not_pillows() -> None:
    # 8000x8000 is under Pillow's global bomb limit but over the model's 36 MP.
    with pytest.raises(ImageRejected, match=r"8000x8000 px \(64 megapixels\); the limit is 36"):
        inspect_image(png_declaring(8000, 8000), JPEG_PNG)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # no global was changed to get here


def test_constraints_refuse_unknown_formats() -> None:
    with pytest.raises(ValueError, match="subset"):
        ImageConstraints(formats=frozenset({"GIF"}))


# -- parse_data_url ----------------------------------------------------------------------


def test_data_url_round_trip() -> None:
    data = encode(32, 32)
    media_type, decoded = parse_data_url("data:image/png;base64," + base64.b64encode(data).decode())
    assert (media_type, decoded) == ("image/png", data)
    media_type, _ = parse_data_url("DATA:IMAGE/JPEG;BASE64,AAAA")
    assert media_type == "image/jpeg"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://example.com/a.png", "not a data URL"),
        ("data:text/plain;base64,aGVsbG8=", "not a data URL"),
        ("data:image/png,rawbytes", "not a data URL"),
        ("data:image/png;base64,", "holds no data"),
        ("data:image/png;base64,aGVsbG8", "not valid base64"),  # missing padding
        ("data:image/png;base64,aGVs bG8=", "not valid base64"),  # whitespace
        ("data:image/png;base64,aGVs*bG8=", "not valid base64"),
    ],
)
def test_bad_data_urls(value: str, message: str) -> None:
    with pytest.raises(ImageRejected, match=message):
        parse_data_url(value)


# -- header_pixels -----------------------------------------------------------------------


def test_header_pixels_reads_only_the_header() -> None:
    assert header_pixels(encode(300, 200)) == 60_000
    assert header_pixels(encode(300, 200, "JPEG")) == 60_000
    assert header_pixels(encode(300, 200, "WEBP")) == 60_000
    # No pixel data behind this header at all: the answer comes from the header alone.
    assert header_pixels(png_declaring(8000, 8000)) == 64_000_000
    assert header_pixels(png_declaring(50_000, 50_000)) is None  # Pillow refuses the bomb
    assert header_pixels(encode(30, 30, "GIF")) is None
    assert header_pixels(b"not an image") is None


# -- a request's inline images (editqueue.intake.InlineImages) ----------------------------


class Recorder:
    """A ``run_blocking`` that runs the work in place and remembers what it ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, fn: Any, *args: Any) -> Any:
        self.calls.append(fn.__name__)
        return fn(*args)


def test_the_inline_budget_refuses_before_anything_is_decoded() -> None:
    runner = Recorder()
    inline = InlineImages(runner, max_pixels=5_000_000)
    first, second = encode(2000, 1500), encode(2000, 1501)  # 3 Mpx each
    inline.reserve("jobs[0].image", first, JPEG_PNG)
    inline.reserve("jobs[1].image", first, JPEG_PNG)  # the same image again counts once
    assert inline.reserved_pixels == 3_000_000
    with pytest.raises(InlineImagesTooLarge) as raised:
        inline.reserve("jobs[2].image", second, JPEG_PNG)
    problem = raised.value
    assert (problem.status, problem.code) == (413, "payload_too_large")
    assert problem.errors[0]["field"] == "jobs[2].image"
    assert "may total 5 megapixels" in problem.detail and "6 megapixels" in problem.detail
    assert runner.calls == []


def test_images_refused_from_their_header_do_not_use_the_budget() -> None:
    inline = InlineImages(max_pixels=1_000_000)
    inline.reserve("image", png_declaring(8000, 8000), JPEG_PNG)  # over the model's 36 Mpx
    inline.reserve("image", b"not an image", JPEG_PNG)
    assert inline.reserved_pixels == 0
    with pytest.raises(ImageRejected, match="64 megapixels"):
        inline.inspect("image", png_declaring(8000, 8000), JPEG_PNG)


def test_each_distinct_image_is_decoded_once_and_large_ones_through_run_blocking() -> None:
    runner = Recorder()
    inline = InlineImages(runner)
    large, small = encode(2000, 1500), encode(64, 64)
    for _ in range(3):
        assert inline.inspect("image", large, JPEG_PNG).width == 2000
        assert inline.inspect("image", small, JPEG_PNG).width == 64
    assert runner.calls == ["inspect_image"]  # the small one decodes in place


def test_a_broken_large_image_is_refused_every_time_but_decoded_once() -> None:
    runner = Recorder()
    inline = InlineImages(runner)
    large = encode(2000, 1500)
    broken = large[: len(large) // 2]  # the header is intact, the pixel data cut short
    for _ in range(2):
        with pytest.raises(ImageRejected, match="truncated or corrupt"):
            inline.inspect("image", broken, JPEG_PNG)
    assert runner.calls == ["inspect_image"]


def test_data_urls_are_decoded_once_and_large_ones_through_run_blocking() -> None:
    runner = Recorder()
    inline = InlineImages(runner)
    small = encode(64, 64)
    assert inline.load("data:image/png;base64," + base64.b64encode(small).decode()) == small
    large = "data:image/png;base64," + "AAAA" * 400_000  # 1.2 MB of zero bytes
    assert inline.load(large) == inline.load(large) == bytes(1_200_000)
    for _ in range(2):
        with pytest.raises(ImageRejected, match="not valid base64"):
            inline.load("data:image/png;base64,@@@@")
    assert runner.calls == ["parse_data_url"]


def test_large_writes_to_local_storage_go_through_run_blocking(tmp_path) -> None:
    storage = LocalStorage(tmp_path, "http://127.0.0.1", b"k" * 32)
    runner = Recorder()
    inline = InlineImages(runner)
    inline.store(storage, "t/j/in/0.png", b"x" * 100, "image/png")
    stored = inline.store(storage, "t/j/in/1.png", b"y" * (2 * 1024 * 1024), "image/png")
    assert runner.calls == ["put"]
    assert stored.size == 2 * 1024 * 1024 and storage.get("t/j/in/1.png")[:1] == b"y"


def test_run_blocking_runs_in_place_without_gevent() -> None:
    assert run_blocking(threading.get_ident) == threading.get_ident()


_GEVENT_PROBE = """
from gevent import monkey

monkey.patch_all(aggressive=False)

import io, threading, time
import gevent
from PIL import Image
from api.offload import run_blocking
from editqueue.infra.images import ImageConstraints, inspect_image

buffer = io.BytesIO()
Image.new("RGB", (6000, 6000), (30, 90, 160)).save(buffer, "PNG", compress_level=1)
data, png = buffer.getvalue(), ImageConstraints(formats=frozenset({"PNG"}))
ticks = []

def tick():
    while True:
        gevent.sleep(0.01)
        ticks.append(time.monotonic())

def decode_twice():
    for _ in range(2):
        inspect_image(data, png)
    return threading.get_ident()

ticker = gevent.spawn(tick)
gevent.sleep(0.05)
started = time.monotonic()
thread = run_blocking(decode_twice)
ended = time.monotonic()
ticker.kill()
during = [t for t in ticks if started < t < ended]
gaps = [b - a for a, b in zip([started, *during], [*during, ended])]
print(len(during), max(gaps), thread != threading.get_ident())
"""


def test_under_gevent_decoding_leaves_the_event_loop_running() -> None:
    # A subprocess: monkey-patching this test process would change every other test.
    result = subprocess.run(
        [sys.executable, "-c", _GEVENT_PROBE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    ticks, worst_gap, on_a_thread = result.stdout.split()
    # Two 36-Mpx decodes take a good fraction of a second; had they run on the event
    # loop's thread, no tick could have happened meanwhile.
    assert on_a_thread == "True"
    assert int(ticks) >= 5, result.stdout
    assert float(worst_gap) < 1.0, result.stdout


# -- fetch_image -------------------------------------------------------------------------

PNG = encode(64, 64)


class _ImageHandler(BaseHTTPRequestHandler):
    """Serves one PNG plus the failure modes fetch_image must handle."""

    def do_GET(self) -> None:
        path = self.path
        if path == "/img.png":
            self._reply(200, PNG, {"Content-Type": "image/png"})
        elif path == "/missing":
            self._reply(404, b"no", {})
        elif path == "/busy":
            self._reply(503, b"later", {})
        elif path == "/redirect-ok":
            self._reply(302, b"", {"Location": "/img.png"})
        elif path == "/redirect-private":
            self._reply(302, b"", {"Location": "http://10.0.0.1/img.png"})
        elif path == "/loop":
            self._reply(302, b"", {"Location": "/loop"})
        elif path == "/declared-huge":
            self._reply(200, PNG, {"Content-Length": str(50 * 1024 * 1024)}, length=False)
        elif path == "/undeclared-huge":
            self._stream_without_length(2 * 1024 * 1024)
        elif path == "/gzip":
            self._reply(200, zlib.compress(PNG), {"Content-Encoding": "gzip"})
        elif path == "/slow":
            time.sleep(1.0)
            self._reply(200, PNG, {})
        else:
            self._reply(404, b"", {})

    def _reply(
        self, status: int, body: bytes, headers: dict[str, str], length: bool = True
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The client may give up early, which is what some tests expect.
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def _stream_without_length(self, total: int) -> None:
        # HTTP/1.0 without Content-Length: the body ends when the connection closes.
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(total // 65536):
                self.wfile.write(b"\0" * 65536)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A loopback image server; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(url: str, **kwargs: Any) -> bytes:
    """fetch_image with loopback allowed and a 1 MB cap unless overridden."""
    kwargs.setdefault("allowed_networks", LOOPBACK)
    kwargs.setdefault("max_bytes", 1024 * 1024)
    kwargs.setdefault("timeout", 5.0)
    return fetch_image(url, **kwargs)


def test_fetch_returns_the_bytes(server: str) -> None:
    assert fetch(f"{server}/img.png") == PNG
    assert inspect_image(fetch(f"{server}/redirect-ok"), JPEG_PNG).format == "PNG"


def test_fetch_refuses_loopback_by_default(server: str) -> None:
    with pytest.raises(
        ImageRejected,
        match=r"^image URL refused: 127\.0\.0\.1 is not allowed \(loopback address\)$",
    ):
        fetch(f"{server}/img.png", allowed_networks=())


def test_fetch_refuses_a_redirect_to_a_private_address(server: str) -> None:
    with pytest.raises(ImageRejected, match=r"image URL refused: 10\.0\.0\.1"):
        fetch(f"{server}/redirect-private")


def test_fetch_stops_after_three_redirects(server: str) -> None:
    with pytest.raises(ImageRejected, match="more than 3 redirects"):
        fetch(f"{server}/loop")


def test_fetch_http_errors(server: str) -> None:
    with pytest.raises(ImageRejected, match=r"^could not fetch image: HTTP 404$"):
        fetch(f"{server}/missing")
    with pytest.raises(ImageFetchError, match="HTTP 503") as info:
        fetch(f"{server}/busy")
    assert info.value.retryable


def test_fetch_refuses_a_declared_length_over_the_cap(server: str) -> None:
    with pytest.raises(
        ImageRejected,
        match=r"image is 50 MB \(52,428,800 bytes\); the limit is 1 MB \(1,048,576 bytes\)",
    ):
        fetch(f"{server}/declared-huge")


def test_fetch_aborts_mid_stream_past_the_cap(server: str) -> None:
    with pytest.raises(ImageRejected, match="larger than 1 MB"):
        fetch(f"{server}/undeclared-huge")


def test_fetch_refuses_compressed_bodies(server: str) -> None:
    with pytest.raises(ImageRejected, match="Content-Encoding gzip"):
        fetch(f"{server}/gzip")


def test_fetch_timeout_is_retryable(server: str) -> None:
    with pytest.raises(ImageFetchError, match="timed out") as info:
        fetch(f"{server}/slow", timeout=0.2)
    assert info.value.retryable


def test_fetch_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ImageFetchError, match="ConnectError") as info:
        fetch(f"http://127.0.0.1:{port}/img.png")
    assert info.value.retryable


def test_fetch_refuses_other_schemes() -> None:
    with pytest.raises(ImageRejected, match="scheme must be https or http"):
        fetch("file:///etc/passwd")
