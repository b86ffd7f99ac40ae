"""`editqueue submit` and `editqueue jobs list|get|wait|cancel`: bulk work over the HTTP API.

`submit` turns files, folders or a JSONL manifest into batches of at most 1,000 jobs. Each
batch is sent with an Idempotency-Key derived from its content and parameters, so an
interrupted run can simply be started again: batches already sent are replayed by the
server, never created twice. A file that cannot be submitted (unreadable, not an image, over
the model's limits) is skipped with a line saying why; the rest go ahead.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from editqueue.catalog import resolve_model
from editqueue.client import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_API_URL,
    Client,
    ClientError,
    Job,
    WaitTimeout,
)
from editqueue.infra.images import ImageConstraints, ImageRejected, inspect_image
from editqueue.jobs.status import TERMINAL

F = TypeVar("F", bound=Callable[..., Any])

BATCH_LIMIT = 1000
IMAGE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
RESULTS_FILE = "results.jsonl"
POLL_SECONDS = 1.0
# For models the catalog does not know, the server decides; check only what every model needs.
ANY_MODEL_IMAGES = ImageConstraints(formats=frozenset({"JPEG", "PNG", "WEBP"}))


# -- shared plumbing -------------------------------------------------------------------------


def api_options(command: F) -> F:
    """The --api-url/--api-key options (or EDITQUEUE_API_URL / EDITQUEUE_API_KEY)."""
    command = click.option(
        "--api-key",
        envvar=API_KEY_ENV,
        show_envvar=True,
        help="API key (Bearer).",
    )(command)
    return click.option(
        "--api-url",
        envvar=API_URL_ENV,
        show_envvar=True,
        default=DEFAULT_API_URL,
        show_default=True,
        help="Base URL of the API.",
    )(command)


@contextlib.contextmanager
def api_client(api_url: str, api_key: str | None) -> Iterator[Client]:
    """A client whose errors (missing key, unreachable API, problem+json) become CLI errors."""
    try:
        with Client(api_url, api_key) as client:
            yield client
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _plain(job: Job) -> dict[str, Any]:
    """A job as the API's JSON."""
    return job.model_dump(mode="json")


