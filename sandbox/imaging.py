"""The sandbox's "model": a real, visible, deterministic edit of the input image.

The edit depends only on (prompt, seed, variant): a hue rotation and tint, a frame and a
band carrying the prompt text, all picked from a hash. Seed -1 is hashed like any other
seed, so "random" requests are still reproducible here (unlike the real vendors).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

# Ark SeedEdit `size=adaptive`: (listed ratio, width, height), in the documented order.
ARK_ADAPTIVE_SIZES: tuple[tuple[float, int, int], ...] = (
    (0.33, 512, 1536), (0.35, 544, 1536), (0.38, 576, 1536), (0.4, 608, 1536),
    (0.42, 640, 1536), (0.47, 640, 1376), (0.51, 672, 1312), (0.55, 704, 1280),
    (0.56, 736, 1312), (0.6, 768, 1280), (0.63, 768, 1216), (0.66, 800, 1216),
    (0.67, 832, 1248), (0.7, 832, 1184), (0.72, 832, 1152), (0.75, 864, 1152),
    (0.78, 896, 1152), (0.82, 896, 1088), (0.85, 928, 1088), (0.88, 960, 1088),
    (0.91, 992, 1088), (0.94, 1024, 1088), (0.97, 1024, 1056), (1.0, 1024, 1024),
    (1.06, 1056, 992), (1.1, 1088, 992), (1.17, 1120, 960), (1.24, 1152, 928),
    (1.29, 1152, 896), (1.33, 1152, 864), (1.42, 1184, 832), (1.46, 1216, 832),
    (1.5, 1248, 832), (1.56, 1248, 800), (1.62, 1248, 768), (1.67, 1280, 768),
    (1.74, 1280, 736), (1.82, 1280, 704), (1.78, 1312, 736), (1.86, 1312, 704),
    (1.95, 1312, 672), (2.0, 1344, 672), (2.05, 1376, 672), (2.1, 1408, 672),
    (2.2, 1408, 640), (2.25, 1440, 640), (2.3, 1472, 640), (2.35, 1504, 640),
    (2.4, 1536, 640), (2.53, 1536, 608), (2.67, 1536, 576), (2.82, 1536, 544),
    (3.0, 1536, 512),
)  # fmt: skip

# KIE `image_size` → aspect (w, h); `image_resolution` → long side in pixels.
KIE_ASPECTS: dict[str, tuple[int, int]] = {
    "square": (1, 1),
    "square_hd": (1, 1),
    "portrait_4_3": (3, 4),
    "portrait_3_2": (2, 3),
    "portrait_16_9": (9, 16),
    "landscape_4_3": (4, 3),
    "landscape_3_2": (3, 2),
    "landscape_16_9": (16, 9),
    "landscape_21_9": (21, 9),
}
RESOLUTION_LONG_SIDE = {"1K": 1024, "2K": 2048, "4K": 4096}

_Font = ImageFont.ImageFont | ImageFont.FreeTypeFont

# Real 4K outputs (4096 px) would make every test slow; the sandbox renders at most this.
MAX_RENDER_SIDE = 2048


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What Pillow sees in an input file."""

    format: str  # Pillow's name: JPEG, PNG, WEBP, ...
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class _Style:
    hue_shift: int
    tint: tuple[int, int, int]
    band_at_top: bool


def inspect_image(data: bytes) -> ImageInfo:
    """Identify an image file; raises ValueError when Pillow cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return ImageInfo(image.format or "", image.width, image.height)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError("not a readable image") from exc


def ark_adaptive_size(width: int, height: int) -> tuple[int, int]:
    """Ark's `adaptive` output size: the first table entry with the closest ratio."""
    ratio = width / height
    best = ARK_ADAPTIVE_SIZES[0]
    for entry in ARK_ADAPTIVE_SIZES[1:]:
        # Strictly smaller only, so ties go to the earlier entry as documented.
        if abs(entry[0] - ratio) < abs(best[0] - ratio):
            best = entry
    return best[1], best[2]


def size_for_aspect(aspect_w: int, aspect_h: int, long_side: int) -> tuple[int, int]:
    """Width and height with the given aspect whose longer side is `long_side`."""
    if aspect_w >= aspect_h:
        return long_side, _round8(long_side * aspect_h / aspect_w)
    return _round8(long_side * aspect_w / aspect_h), long_side


