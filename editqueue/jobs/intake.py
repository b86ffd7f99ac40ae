"""Turn a create request into a validated NewJob: catalog limits, images, URLs, defaults.

Bytes the client sends are checked and stored here, before the job exists, so a bad
image is a 422 and never a failed job; URLs are only vetted (SSRF) and fetched later.

Checking bytes means decoding every pixel (~0.4 s for a 36-Mpx PNG), so one request's
inline images are bounded by MAX_INLINE_PIXELS (a 413 past it, before any decoding),
each distinct image is decoded once however many jobs share it, and large decodes go
through the caller's ``run_blocking`` (the API hands them to a thread pool, so its event
loop keeps serving other requests meanwhile).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from editqueue.catalog import Model, resolve_model
from editqueue.config import Settings
from editqueue.errors import EditqueueError, InvalidImageError, InvalidRequest
from editqueue.ids import new_id
from editqueue.infra import netguard
from editqueue.infra.images import (
    ImageConstraints,
    ImageInfo,
    ImageRejected,
    header_pixels,
    inspect_image,
    parse_data_url,
)
from editqueue.infra.storage import Storage, StoredObject
from editqueue.jobs import routing
from editqueue.jobs.states import NewJob
from editqueue.schemas import JobCreate


@dataclasses.dataclass(frozen=True)
class Upload:
    """An image file part of a multipart request."""

    field: str
    data: bytes


T = TypeVar("T")
RunBlocking = Callable[..., Any]  # run_blocking(fn, *args) returns fn(*args)
# run_all(fn, [args, ...]) returns [fn(*args), ...], the calls running concurrently.
RunAll = Callable[[Callable[..., Any], list[tuple[Any, ...]]], list[Any]]

# Inline pixels one request may ask us to decode: ten images at the 36-Mpx model limit,
# i.e. one full Seedream job (~4 s of decoding). More must come as URLs or several requests.
MAX_INLINE_PIXELS = 360_000_000
# Work below these sizes takes a few ms: cheaper on the calling thread than queued.
_OFFLOAD_PIXELS = 2_000_000
OFFLOAD_BYTES = 1024 * 1024


class InlineImagesTooLarge(EditqueueError):
    """A request's inline images total more pixels than one request may have decoded."""

    status = 413
    code = "payload_too_large"
    title = "Inline images too large"


def call_directly(fn: Callable[..., T], *args: Any) -> T:
    """The default ``run_blocking``: just call."""
    return fn(*args)


class InlineImages:
    """One request's client-sent images: decoded once each, within a pixel budget."""

    def __init__(
        self,
        run_blocking: RunBlocking = call_directly,
        *,
        max_pixels: int = MAX_INLINE_PIXELS,
        run_all: RunAll | None = None,
    ) -> None:
        self._run = run_blocking
        # Given: `store` only queues, and `write_pending` writes the queue concurrently.
        self._run_all = run_all
        self._pending: list[tuple[Storage, str, bytes, str]] = []
        self._digests: dict[bytes, str] = {}
        self.max_pixels = max_pixels
        self.reserved_pixels = 0
        self._loaded: dict[str, bytes | ImageRejected] = {}
        self._pixels: dict[bytes, int] = {}
        self._checked: dict[tuple[bytes, ImageConstraints], ImageInfo | ImageRejected] = {}

    def load(self, ref: str) -> bytes:
        """The bytes of a data URL (decoded once per distinct URL); ImageRejected if bad."""
        if ref not in self._loaded:
            run = self._run if len(ref) > OFFLOAD_BYTES else call_directly
            try:
                self._loaded[ref] = run(parse_data_url, ref)[1]
            except ImageRejected as exc:
                self._loaded[ref] = exc
        return _result(self._loaded[ref])

    def reserve(self, field: str, data: bytes, constraints: ImageConstraints) -> None:
        """Count an image that will be decoded against the budget; 413 once it is exceeded."""
        if data in self._pixels:
            return
        pixels = header_pixels(data)
        if pixels is None or pixels > constraints.max_pixels or len(data) > constraints.max_bytes:
            return  # refused from its header or size, without decoding
        self._pixels[data] = pixels
        self.reserved_pixels += pixels
        if self.reserved_pixels > self.max_pixels:
            message = (
                f"the inline images of one request may total {self.max_pixels / 1e6:g} "
                f"megapixels; with {field} this one has {round(self.reserved_pixels / 1e6, 1):g} "
                "megapixels. Send larger images as URLs, or split the request"
            )
            raise InlineImagesTooLarge(message, errors=[{"field": field, "message": message}])

    def inspect(self, field: str, data: bytes, constraints: ImageConstraints) -> ImageInfo:
        """``inspect_image`` once per distinct image, large ones through ``run_blocking``."""
        key = (data, constraints)
        if key not in self._checked:
            self.reserve(field, data, constraints)
            run = self._run if self._pixels.get(data, 0) > _OFFLOAD_PIXELS else call_directly
            try:
                self._checked[key] = run(inspect_image, data, constraints)
            except ImageRejected as exc:
                self._checked[key] = exc
        return _result(self._checked[key])

    def store(self, storage: Storage, key: str, data: bytes, content_type: str) -> StoredObject:
        """``storage.put``, through ``run_blocking`` when it would block on a large write.

        With ``run_all``, the write is queued for ``write_pending`` and what it will have
        written is returned now (the key, size and digest do not depend on the write).
        """
        if self._run_all is not None:
            self._pending.append((storage, key, data, content_type))
            if data not in self._digests:
                self._digests[data] = hashlib.sha256(data).hexdigest()
            return StoredObject(key, len(data), self._digests[data], content_type)
        blocking = getattr(storage, "blocking_put", False) and len(data) > OFFLOAD_BYTES
        run = self._run if blocking else call_directly
        return run(storage.put, key, data, content_type)

    def write_pending(self) -> None:
        """Write what ``store`` queued, all at once; StorageError if any write failed.

        A batch of inline images is a thousand small files, each written durably (fsync
        of the file and of its directory): one after another that was most of the
        request; side by side, the file system commits many of them in one journal flush.
        """
        pending, self._pending = self._pending, []
        if pending and self._run_all is not None:
            self._run_all(_put, pending)


