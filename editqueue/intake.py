"""Turn a create request into a validated NewJob: catalog limits, images, URLs, defaults.

Bytes the client sends are checked and stored here, before the job exists, so a bad
image is a 422 and never a failed job; URLs are only vetted (SSRF) and fetched later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from editqueue import netguard
from editqueue.catalog import Model, resolve_model
from editqueue.config import Settings
from editqueue.errors import InvalidImageError, InvalidRequest
from editqueue.ids import new_id
from editqueue.images import InvalidImage, inspect_image, parse_data_url
from editqueue.jobs import NewJob
from editqueue.schemas import JobCreate
from editqueue.storage import Storage


@dataclasses.dataclass(frozen=True)
class Upload:
    """An image file part of a multipart request."""

    field: str
    data: bytes


def _problem(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, errors=[{"field": field, "message": message}])


def _check_public_url(url: str, field: str, settings: Settings, *, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise _problem(field, f"{what} must be an https URL")
    try:
        netguard.check_url(url, settings.allow_private_urls)
    except netguard.UnsafeURL as exc:
        raise _problem(field, f"{what} is not allowed: {exc}") from None
    if parts.scheme == "http" and not settings.allow_private_urls:
        raise _problem(field, f"{what} must use https")


def _resolve(spec: JobCreate, field_prefix: str) -> Model:
    model = resolve_model(spec.model)
    if model is None:
        raise _problem(f"{field_prefix}model", f"unknown model {spec.model!r}; see GET /v1/models")
    return model


def _check_params(spec: JobCreate, model: Model, settings: Settings, prefix: str) -> None:
    if len(spec.prompt) > model.max_prompt_chars:
        raise _problem(
            f"{prefix}prompt",
            f"prompt is {len(spec.prompt)} characters; {model.id} accepts at most "
            f"{model.max_prompt_chars}",
        )
    if model.sizes == "adaptive" and spec.size not in (None, "adaptive"):
        raise _problem(f"{prefix}size", f"{model.id} only supports size 'adaptive'")
    if model.sizes != "adaptive" and spec.size == "adaptive":
        raise _problem(f"{prefix}size", f"{model.id} takes size as WxH, or aspect_ratio")
    if not model.supports_aspect_ratio:
        for name in ("aspect_ratio", "resolution"):
            if getattr(spec, name) is not None:
                raise _problem(f"{prefix}{name}", f"{model.id} does not take {name}")
    if spec.n is not None and spec.n > model.max_outputs:
        raise _problem(f"{prefix}n", f"{model.id} produces at most {model.max_outputs} image(s)")
    if spec.provider is not None and spec.provider != "sandbox":
        if spec.provider not in model.providers:
            raise _problem(
                f"{prefix}provider", f"provider {spec.provider!r} does not serve {model.id}"
            )
        if spec.provider not in settings.configured_providers():
            raise _problem(
                f"{prefix}provider", f"provider {spec.provider!r} is not configured on this server"
            )
    if spec.webhook_url is not None:
        _check_public_url(spec.webhook_url, f"{prefix}webhook_url", settings, what="webhook_url")


def _params(spec: JobCreate, model: Model) -> dict[str, Any]:
    params: dict[str, Any] = {
        "size": spec.size or model.default_size,
        "seed": -1 if spec.seed is None else spec.seed,
        "guidance_scale": (
            model.default_guidance_scale if spec.guidance_scale is None else spec.guidance_scale
        ),
        "watermark": bool(spec.watermark),
    }
    if model.max_outputs > 1:
        params["n"] = spec.n or 1
    if model.supports_aspect_ratio:
        params["aspect_ratio"] = spec.aspect_ratio
        params["resolution"] = spec.resolution or ("1K" if spec.aspect_ratio else None)
    return {k: v for k, v in params.items() if v is not None}


def _store_bytes(
    data: bytes, field: str, model: Model, storage: Storage, key: str
) -> dict[str, Any]:
    try:
        info = inspect_image(data, model.image_constraints)
    except InvalidImage as exc:
        raise InvalidImageError(str(exc), errors=[{"field": field, "message": str(exc)}]) from None
    stored = storage.put(f"{key}.{info.ext}", data, info.content_type)
    return {
        "source": "upload",
        "key": stored.key,
        "url": None,
        "sha256": stored.sha256,
        "content_type": info.content_type,
        "width": info.width,
        "height": info.height,
        "bytes": stored.size,
    }


def build_job(
    spec: JobCreate,
    *,
    tenant_id: str,
    uploads: Sequence[Upload] = (),
    settings: Settings,
    storage: Storage,
    field_prefix: str = "",
) -> NewJob:
    """Validate a request against the catalog and store its image bytes; 422 on any violation."""
    model = _resolve(spec, field_prefix)
    _check_params(spec, model, settings, field_prefix)
    refs = spec.image_refs()
    count = len(refs) + len(uploads)
    if not model.min_images <= count <= model.max_images:
        expected = (
            str(model.max_images)
            if model.min_images == model.max_images
            else f"{model.min_images}–{model.max_images}"
        )
        raise _problem(
            f"{field_prefix}images", f"{model.id} takes {expected} input image(s); got {count}"
        )
    job_id = new_id("job")
    inputs: list[dict[str, Any]] = []
    for index, ref in enumerate(refs):
        field = f"{field_prefix}images[{index}]" if spec.images else f"{field_prefix}image"
        key = f"{tenant_id}/{job_id}/in/{len(inputs)}"
        if ref.startswith("data:"):
            try:
                _, data = parse_data_url(ref)
            except InvalidImage as exc:
                raise InvalidImageError(
                    str(exc), errors=[{"field": field, "message": str(exc)}]
                ) from None
            inputs.append(_store_bytes(data, field, model, storage, key))
        else:
            _check_public_url(ref, field, settings, what="image URL")
            inputs.append({"source": "url", "url": ref, "key": None, "sha256": None})
    for upload in uploads:
        key = f"{tenant_id}/{job_id}/in/{len(inputs)}"
        inputs.append(_store_bytes(upload.data, upload.field, model, storage, key))
    return NewJob(
        id=job_id,
        model=model.id,
        prompt=spec.prompt,
        params=_params(spec, model),
        inputs=inputs,
        provider_pin=spec.provider,
        provider_options=spec.provider_options or {},
        webhook_url=spec.webhook_url,
        webhook_events=spec.effective_webhook_events(),
        metadata=spec.metadata or {},
        deadline_seconds=spec.deadline_seconds or settings.default_deadline_seconds,
    )
