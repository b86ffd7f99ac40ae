"""The sandbox's image edit: deterministic, visible, sized like the vendors' outputs."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from sandbox.imaging import (
    MAX_RENDER_SIDE,
    ark_adaptive_size,
    edit_image,
    inspect_image,
    kie_output_size,
    render_size,
)


def _picture(size: tuple[int, int] = (320, 240), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (40, 120, 200) if mode == "RGB" else 128).save(out, format="PNG")
    return out.getvalue()


def _edit(source: bytes, prompt: str = "make it blue", seed: int = 7, **kwargs: Any) -> bytes:
    options = {"size": (320, 240), "image_format": "PNG"} | kwargs
    return edit_image(source, prompt=prompt, seed=seed, **options)


def _mean_difference(a: bytes, b: bytes) -> float:
    first = Image.open(io.BytesIO(a)).convert("RGB")
    second = Image.open(io.BytesIO(b)).convert("RGB").resize(first.size)
    return sum(ImageStat.Stat(ImageChops.difference(first, second)).mean) / 3


def test_same_prompt_and_seed_give_the_same_bytes() -> None:
    source = _picture()
    assert _edit(source) == _edit(source)


@pytest.mark.parametrize(
    "change", [{"prompt": "make it red"}, {"seed": 8}, {"variant": 1}], ids=str
)
def test_a_different_prompt_seed_or_variant_gives_a_different_image(change: dict) -> None:
    source = _picture()
    assert _edit(source, **change) != _edit(source)


def test_seed_minus_one_is_still_deterministic() -> None:
    source = _picture()
    assert _edit(source, seed=-1) == _edit(source, seed=-1)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_the_edit_is_visible(mode: str) -> None:
    # Grey input too: a hue rotation alone would leave it unchanged.
    source = _picture(mode=mode)
    edited = _edit(source)
    assert edited != source
    assert _mean_difference(source, edited) > 10


@pytest.mark.parametrize(("image_format", "size"), [("JPEG", (1152, 864)), ("PNG", (576, 1024))])
def test_output_has_the_requested_format_and_size(image_format: str, size: tuple) -> None:
    info = inspect_image(_edit(_picture(), size=size, image_format=image_format))
    assert (info.format, info.width, info.height) == (image_format, *size)


def test_huge_outputs_are_rendered_at_the_cap() -> None:
    assert render_size((4096, 3072)) == (MAX_RENDER_SIDE, 1536)
    assert render_size((1024, 768)) == (1024, 768)


@pytest.mark.parametrize(
    ("input_size", "expected"),
    [
        ((512, 512), (1024, 1024)),
        ((640, 480), (1152, 864)),  # 1.333 → the 1.33 entry
        ((480, 640), (864, 1152)),  # 0.75
        ((1600, 900), (1312, 736)),  # 1.778 → the 1.78 entry, listed after 1.82
        ((2000, 600), (1536, 512)),  # beyond the table: its last and first entries
        ((600, 2000), (512, 1536)),
    ],
)
def test_ark_adaptive_size_takes_the_closest_ratio(input_size: tuple, expected: tuple) -> None:
    assert ark_adaptive_size(*input_size) == expected


def test_ark_adaptive_ties_go_to_the_earlier_entry() -> None:
    # 1.80 is as far from 1.82 as from 1.78; 1.82 comes first in the documented list.
    assert ark_adaptive_size(1800, 1000) == (1280, 704)


@pytest.mark.parametrize(
    ("image_size", "resolution", "expected"),
    [
        ("square_hd", "1K", (1024, 1024)),
        ("square", "1K", (512, 512)),
        ("landscape_4_3", "4K", (4096, 3072)),  # the one size KIE documents
        ("portrait_16_9", "1K", (576, 1024)),
        ("landscape_21_9", "2K", (2048, 880)),
    ],
)
def test_kie_output_size(image_size: str, resolution: str, expected: tuple) -> None:
    assert kie_output_size(image_size, resolution) == expected


def test_inspect_image_refuses_non_images() -> None:
    with pytest.raises(ValueError):
        inspect_image(b"not an image")
