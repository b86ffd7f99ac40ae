"""Turning a create request into a NewJob (editqueue/jobs/intake.py), without a database."""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import pytest
from PIL import Image

from editqueue.config import Settings
from editqueue.errors import InvalidImageError, InvalidRequest
from editqueue.infra.storage import MemoryStorage
from editqueue.jobs import intake
from editqueue.jobs.intake import InlineImages, InlineImagesTooLarge, Upload, build_job
from editqueue.providers.fake import png
from editqueue.schemas import JobCreate

SETTINGS = Settings(ark_api_key="k", kie_api_key="k")
PUBLIC = "https://93.184.215.14/in.png"  # a public literal: the guard needs no DNS


def data_url(data: bytes, fmt: str = "png") -> str:
    return f"data:image/{fmt};base64,{base64.b64encode(data).decode()}"


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: over a megabyte at 700 px."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def build(storage: MemoryStorage | None = None, **body: Any):
    body.setdefault("model", "seededit-3.0")
    body.setdefault("prompt", "make it blue")
    spec = JobCreate(**body)
    return build_job(
        spec,
        tenant_id="ten_1",
        settings=SETTINGS,
        storage=storage or MemoryStorage(),
    )


def refused(field: str, **body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        build(**body)
    assert caught.value.status == 422
    assert caught.value.errors[0]["field"] == field
    return caught.value


# -- what a valid request becomes ----------------------------------------------------------


def test_an_inline_image_is_checked_stored_and_described() -> None:
    storage = MemoryStorage()
    new = build(storage, image=data_url(png(64, 48)), metadata={"k": "v"})
    item = new.inputs[0]
    assert item["source"] == "upload" and (item["width"], item["height"]) == (64, 48)
    assert storage.get(item["key"]) == png(64, 48)
    assert item["key"] == f"ten_1/{new.id}/in/0.png"
    assert new.params == {"size": "adaptive", "seed": -1, "guidance_scale": 5.5, "watermark": False}
    assert new.metadata == {"k": "v"} and new.deadline_seconds == SETTINGS.default_deadline_seconds


def test_a_url_image_is_vetted_but_not_fetched() -> None:
    new = build(image=PUBLIC, deadline_seconds=60)
    assert new.inputs == [{"source": "url", "url": PUBLIC, "key": None, "sha256": None}]
    assert new.deadline_seconds == 60


def test_seedream_takes_outputs_aspect_ratio_and_uploads() -> None:
    storage = MemoryStorage()
    spec = JobCreate(
        model="seedream-4.0-edit",
        prompt="p",
        images=[data_url(png(32, 32))],
        n=3,
        aspect_ratio="4:3",
        seed=7,
        provider="kie",
    )
    upload = Upload("file", png(40, 40))
    new = build_job(spec, tenant_id="ten_1", uploads=[upload], settings=SETTINGS, storage=storage)
    assert new.params["n"] == 3 and new.params["resolution"] == "1K"
    assert new.params["aspect_ratio"] == "4:3" and new.params["seed"] == 7
    assert [i["width"] for i in new.inputs] == [32, 40]
    assert new.provider_pin == "kie"


def test_the_sandbox_pin_needs_no_configured_vendor() -> None:
    assert build(image=PUBLIC, provider="sandbox").provider_pin == "sandbox"


# -- what is refused, and where ------------------------------------------------------------


def test_an_unknown_model() -> None:
    assert "GET /v1/models" in refused("model", model="gpt-image-1", image=PUBLIC).detail


def test_a_prompt_longer_than_the_model_takes() -> None:
    refused("prompt", prompt="x" * 801, image=PUBLIC)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"size": "1024x1024"}, "size"),
        ({"aspect_ratio": "1:1"}, "aspect_ratio"),
        ({"provider": "kie"}, "provider"),  # does not serve seededit
        ({"provider": "vtrix"}, "provider"),  # serves it, not configured here
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"webhook_url": "https://127.0.0.1/hook"}, "webhook_url"),
        ({"webhook_url": "http://93.184.215.14/hook"}, "webhook_url"),
    ],
)
def test_parameters_seededit_does_not_take(body: dict, field: str) -> None:
    refused(field, image=PUBLIC, **body)


def test_seedream_takes_wxh_not_adaptive_and_at_most_six_outputs() -> None:
    refused("size", model="seedream-4.0-edit", image=PUBLIC, size="adaptive")
    refused("n", model="seededit-3.0", image=PUBLIC, n=2)


