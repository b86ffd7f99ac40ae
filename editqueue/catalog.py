"""The model catalog: canonical ids, aliases, limits, parameters, and who serves each."""

from __future__ import annotations

import dataclasses
from typing import Any

from editqueue.infra.images import ImageConstraints

ASPECT_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9")
RESOLUTIONS = ("1K", "2K", "4K")
MAX_IMAGE_BYTES = 10 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Model:
    """A canonical model and the strictest limits every one of its routes accepts."""

    id: str
    family: str
    description: str
    aliases: tuple[str, ...]
    providers: tuple[str, ...]  # default route order
    max_prompt_chars: int
    min_images: int
    max_images: int
    max_outputs: int
    image_formats: frozenset[str]
    sizes: str  # "adaptive" or "WxH"
    default_size: str | None
    supports_aspect_ratio: bool
    default_guidance_scale: float

    @property
    def image_constraints(self) -> ImageConstraints:
        """Input image constraints of this model, checked before any vendor is called."""
        return ImageConstraints(formats=self.image_formats, max_bytes=MAX_IMAGE_BYTES)

    def to_public(self) -> dict[str, Any]:
        """The catalog entry as `GET /v1/models` shows it."""
        params: dict[str, Any] = {
            "size": {
                "values": ["adaptive"] if self.sizes == "adaptive" else ["WxH"],
                "default": self.default_size,
            },
            "seed": {"min": -1, "max": 2147483647, "default": -1},
            "guidance_scale": {"min": 1, "max": 10, "default": self.default_guidance_scale},
            "watermark": {"default": False},
            "n": {"min": 1, "max": self.max_outputs, "default": 1},
        }
        if self.supports_aspect_ratio:
            params["aspect_ratio"] = {"values": list(ASPECT_RATIOS)}
            params["resolution"] = {"values": list(RESOLUTIONS), "default": "1K"}
        return {
            "id": self.id,
            "object": "model",
            "family": self.family,
            "description": self.description,
            "aliases": list(self.aliases),
            "providers": list(self.providers),
            "limits": {
                "prompt_max_chars": self.max_prompt_chars,
                "images_min": self.min_images,
                "images_max": self.max_images,
                "image_formats": sorted(f.lower() for f in self.image_formats),
                "image_max_bytes": MAX_IMAGE_BYTES,
                "image_min_side_px": 15,
                "image_aspect_ratio_range": ["1:3 (exclusive)", "3:1 (exclusive)"],
            },
            "parameters": params,
        }


MODELS: tuple[Model, ...] = (
    Model(
        id="seededit-3.0",
        family="seededit",
        description="ByteDance SeedEdit 3.0: instruction-based edit of one image.",
        aliases=(
            "doubao-seededit-3-0-i2i-250628",
            "seededit-3-0-i2i-250628",
            "spark_edit_3_0_i2i",
            "bytedance-seedEdit-3.0-i2i",
        ),
        providers=("ark", "vtrix", "cometapi", "acedata"),
        # The strictest route wins: Vtrix documents 800 characters.
        max_prompt_chars=800,
        min_images=1,
        max_images=1,
        max_outputs=1,
        image_formats=frozenset({"JPEG", "PNG"}),
        sizes="adaptive",
        default_size="adaptive",
        supports_aspect_ratio=False,
        default_guidance_scale=5.5,
    ),
    Model(
        id="seedream-4.0-edit",
        family="seedream",
        description="ByteDance Seedream 4.0 edit: up to 10 reference images, up to 6 outputs.",
        aliases=("bytedance/seedream-v4-edit", "doubao-seedream-4-0-250828", "seedream-4-0-250828"),
        providers=("kie", "ark", "cometapi", "acedata"),
        max_prompt_chars=5000,
        min_images=1,
        max_images=10,
        max_outputs=6,
        image_formats=frozenset({"JPEG", "PNG", "WEBP"}),
        sizes="WxH",
        default_size=None,
        supports_aspect_ratio=True,
        default_guidance_scale=5.5,
    ),
)

_BY_NAME: dict[str, Model] = {}
for _model in MODELS:
    _BY_NAME[_model.id] = _model
    for _alias in _model.aliases:
        _BY_NAME[_alias] = _model


def resolve_model(name: str) -> Model | None:
    """The canonical model for an id or vendor-native alias, or None."""
    return _BY_NAME.get(name)


def all_models() -> tuple[Model, ...]:
    """Every model in the catalog."""
    return MODELS