def _put(storage: Storage, key: str, data: bytes, content_type: str) -> StoredObject:
    return storage.put(key, data, content_type)


def _result(value: T | ImageRejected) -> T:
    if isinstance(value, ImageRejected):
        raise ImageRejected(str(value))
    return value


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
    if routing.vendor_pin(spec.provider) is not None:
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
    data: bytes, field: str, model: Model, storage: Storage, key: str, inline: InlineImages
) -> dict[str, Any]:
    try:
        info = inline.inspect(field, data, model.image_constraints)
    except ImageRejected as exc:
        raise InvalidImageError(str(exc), errors=[{"field": field, "message": str(exc)}]) from None
    stored = inline.store(storage, f"{key}.{info.ext}", data, info.content_type)
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


def _ref_field(spec: JobCreate, index: int, prefix: str) -> str:
    return f"{prefix}images[{index}]" if spec.images else f"{prefix}image"


def reserve_inline(
    spec: JobCreate, inline: InlineImages, *, uploads: Sequence[Upload] = (), field_prefix: str = ""
) -> None:
    """Count a request's inline images against the budget before any is decoded (413).

    Anything unreadable is skipped here: ``build_job`` reports it with its field.
    """
    model = resolve_model(spec.model)
    if model is None:
        return
    constraints = model.image_constraints
    for index, ref in enumerate(spec.image_refs()):
        if ref.startswith("data:"):
            try:
                data = inline.load(ref)
            except ImageRejected:
                continue
            inline.reserve(_ref_field(spec, index, field_prefix), data, constraints)
    for upload in uploads:
        inline.reserve(upload.field, upload.data, constraints)


def build_job(
    spec: JobCreate,
    *,
    tenant_id: str,
    uploads: Sequence[Upload] = (),
    settings: Settings,
    storage: Storage,
    field_prefix: str = "",
    inline: InlineImages | None = None,
) -> NewJob:
    """Validate a request against the catalog and store its image bytes; 422 on any violation.

    ``inline`` is the request's image budget and cache (one is made if not given); 413
    when the request's inline images exceed it.
    """
    inline = inline or InlineImages()
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
    reserve_inline(spec, inline, uploads=uploads, field_prefix=field_prefix)
    job_id = new_id("job")
    inputs: list[dict[str, Any]] = []
    for index, ref in enumerate(refs):
        field = _ref_field(spec, index, field_prefix)
        key = f"{tenant_id}/{job_id}/in/{len(inputs)}"
        if ref.startswith("data:"):
            try:
                data = inline.load(ref)
            except ImageRejected as exc:
                raise InvalidImageError(
                    str(exc), errors=[{"field": field, "message": str(exc)}]
                ) from None
            inputs.append(_store_bytes(data, field, model, storage, key, inline))
        else:
            _check_public_url(ref, field, settings, what="image URL")
            inputs.append({"source": "url", "url": ref, "key": None, "sha256": None})
    for upload in uploads:
        key = f"{tenant_id}/{job_id}/in/{len(inputs)}"
        inputs.append(_store_bytes(upload.data, upload.field, model, storage, key, inline))
    return NewJob(
        id=job_id,
        model=model.id,
        prompt=spec.prompt,
        params=_params(spec, model),
        inputs=inputs,
        provider_pin=spec.provider,
        routing=spec.routing,
        provider_options=spec.provider_options or {},
        webhook_url=spec.webhook_url,
        webhook_events=spec.effective_webhook_events(),
        metadata=spec.metadata or {},
        deadline_seconds=spec.deadline_seconds or settings.default_deadline_seconds,
    )
