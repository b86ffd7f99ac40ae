"""`client.jobs`: create (JSON, or multipart for files), get, list, wait, cancel, download."""

from __future__ import annotations

import asyncio
import builtins
import json
import mimetypes
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Required, TypedDict, TypeGuard, Unpack

import httpx

from editqueue.client._transport import AsyncTransport, Request, SyncTransport
from editqueue.client.errors import WaitTimeout
from editqueue.client.models import Job, JobEvent, Output
from editqueue.client.resources import _shared
from editqueue.client.resources._pages import apaginate, paginate

ImageInput = str | Path | bytes
DEFAULT_WAIT_TIMEOUT = 900.0
POLL_INTERVAL = 1.0


class JobFields(TypedDict, total=False):
    """Optional fields of `POST /v1/jobs` (see the API's Job object)."""

    size: str
    aspect_ratio: str
    resolution: str
    n: int
    seed: int
    guidance_scale: float
    watermark: bool
    provider: str
    provider_options: dict[str, Any]
    routing: str
    webhook_url: str
    webhook_events: list[str]
    metadata: dict[str, str]
    deadline_seconds: int


class JobCreateArgs(JobFields, total=False):
    """The keyword arguments of `jobs.create`: model and prompt, images, request options."""

    model: Required[str]
    prompt: Required[str]
    images: Sequence[ImageInput] | None
    idempotency_key: str | None
    wait: int | None


def _is_file(image: ImageInput) -> TypeGuard[Path | bytes]:
    return isinstance(image, (Path, bytes))


def _file_part(index: int, image: Path | bytes) -> tuple[str, tuple[str, bytes, str]]:
    if isinstance(image, Path):
        kind = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        return "image", (image.name, image.read_bytes(), kind)
    return "image", (f"image{index}", image, "application/octet-stream")


def _form_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """A job body as multipart fields: strings as they are, metadata as `metadata[KEY]`."""
    form: dict[str, Any] = {}
    for name, value in body.items():
        if name == "metadata":
            form.update({f"metadata[{k}]": v for k, v in value.items()})
        elif isinstance(value, str):
            form[name] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            form[name] = value  # repeated fields: images, webhook_events
        else:
            form[name] = json.dumps(value)
    return form


def create_request(
    model: str,
    prompt: str,
    images: Sequence[ImageInput] | None,
    idempotency_key: str | None,
    wait: int | None,
    fields: Mapping[str, Any],
) -> Request:
    """`POST /v1/jobs`: JSON, or multipart/form-data when an image is a Path or bytes."""
    headers = _shared.idempotency_headers(idempotency_key)
    if wait:
        headers["Prefer"] = f"wait={wait}"
    images = list(images or [])
    body: dict[str, Any] = {"model": model, "prompt": prompt, **fields}
    urls = [str(i) for i in images if not _is_file(i)]
    if urls:
        body["images"] = urls
    uploads = [i for i in images if _is_file(i)]
    if not uploads:
        return Request("POST", "/v1/jobs", json=body, headers=headers)
    files = [_file_part(n, image) for n, image in enumerate(uploads)]
    return Request("POST", "/v1/jobs", data=_form_fields(body), files=files, headers=headers)


def request_of(args: JobCreateArgs) -> Request:
    """The request of `jobs.create(**args)`: the named arguments apart, the rest job fields."""
    missing = [name for name in ("model", "prompt") if name not in args]
    if missing:
        raise TypeError(f"create() missing required keyword arguments: {', '.join(missing)}")
    fields: dict[str, Any] = dict(args)
    model, prompt = fields.pop("model"), fields.pop("prompt")
    images = fields.pop("images", None)
    key, wait = fields.pop("idempotency_key", None), fields.pop("wait", None)
    return create_request(model, prompt, images, key, wait, fields)


class _JobsBase:
    @staticmethod
    def _outputs(job: Job, directory: str | Path, name: str | None) -> list[tuple[Output, Path]]:
        several, stem = len(job.outputs) > 1, name or job.id
        return [(o, _shared.output_path(Path(directory), stem, o, several)) for o in job.outputs]

    @staticmethod
    def _check_time(deadline: float, job: Job, timeout: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"job {job.id} still {job.status} after {timeout:g}s")
        return remaining

    @staticmethod
    def _stream_usable(response: httpx.Response) -> bool:
        content_type = response.headers.get("content-type", "")
        return response.status_code == 200 and content_type.startswith("text/event-stream")


