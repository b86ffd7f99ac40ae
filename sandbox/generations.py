"""Ark's synchronous generation answer, shared by Ark and by CometAPI (which relays to Ark)."""

from __future__ import annotations

import base64
import dataclasses
import time
from typing import Any

from flask import request

from sandbox.inputs import LoadedImage
from sandbox.state import Sandbox
from sandbox.vendor import public_base_url, render_spec


@dataclasses.dataclass(frozen=True)
class Edit:
    """A validated request: what to render and how to return it."""

    model: str
    prompt: str
    images: list[LoadedImage]
    size: tuple[int, int]
    outputs: int
    seed: int
    watermark: bool
    response_format: str


def render_answer(
    sandbox: Sandbox, vendor: str, edit: Edit, *, item_size: bool = False
) -> dict[str, Any]:
    """`{model, created, data, usage}` with one `url` or `b64_json` item per output.

    `item_size` adds each item's `WxH`, as Ark does for Seedream.
    """
    base_url = public_base_url(sandbox.config, request)
    edits = render_spec(edit)
    items = []
    for jpeg in edits:
        if edit.response_format == "b64_json":
            item: dict[str, Any] = {"b64_json": base64.b64encode(jpeg).decode()}
        else:
            ttl = sandbox.config.url_ttl
            item = {"url": sandbox.files.put(vendor, jpeg, "image/jpeg", ttl, base_url)}
        if item_size:
            item["size"] = f"{edit.size[0]}x{edit.size[1]}"
        items.append(item)
    tokens = edit.outputs * edit.size[0] * edit.size[1] // 256
    usage = {"generated_images": edit.outputs, "output_tokens": tokens, "total_tokens": tokens}
    return {"model": edit.model, "created": int(time.time()), "data": items, "usage": usage}