def kie_output_size(image_size: str, resolution: str) -> tuple[int, int]:
    """KIE's output size for an `image_size` × `image_resolution` pair (`square` = half scale)."""
    aspect_w, aspect_h = KIE_ASPECTS[image_size]
    long_side = RESOLUTION_LONG_SIDE[resolution]
    if image_size == "square":
        # Undocumented; follows the common convention that `square` is the small square.
        long_side //= 2
    return size_for_aspect(aspect_w, aspect_h, long_side)


def render_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size actually rendered: `size` scaled down to at most MAX_RENDER_SIDE."""
    width, height = size
    scale = min(1.0, MAX_RENDER_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def edit_image(
    source: bytes,
    *,
    prompt: str,
    seed: int,
    size: tuple[int, int],
    image_format: str,
    variant: int = 0,
    watermark: bool = False,
) -> bytes:
    """Edit `source` visibly and deterministically; return `image_format` (JPEG/PNG) bytes."""
    style = _style_for(prompt, seed, variant)
    with Image.open(io.BytesIO(source)) as opened:
        picture = ImageOps.exif_transpose(opened).convert("RGB")
    picture = ImageOps.fit(picture, render_size(size), Image.Resampling.LANCZOS)
    picture = _recolour(picture, style)
    _draw_frame_and_caption(picture, prompt, style)
    if watermark:
        _draw_watermark(picture)
    out = io.BytesIO()
    if image_format == "JPEG":
        picture.save(out, format="JPEG", quality=90)
    else:
        picture.save(out, format=image_format, compress_level=3)
    return out.getvalue()


def _style_for(prompt: str, seed: int, variant: int) -> _Style:
    digest = hashlib.sha256(f"{prompt}\x00{seed}\x00{variant}".encode()).digest()
    return _Style(
        # Never 0: a zero shift would leave colour images untouched.
        hue_shift=32 + digest[0] % 192,
        tint=(digest[1], digest[2], digest[3]),
        band_at_top=bool(digest[4] & 1),
    )


def _recolour(picture: Image.Image, style: _Style) -> Image.Image:
    hue, saturation, value = picture.convert("HSV").split()
    hue = hue.point(lambda h: (h + style.hue_shift) % 256)
    shifted = Image.merge("HSV", (hue, saturation, value)).convert("RGB")
    # The tint makes the edit visible on grey images too, where a hue shift does nothing.
    return Image.blend(shifted, Image.new("RGB", shifted.size, style.tint), 0.18)


def _draw_frame_and_caption(picture: Image.Image, prompt: str, style: _Style) -> None:
    width, height = picture.size
    draw = ImageDraw.Draw(picture)
    frame = max(2, min(width, height) // 64)
    draw.rectangle((0, 0, width - 1, height - 1), outline=style.tint, width=frame)

    band = max(12, height // 8)
    top = frame if style.band_at_top else height - frame - band
    draw.rectangle((frame, top, width - frame - 1, top + band), fill=_darken(style.tint))
    font = _font(max(8, band // 2))
    text = _fit_text(draw, prompt.replace("\n", " "), font, width - 4 * frame)
    draw.text((2 * frame, top + band // 2), text, fill=(255, 255, 255), font=font, anchor="lm")


def _draw_watermark(picture: Image.Image) -> None:
    width, height = picture.size
    draw = ImageDraw.Draw(picture)
    font = _font(max(8, height // 40))
    # Clear of the frame, which is at most min(width, height) // 64 wide.
    margin = max(8, min(width, height) // 32)
    position = (width - margin, height - margin)
    draw.text(position, "AI generated", fill=(255, 255, 255), font=font, anchor="rb")


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: _Font, room: int) -> str:
    if draw.textlength(text, font=font) <= room:
        return text
    # No band is wide enough for more than a few hundred characters; skip measuring the rest.
    text = text[:300]
    while text and draw.textlength(text + "…", font=font) > room:
        text = text[:-1]
    return text + "…"


def _font(size: int) -> _Font:
    try:
        return ImageFont.load_default(size=size)
    except ImportError:
        # Pillow without FreeType only has the fixed-size bitmap font.
        return ImageFont.load_default()


def _darken(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return (colour[0] // 3, colour[1] // 3, colour[2] // 3)


def _round8(value: float) -> int:
    return max(8, round(value / 8) * 8)