class Jobs(_JobsBase):
    """Edit jobs."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(self, **args: Unpack[JobCreateArgs]) -> Job:
        """Submit one job: `model=`, `prompt=`, and the optional `JobCreateArgs` fields.

        `images` may mix URLs, data URLs, Paths and raw bytes. An Idempotency-Key is
        generated unless given, so the SDK's retries never create the job twice. `wait=N`
        holds the request up to N s (`Prefer: wait`).
        """
        return Job.model_validate(self._t.send(request_of(args)).json())

    def get(self, job_id: str) -> Job:
        """One job, with fresh output links."""
        return Job.model_validate(self._t.send(Request("GET", f"/v1/jobs/{job_id}")).json())

    def list(self, **filters: Unpack[_shared.JobFilters]) -> Iterator[Job]:
        """Every matching job, newest first; `limit` is the page size, pages load lazily.

        `created_after` is inclusive, `created_before` exclusive.
        """
        params = _shared.list_params(**filters)
        return paginate(self._t, "/v1/jobs", params, Job)

    def cancel(self, job_id: str) -> Job:
        """Cancel a live job (`JobFinished` if it had ended already)."""
        response = self._t.send(Request("POST", f"/v1/jobs/{job_id}/cancel"))
        return Job.model_validate(response.json())

    def events(self, job_id: str) -> builtins.list[JobEvent]:
        """The job's audit trail."""
        data = self._t.send(Request("GET", f"/v1/jobs/{job_id}/events")).json()["data"]
        return [JobEvent.model_validate(e) for e in data]

    def wait(
        self, job_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT, poll_interval: float = 1.0
    ) -> Job:
        """Block until the job ends, following its event stream (polling if that fails)."""
        deadline = time.monotonic() + timeout
        cursor, streaming = _shared.StreamCursor(), True
        while True:
            job = self.get(job_id)
            if job.done:
                return job
            remaining = self._check_time(deadline, job, timeout)
            if streaming:
                streaming = self._follow(job_id, cursor, remaining)
            if not streaming:
                time.sleep(min(poll_interval, remaining))

    def _follow(self, job_id: str, cursor: _shared.StreamCursor, remaining: float) -> bool:
        """Read the stream until it closes (after the terminal event); False if unusable."""
        read_timeout = min(remaining, _shared.STREAM_READ_TIMEOUT)
        try:
            with self._t.stream(cursor.path(job_id), read_timeout, cursor.headers()) as response:
                if not self._stream_usable(response):
                    return False
                for line in response.iter_lines():
                    cursor.feed(line)
        except httpx.TimeoutException:
            return True  # quiet for a while: look at the job again
        except httpx.TransportError:
            return False
        return True

    def download(
        self, job: Job | str, directory: str | Path, *, name: str | None = None
    ) -> builtins.list[Path]:
        """Save the outputs as `DIR/<name or job id>[_<index>].<ext>`, checking their sha256.

        A file already holding the right bytes is not fetched again.
        """
        job = self.get(job) if isinstance(job, str) else job
        saved = []
        for output, target in self._outputs(job, directory, name):
            if not _shared.already_saved(target, output.sha256):
                _shared.save(target, self._t.download(output.url), output.sha256)
            saved.append(target)
        return saved


class AsyncJobs(_JobsBase):
    """Edit jobs (async)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(self, **args: Unpack[JobCreateArgs]) -> Job:
        """Submit one job (see `Jobs.create`)."""
        return Job.model_validate((await self._t.send(request_of(args))).json())

    async def get(self, job_id: str) -> Job:
        """One job, with fresh output links."""
        response = await self._t.send(Request("GET", f"/v1/jobs/{job_id}"))
        return Job.model_validate(response.json())

    def list(self, **filters: Unpack[_shared.JobFilters]) -> AsyncIterator[Job]:
        """Every matching job, newest first (`async for`); pages load lazily."""
        params = _shared.list_params(**filters)
        return apaginate(self._t, "/v1/jobs", params, Job)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a live job (`JobFinished` if it had ended already)."""
        response = await self._t.send(Request("POST", f"/v1/jobs/{job_id}/cancel"))
        return Job.model_validate(response.json())

    async def events(self, job_id: str) -> builtins.list[JobEvent]:
        """The job's audit trail."""
        response = await self._t.send(Request("GET", f"/v1/jobs/{job_id}/events"))
        return [JobEvent.model_validate(e) for e in response.json()["data"]]

    async def wait(
        self, job_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT, poll_interval: float = 1.0
    ) -> Job:
        """Wait until the job ends, following its event stream (polling if that fails)."""
        deadline = time.monotonic() + timeout
        cursor, streaming = _shared.StreamCursor(), True
        while True:
            job = await self.get(job_id)
            if job.done:
                return job
            remaining = self._check_time(deadline, job, timeout)
            if streaming:
                streaming = await self._follow(job_id, cursor, remaining)
            if not streaming:
                await asyncio.sleep(min(poll_interval, remaining))

    async def _follow(self, job_id: str, cursor: _shared.StreamCursor, remaining: float) -> bool:
        read_timeout = min(remaining, _shared.STREAM_READ_TIMEOUT)
        path, headers = cursor.path(job_id), cursor.headers()
        try:
            async with self._t.stream(path, read_timeout, headers) as response:
                if not self._stream_usable(response):
                    return False
                async for line in response.aiter_lines():
                    cursor.feed(line)
        except httpx.TimeoutException:
            return True
        except httpx.TransportError:
            return False
        return True

    async def download(
        self, job: Job | str, directory: str | Path, *, name: str | None = None
    ) -> builtins.list[Path]:
        """Save the outputs as `DIR/<name or job id>[_<index>].<ext>`, checking their sha256.

        A file already holding the right bytes is not fetched again.
        """
        job = await self.get(job) if isinstance(job, str) else job
        saved = []
        for output, target in self._outputs(job, directory, name):
            if not _shared.already_saved(target, output.sha256):
                _shared.save(target, await self._t.download(output.url), output.sha256)
            saved.append(target)
        return saved
