"""A vendor's results, copied into our storage at once (vendor links die within hours)."""

from __future__ import annotations

from typing import Any

import httpx

from editqueue.infra.images import ImageConstraints, ImageRejected, inspect_image
from editqueue.infra.storage import Storage
from editqueue.models import Job
from editqueue.providers.base import OutputRef

# What we accept back from a vendor: any common image, generously sized.
OUTPUT_CONSTRAINTS = ImageConstraints(
    formats=frozenset({"JPEG", "PNG", "WEBP"}),
    min_side_exclusive=0,
    max_ratio_exclusive=1000.0,
    max_bytes=64 * 1024 * 1024,
    max_pixels=100_000_000,
)


class UnusableResult(Exception):
    """The vendor's result is not a usable image (a vendor error, not ours)."""


def store_outputs(
    job: Job, refs: list[OutputRef], *, storage: Storage, client: httpx.Client
) -> list[dict[str, Any]]:
    """Download or decode each result, check it is an image, store it with its sha256.

    Raises UnusableResult, httpx.HTTPError (download trouble) or StorageError.
    """
    return [_store_one(job, index, ref, storage, client) for index, ref in enumerate(refs)]


def _store_one(
    job: Job, index: int, ref: OutputRef, storage: Storage, client: httpx.Client
) -> dict[str, Any]:
    data = ref.data
    if data is None:
        if not ref.url:
            raise UnusableResult("vendor returned an output without a URL or data")
        response = client.get(ref.url)
        response.raise_for_status()
        data = response.content
    try:
        info = inspect_image(data, OUTPUT_CONSTRAINTS)
    except ImageRejected as exc:
        raise UnusableResult(f"vendor output {index} is not a usable image: {exc}") from None
    stored = storage.put(
        f"{job.tenant_id}/{job.id}/out/{index}.{info.ext}", data, info.content_type
    )
    return {
        "index": index,
        "key": stored.key,
        "content_type": info.content_type,
        "width": info.width,
        "height": info.height,
        "bytes": stored.size,
        "sha256": stored.sha256,
    }