# -- inputs ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Item:
    """One job to submit: where it came from, and its body (without the batch defaults)."""

    name: str
    body: dict[str, Any]

    @property
    def digest(self) -> str:
        """A hash of the item's content and parameters."""
        canonical = json.dumps(self.body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class Skip(Exception):
    """One input cannot be submitted; the message says why."""


def _constraints(model: str) -> ImageConstraints:
    known = resolve_model(model)
    return known.image_constraints if known else ANY_MODEL_IMAGES


def _data_url(path: Path, constraints: ImageConstraints) -> str:
    """The file as a data URL, once it passed the model's image checks (else Skip)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Skip(f"cannot read it: {exc.strerror}") from None
    try:
        info = inspect_image(data, constraints)
    except ImageRejected as exc:
        raise Skip(str(exc)) from None
    return f"data:{info.content_type};base64,{base64.b64encode(data).decode()}"


def _image_ref(value: str, base: Path, constraints: ImageConstraints) -> str:
    if value.startswith(("https://", "http://", "data:")):
        return value
    path = (base / value).expanduser()
    try:
        return _data_url(path, constraints)
    except Skip as exc:
        raise Skip(f"{path}: {exc}") from None


def _folder_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _manifest_entry(line: str, path: Path, number: int, model: str) -> Item:
    try:
        entry = json.loads(line)
    except ValueError:
        raise Skip("not a JSON object") from None
    if not isinstance(entry, dict):
        raise Skip("not a JSON object")
    name = str(entry.pop("name", None) or f"{path.stem}-{number}")
    constraints = _constraints(str(entry.get("model") or model))
    if isinstance(entry.get("image"), str):
        entry["image"] = _image_ref(entry["image"], path.parent, constraints)
    if isinstance(entry.get("images"), list):
        entry["images"] = [_image_ref(str(v), path.parent, constraints) for v in entry["images"]]
    return Item(name=name, body=entry)


@dataclasses.dataclass
class Collected:
    """The jobs to submit, and a line per input left out."""

    items: list[Item] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)

    def add_file(self, name: str, path: Path, constraints: ImageConstraints) -> None:
        try:
            self.items.append(Item(name=name, body={"image": _data_url(path, constraints)}))
        except Skip as exc:
            self.skipped.append(f"{path}: {exc}")

    def add_manifest(self, path: Path, model: str) -> None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            self.skipped.append(f"{path}: cannot read it: {getattr(exc, 'strerror', exc)}")
            return
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    self.items.append(_manifest_entry(line, path, number, model))
                except Skip as exc:
                    self.skipped.append(f"{path}:{number}: {exc}")


def collect_items(sources: Sequence[str], model: str) -> Collected:
    """Jobs from image files, folders (recursively) and `.jsonl` manifests, in a stable order.

    Every image is checked here against `model`'s constraints, so one bad file is skipped
    instead of failing the whole batch on the server.
    """
    found = Collected()
    constraints = _constraints(model)
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            for image in _folder_images(path):
                stem = image.relative_to(path).with_suffix("").as_posix().replace("/", "__")
                found.add_file(stem, image, constraints)
        elif path.suffix.lower() == ".jsonl" and path.is_file():
            found.add_manifest(path, model)
        elif path.is_file():
            found.add_file(path.stem, path, constraints)
        else:
            found.skipped.append(f"{source}: no such file or folder")
    return found


def _parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint=what)
        out[name] = value
    return out


def _param_values(pairs: Sequence[str]) -> dict[str, Any]:
    # Values are JSON when they parse as JSON (numbers, booleans), strings otherwise.
    out: dict[str, Any] = {}
    for name, raw in _parse_pairs(pairs, "--param").items():
        try:
            out[name] = json.loads(raw)
        except ValueError:
            out[name] = raw
    return out


def batch_key(items: Sequence[Item], defaults: dict[str, Any]) -> str:
    """The Idempotency-Key of a batch: a hash of its items and the shared parameters."""
    digest = hashlib.sha256(json.dumps(defaults, sort_keys=True).encode())
    for item in items:
        digest.update(item.digest.encode())
    return f"editqueue-cli-{digest.hexdigest()}"


# -- progress ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """A one-line live view of submitted / running / done / failed, on standard error."""

    total: int
    submitted: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.monotonic)
    _last_line: str = ""
    _last_print: float = 0.0

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in TERMINAL)

    def line(self) -> str:
        done = self.counts.get("succeeded", 0)
        failed = self.counts.get("failed", 0) + self.counts.get("canceled", 0)
        width = 24
        filled = int(width * self.finished / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        return (
            f"[{bar}] submitted {self.submitted}/{self.total}  "
            f"running {self.counts.get('running', 0)}  done {done}  failed {failed}  "
            f"{int(time.monotonic() - self.started)}s"
        )

    def show(self, *, force: bool = False) -> None:
        line = self.line()
        interactive = sys.stderr.isatty()
        if interactive:
            click.echo(f"\r{line}", nl=False, err=True)
        elif force or (line != self._last_line and time.monotonic() - self._last_print > 5):
            # Logs get a line now and then, not one per poll.
            click.echo(line, err=True)
            self._last_print = time.monotonic()
        self._last_line = line

    def close(self) -> None:
        if sys.stderr.isatty():
            click.echo("", err=True)
        else:
            self.show(force=True)


# -- submit ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Sent:
    """A batch as sent: its id, its items in order and its job ids."""

    batch_id: str
    items: list[Item]
    job_ids: list[str]
    replayed: bool


def _submit_batches(
    client: Client,
    items: list[Item],
    defaults: dict[str, Any],
    metadata: dict[str, str],
    batch_size: int,
    progress: Progress,
) -> list[Sent]:
    sent = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        try:
            batch = client.batches.create(
                jobs=[item.body for item in chunk],
                defaults=defaults,
                metadata=metadata,
                idempotency_key=batch_key(chunk, defaults),
            )
        except ClientError as exc:
            raise click.ClickException(_name_items(str(exc), chunk)) from None
        sent.append(Sent(batch.id, chunk, batch.job_ids, batch.replayed))
        progress.submitted += len(chunk)
        progress.show()
    return sent


def _name_items(message: str, chunk: Sequence[Item]) -> str:
    """Say which input a `jobs[N]` error is about."""
    lines = []
    for line in message.splitlines():
        if line.strip().startswith("jobs["):
            index = int(line.strip()[5:].split("]", 1)[0])
            if 0 <= index < len(chunk):
                line += f"   ({chunk[index].name})"
        lines.append(line)
    return "\n".join(lines)


def _follow(client: Client, sent: Sequence[Sent], progress: Progress) -> None:
    while True:
        totals: dict[str, int] = {}
        for batch in sent:
            for status, count in client.batches.get(batch.batch_id).counts.model_dump().items():
                totals[status] = totals.get(status, 0) + count
        progress.counts = totals
        progress.show()
        if progress.finished >= progress.total:
            return
        time.sleep(POLL_SECONDS)


def _save_outputs(client: Client, job: Job, name: str, out: Path) -> list[dict]:
    paths = client.jobs.download(job, out, name=name)
    return [
        {
            "path": path.name,
            "sha256": output.sha256,
            "content_type": output.content_type,
            "width": output.width,
            "height": output.height,
        }
        for output, path in zip(job.outputs, paths, strict=True)
    ]


def _write_results(client: Client, sent: Sequence[Sent], out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, int] = {}
    used: set[str] = set()
    lines = []
    for batch in sent:
        for item, job_id in zip(batch.items, batch.job_ids, strict=True):
            job = client.jobs.get(job_id)
            name = item.name if item.name not in used else f"{item.name}-{job_id}"
            used.add(name)
            outputs = _save_outputs(client, job, name, out) if job.status == "succeeded" else []
            summary[job.status] = summary.get(job.status, 0) + 1
            record = {
                "input": item.name,
                "job_id": job_id,
                "batch_id": batch.batch_id,
                "status": job.status,
                "error": job.error.model_dump(mode="json") if job.error else None,
                "outputs": outputs,
            }
            lines.append(json.dumps(record, ensure_ascii=False))
    manifest = out / RESULTS_FILE
    partial = manifest.with_name(manifest.name + ".part")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    partial.replace(manifest)
    return summary


@click.command("submit")
@click.argument("sources", nargs=-1, required=True)
@click.option("--model", default="seededit-3.0", show_default=True, help="Model for every job.")
@click.option("--prompt", help="Prompt for every job (a manifest line may set its own).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Another job field for every job, e.g. seed=7, aspect_ratio=4:3 (repeatable).",
)
@click.option("--metadata", "metadata", multiple=True, metavar="KEY=VALUE", help="Job metadata.")
@click.option("--wait", is_flag=True, help="Follow the jobs until every one has ended.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Download every output here, with a {RESULTS_FILE} of results (implies --wait).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, BATCH_LIMIT),
    default=BATCH_LIMIT,
    show_default=True,
    help="Jobs per batch.",
)
@api_options
def submit_command(
    sources: tuple[str, ...],
    model: str,
    prompt: str | None,
    params: tuple[str, ...],
    metadata: tuple[str, ...],
    wait: bool,
    out: Path | None,
    batch_size: int,
    api_url: str,
    api_key: str | None,
) -> None:
    """Submit edits of image FILES, FOLDERS or JSONL manifests, in batches.

    A manifest has one JSON object per line: `image` (a path relative to the manifest, or a
    URL) or `images`, and any field of POST /v1/jobs (`prompt`, `seed`, …) overriding the
    options; `name` names its outputs. Re-running the same command submits nothing twice.
    An input that cannot be submitted is skipped with a line saying why; exits 1 if nothing
    was left to submit, and with --wait if any job did not succeed.
    """
    collected = collect_items(sources, model)
    for line in collected.skipped:
        click.echo(f"skipped {line}", err=True)
    items = collected.items
    if not items:
        raise click.ClickException("no images to submit in the given files or folders")
    defaults: dict[str, Any] = {"model": model, **_param_values(params)}
    if prompt is not None:
        defaults["prompt"] = prompt
    job_metadata = _parse_pairs(metadata, "--metadata")
    if job_metadata:
        defaults["metadata"] = job_metadata
    progress = Progress(total=len(items))
    with api_client(api_url, api_key) as client:
        sent = _submit_batches(client, items, defaults, {}, batch_size, progress)
        replayed = sum(len(s.items) for s in sent if s.replayed)
        summary: dict[str, int] = {}
        if wait or out is not None:
            _follow(client, sent, progress)
            summary = dict(progress.counts)
        progress.close()
        if out is not None:
            summary = _write_results(client, sent, out)
    _print_summary(sent, replayed, summary, out, len(collected.skipped))
    if summary and summary.get("succeeded", 0) < len(items):
        sys.exit(1)


def _print_summary(
    sent: Sequence[Sent], replayed: int, summary: dict[str, int], out: Path | None, skipped: int
) -> None:
    total = sum(len(s.items) for s in sent)
    left_out = f", {skipped} input(s) skipped" if skipped else ""
    click.echo(
        f"{total} jobs in {len(sent)} batch(es): {total - replayed} new, "
        f"{replayed} already submitted{left_out}",
        err=True,
    )
    for batch in sent:
        click.echo(f"  {batch.batch_id}  {len(batch.items)} jobs", err=True)
    if summary:
        parts = [f"{summary.get(s, 0)} {s}" for s in TERMINAL]
        click.echo("results: " + ", ".join(parts), err=True)
    if out is not None:
        click.echo(f"outputs and {RESULTS_FILE} in {out}", err=True)


# -- jobs ----------------------------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """Inspect and manage jobs through the API."""


def _row(job: Job) -> list[str]:
    prompt = job.prompt if len(job.prompt) <= 40 else job.prompt[:39] + "…"
    return [job.id, job.status, job.model, job.provider or "-", job.created_at, prompt]


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    head = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    return "\n".join([head, *lines]).rstrip()


HEADER = ("ID", "STATUS", "MODEL", "PROVIDER", "CREATED", "PROMPT")


@jobs.command("list")
@click.option("--status", help="Comma list of statuses.")
@click.option("--model", help="Model id or alias.")
@click.option("--provider", help="Provider that ran the job.")
@click.option("--batch", "--batch-id", "batch_id", help="Only the jobs of this batch.")
@click.option(
    "--metadata", "metadata", multiple=True, metavar="KEY=VALUE", help="Repeatable; all match."
)
@click.option("--created-after", metavar="TIME", help="RFC 3339 time, inclusive.")
@click.option("--created-before", metavar="TIME", help="RFC 3339 time, exclusive.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs' JSON.")
@api_options
def list_command(
    status: str | None,
    model: str | None,
    provider: str | None,
    batch_id: str | None,
    metadata: tuple[str, ...],
    created_after: str | None,
    created_before: str | None,
    limit: int,
    as_json: bool,
    api_url: str,
    api_key: str | None,
) -> None:
    """The newest jobs, with every filter of GET /v1/jobs."""
    filters = _parse_pairs(metadata, "--metadata")
    with api_client(api_url, api_key) as client:
        found = client.jobs.list(
            status=status,
            model=model,
            provider=provider,
            batch_id=batch_id,
            metadata=filters,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
        )
        page = list(itertools.islice(found, limit))
    if as_json:
        _echo_json({"data": [_plain(j) for j in page]})
    else:
        click.echo(_table([_row(j) for j in page], HEADER))


def _cost_text(job: Job) -> str:
    """`0.030000 USD (reported)`, or `-` while nothing billed is known (never a made-up 0)."""
    cost = (job.usage or {}).get("cost")
    if not isinstance(cost, dict) or "amount" not in cost:
        return "-"
    return f"{cost['amount']} {cost.get('currency', '')} ({cost.get('source', '?')})"


def _describe(job: Job) -> str:
    fields = [
        ("id", job.id),
        ("status", job.status),
        ("model", job.model),
        ("provider", job.provider or "-"),
        ("prompt", job.prompt),
        ("batch", job.batch_id or "-"),
        ("created", job.created_at),
        ("completed", job.completed_at or "-"),
        ("attempts", str(job.attempts)),
        ("cost", _cost_text(job)),
    ]
    if job.error:
        fields.append(("error", f"{job.error.code}: {job.error.message}"))
    fields += [(f"output {o.index}", o.url) for o in job.outputs]
    return "\n".join(f"{name:<10} {value}" for name, value in fields)


@jobs.command("get")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def get_command(job_id: str, as_json: bool, api_url: str, api_key: str | None) -> None:
    """One job."""
    with api_client(api_url, api_key) as client:
        job = client.jobs.get(job_id)
    click.echo(json.dumps(_plain(job), indent=2) if as_json else _describe(job))


@jobs.command("wait")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--timeout", type=float, default=900.0, show_default=True, help="Seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs' JSON.")
@api_options
def wait_command(
    job_ids: tuple[str, ...], timeout: float, as_json: bool, api_url: str, api_key: str | None
) -> None:
    """Wait until the jobs end; exits 1 if any did not succeed (2 on timeout)."""
    deadline = time.monotonic() + timeout
    results: list[Job] = []
    with api_client(api_url, api_key) as client:
        for number, job_id in enumerate(job_ids):
            try:
                left = max(0.001, deadline - time.monotonic())
                results.append(client.jobs.wait(job_id, timeout=left, poll_interval=POLL_SECONDS))
            except WaitTimeout:
                pending = list(job_ids[number:])
                click.echo(f"Error: still running after {timeout:g}s: {pending}", err=True)
                sys.exit(2)
    if as_json:
        _echo_json([_plain(j) for j in results])
    else:
        click.echo(_table([_row(j) for j in results], HEADER))
    if any(j.status != "succeeded" for j in results):
        sys.exit(1)


@jobs.command("cancel")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs' JSON.")
@api_options
def cancel_command(
    job_ids: tuple[str, ...], as_json: bool, api_url: str, api_key: str | None
) -> None:
    """Cancel jobs that have not ended."""
    with api_client(api_url, api_key) as client:
        results = [client.jobs.cancel(job_id) for job_id in job_ids]
    if as_json:
        _echo_json([_plain(j) for j in results])
    else:
        click.echo(_table([_row(j) for j in results], HEADER))
