"""A job's input images, made ready for a vendor: fetched (SSRF-safe), checked, stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from editqueue.catalog import resolve_model
from editqueue.config import Settings
from editqueue.infra.images import fetch_image, inspect_image
from editqueue.infra.storage import Storage
from editqueue.models import Job
from editqueue.providers.base import EditRequest, InputImage


@dataclass(frozen=True)
class PreparedInputs:
    """The images to send, and the job's new `inputs` when some were fetched now."""

    images: list[InputImage]
    # Written by the step's next UPDATE of the job (the attempt's count, or its reschedule),
    # so a retry never fetches (or sees a changed image) again; None: nothing to write.
    fetched: list[dict[str, Any]] | None


def prepare_inputs(
    job: Job, *, storage: Storage, settings: Settings, client: httpx.Client
) -> PreparedInputs:
    """Load stored inputs; fetch URL inputs once, check them against the model, store them.

    Raises ImageRejected (the job fails), ImageFetchError or StorageError (retry later).
    """
    model = resolve_model(job.model)
    if model is None:
        raise ValueError(f"unknown model {job.model}")
    images: list[InputImage] = []
    inputs = [dict(i) for i in job.inputs]
    fetched = False
    for index, item in enumerate(inputs):
        if item.get("key"):
            data = storage.get(item["key"])
        else:
            data = fetch_image(
                item["url"],
                allowed_networks=settings.allow_private_urls,
                max_bytes=model.image_constraints.max_bytes,
                client=client,
            )
            info = inspect_image(data, model.image_constraints)
            stored = storage.put(
                f"{job.tenant_id}/{job.id}/in/{index}.{info.ext}", data, info.content_type
            )
            item.update(
                key=stored.key,
                sha256=stored.sha256,
                content_type=info.content_type,
                width=info.width,
                height=info.height,
                bytes=stored.size,
            )
            fetched = True
        link = storage.signed_url(item["key"], settings.output_link_ttl)
        images.append(
            InputImage(
                data=data,
                content_type=item["content_type"],
                url=link.url,
                width=item["width"],
                height=item["height"],
            )
        )
    if not fetched:
        return PreparedInputs(images, None)
    job.inputs = inputs
    return PreparedInputs(images, inputs)


def edit_request(job: Job, images: list[InputImage], *, callback_url: str | None) -> EditRequest:
    """The vendor-neutral request for this job."""
    params: dict[str, Any] = job.params or {}
    return EditRequest(
        job_id=job.id,
        model=job.model,
        prompt=job.prompt,
        images=images,
        size=params.get("size"),
        aspect_ratio=params.get("aspect_ratio"),
        resolution=params.get("resolution"),
        n=params.get("n", 1),
        seed=params.get("seed"),
        guidance_scale=params.get("guidance_scale"),
        watermark=bool(params.get("watermark", False)),
        provider_options=job.provider_options or {},
        callback_url=callback_url,
    )
