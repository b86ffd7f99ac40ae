"""`editqueue standalone --demo`: push sample edits through and show what came back.

It talks to the running stack over its public API only, like any client would, and runs
a small local webhook receiver that checks every delivery's signature.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click
import httpx
from PIL import Image, ImageDraw

from editqueue.jobs.status import TERMINAL
from editqueue.webhooks.signing import verify


def sample_image(index: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A synthetic photo-like PNG: a gradient sky, a sun and hills, varied per index."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = int(255 * y / height)
        draw.line([(0, y), (width, y)], fill=(40 + index * 30 % 200, 120, 255 - shade // 2))
    draw.ellipse([width * 0.65, height * 0.1, width * 0.85, height * 0.35], fill=(255, 220, 80))
    draw.polygon(
        [(0, height), (width * 0.3, height * 0.55), (width * 0.6, height)], fill=(30, 110, 50)
    )
    draw.polygon(
        [(width * 0.35, height), (width * 0.7, height * 0.6), (width, height)],
        fill=(20, 90 + index * 20 % 100, 40),
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class Receiver:
    """A local webhook endpoint that records deliveries and whether their signatures verify.

    It listens from construction on, so its address can be allowed before the stack
    starts; deliveries that come before `secret` is set are recorded as unverified.
    """

    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                ok = bool(receiver.secret) and verify(receiver.secret, dict(self.headers), body)
                payload = json.loads(body)
                job_id = payload.get("data", {}).get("id", "?")
                with receiver.lock:
                    receiver.received.setdefault(job_id, []).append(
                        {
                            "type": payload.get("type"),
                            "verified": ok,
                            "webhook_id": self.headers.get("webhook-id"),
                        }
                    )
                self.send_response(204 if ok else 400)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def allowance(self) -> str:
        """The EDITQUEUE_ALLOW_PRIVATE_URLS entry that lets the service post here, and only here."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


def _submit(client: httpx.Client, index: int, webhook_url: str) -> tuple[str, str]:
    png = sample_image(index)
    prompts = [
        "make it a snowy winter evening",
        "turn the sky into a purple sunset",
        "paint it in watercolor style",
        "add a warm vintage film look",
        "make the hills autumn orange",
    ]
    prompt = prompts[index % len(prompts)]
    if index % 2 == 0:
        # SeedEdit through a synchronous vendor, image inline as a data URL.
        body = {
            "model": "seededit-3.0",
            "prompt": prompt,
            "image": "data:image/png;base64," + base64.b64encode(png).decode(),
            "seed": index,
            "webhook_url": webhook_url,
            "metadata": {"demo": "true", "sample": str(index)},
        }
        response = client.post("/v1/jobs", json=body)
    else:
        # Seedream through a task vendor with callbacks, image as a multipart upload.
        response = client.post(
            "/v1/jobs",
            data={
                "model": "seedream-4.0-edit",
                "prompt": prompt,
                "aspect_ratio": "4:3",
                "seed": str(index),
                "webhook_url": webhook_url,
            },
            files={"image": (f"sample{index}.png", png, "image/png")},
        )
    response.raise_for_status()
    return response.json()["id"], hashlib.sha256(png).hexdigest()


def run_demo(
    api_url: str,
    api_key: str,
    *,
    receiver: Receiver | None = None,
    count: int = 6,
    timeout: float = 110.0,
) -> int:
    """Submit `count` sample jobs, wait for them and their webhooks, print a report.

    `receiver` must be reachable by the service: with the default (empty) allowance that
    means its `allowance` entry was added to EDITQUEUE_ALLOW_PRIVATE_URLS before start.
    """
    client = httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30.0
    )
    receiver = receiver or Receiver()
    receiver.secret = client.get("/v1/webhooks/secret").json()["secret"]
    click.echo(click.style(f"\ndemo: submitting {count} sample edits …", bold=True))
    submitted = [_submit(client, i, receiver.url) for i in range(count)]
    deadline = time.monotonic() + timeout
    jobs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for job_id, _ in submitted:
            jobs[job_id] = client.get(f"/v1/jobs/{job_id}").json()
        done = all(j["status"] in TERMINAL for j in jobs.values())
        with receiver.lock:
            hooked = all(job_id in receiver.received for job_id, _ in submitted)
        if done and hooked:
            break
        time.sleep(0.5)
    failures = 0
    for job_id, input_sha in submitted:
        job = jobs[job_id]
        hooks = receiver.received.get(job_id, [])
        verified = bool(hooks) and all(h["verified"] for h in hooks)
        line = f"  {job_id}  {job['model']:<18} via {job['provider'] or '-':<4} {job['status']}"
        click.echo(click.style(line, fg="green" if job["status"] == "succeeded" else "red"))
        for output in job["outputs"]:
            changed = "differs from input" if output["sha256"] != input_sha else "SAME AS INPUT"
            click.echo(
                f"      output {output['index']}: {output['width']}x{output['height']} "
                f"{output['content_type']} {output['bytes']} B sha256={output['sha256'][:12]}… "
                f"({changed})\n      {output['url']}"
            )
        if job.get("error"):
            click.echo(f"      error: {job['error']}")
        hook_text = ", ".join(f"{h['type']} ({h['webhook_id']})" for h in hooks) or "none yet"
        click.echo(f"      webhook: {hook_text} — signature {'verified' if verified else 'NOT OK'}")
        good = (
            job["status"] == "succeeded"
            and verified
            and all(o["sha256"] != input_sha for o in job["outputs"])
        )
        failures += 0 if good else 1
    receiver.close()
    summary = (
        f"demo: {count - failures}/{count} jobs succeeded with stored outputs and verified webhooks"
    )
    click.echo(click.style(summary + "\n", fg="green" if not failures else "red", bold=True))
    return 0 if failures == 0 else 1