def test_the_image_count_is_checked_against_the_model() -> None:
    assert "takes 1 input image(s); got 2" in refused("images", images=[PUBLIC, PUBLIC]).detail
    many = [PUBLIC] * 10
    spec = JobCreate(model="seedream-4.0-edit", prompt="p", images=many)
    uploads = [Upload("file", png())]
    with pytest.raises(InvalidRequest, match="1–10 input image"):
        build_job(spec, tenant_id="t", uploads=uploads, settings=SETTINGS, storage=MemoryStorage())


def test_a_private_image_url_is_refused_with_its_field() -> None:
    refused("image", image="https://10.0.0.1/x.png")


@pytest.mark.parametrize(
    "ref", ["data:image/png;base64,!!!", data_url(b"not a png"), data_url(png(8, 8))]
)
def test_a_bad_inline_image_is_an_invalid_image(ref: str) -> None:
    with pytest.raises(InvalidImageError) as caught:
        build(images=[ref])
    assert caught.value.errors[0]["field"] == "images[0]"


def test_a_bad_upload_is_an_invalid_image_naming_its_part() -> None:
    spec = JobCreate(model="seededit-3.0", prompt="p")
    with pytest.raises(InvalidImageError) as caught:
        build_job(
            spec,
            tenant_id="t",
            uploads=[Upload("file", b"garbage")],
            settings=SETTINGS,
            storage=MemoryStorage(),
        )
    assert caught.value.errors[0]["field"] == "file"


# -- the inline-image budget and cache -----------------------------------------------------


def test_inline_pixels_past_the_budget_are_a_413() -> None:
    spec = JobCreate(model="seededit-3.0", prompt="p", image=data_url(png(64, 64)))
    with pytest.raises(InlineImagesTooLarge) as caught:
        build_job(
            spec,
            tenant_id="t",
            settings=SETTINGS,
            storage=MemoryStorage(),
            inline=InlineImages(max_pixels=1000),
        )
    assert caught.value.status == 413 and caught.value.errors[0]["field"] == "image"


def test_the_same_image_is_decoded_and_counted_once() -> None:
    calls: list[str] = []

    def run(fn, *args):
        calls.append(fn.__name__)
        return fn(*args)

    inline = InlineImages(run)
    constraints = intake.resolve_model("seededit-3.0").image_constraints
    data = png(64, 64)
    first = inline.inspect("a", data, constraints)
    assert inline.inspect("b", data, constraints) is first
    inline.reserve("c", data, constraints)
    assert inline.reserved_pixels == 64 * 64
    assert calls == []  # small work stays on the calling thread
    inline.reserve("d", b"no header", constraints)  # refused later, from its field
    assert inline.reserved_pixels == 64 * 64


def test_large_work_goes_through_run_blocking() -> None:
    calls: list[str] = []

    def run(fn, *args):
        calls.append(fn.__name__)
        return fn(*args)

    class SlowDisk(MemoryStorage):
        blocking_put = True

    big = noise_png(700)  # over a megabyte of PNG
    assert len(big) > intake.OFFLOAD_BYTES
    inline = InlineImages(run)
    ref = data_url(big)
    assert inline.load(ref) == big and inline.load(ref) == big
    constraints = intake.resolve_model("seededit-3.0").image_constraints
    inline.inspect("image", png(1500, 1500), constraints)
    inline.store(SlowDisk(), "t/j/in/0.png", big, "image/png")
    assert calls == ["parse_data_url", "inspect_image", "put"]


def test_an_invalid_data_url_is_remembered_as_invalid() -> None:
    inline = InlineImages()
    for _ in range(2):
        with pytest.raises(ValueError):  # the image check's refusal (infra/images.py)
            inline.load("data:image/png;base64,!!!")


def test_reserve_inline_skips_unknown_models_and_unreadable_images() -> None:
    inline = InlineImages(max_pixels=10)
    intake.reserve_inline(JobCreate(model="nope", prompt="p", image=data_url(png())), inline)
    bad = JobCreate(model="seededit-3.0", prompt="p", image="data:image/png;base64,!!!")
    intake.reserve_inline(bad, inline)
    assert inline.reserved_pixels == 0
    with pytest.raises(InlineImagesTooLarge):
        intake.reserve_inline(
            JobCreate(model="seededit-3.0", prompt="p"), inline, uploads=[Upload("f", png())]
        )
