"""Named variants, as configuration: the derived images every ready image gets, each a
box, how the image fits it, and how it is encoded (IMAGES_VARIANTS, a JSON object; the
template passes one value to both functions). Everything that deals with variants reads
this: the worker renders them, the API describes and signs them, the gallery and the
command-line client show them. Changing the set needs no code: images made before get
a new variant through `python -m app backfill-variants`.
"""

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# The gallery shows `thumb` in its grid and `preview` in its detail view.
REQUIRED = ("thumb", "preview")
MOST = 10
# How an image fits the box (Cloudflare Images' names): `scale-down` fits inside and is
# never enlarged; `contain` fits inside, enlarged if smaller; `cover` fills the box, the
# middle kept and the rest cropped.
Fit = Literal["scale-down", "contain", "cover"]
OutputFormat = Literal["webp", "avif", "jpeg"]
OUTPUT_TYPES: dict[str, str] = {"webp": "image/webp", "avif": "image/avif", "jpeg": "image/jpeg"}
VariantName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


class VariantSpec(BaseModel):
    """One variant: a box, a fit, a format and its quality."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(ge=1, le=8192)
    height: int = Field(ge=1, le=8192)
    fit: Fit = "scale-down"
    format: OutputFormat = "webp"
    quality: int = Field(default=80, ge=1, le=100)

    @property
    def fingerprint(self) -> str:
        """Names this definition: part of the variant's key, so a changed definition
        never serves (nor lets browsers keep) what the old one made."""
        canonical = json.dumps(self.model_dump(), sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()[:10]

    @property
    def content_type(self) -> str:
        return OUTPUT_TYPES[self.format]


DEFAULT_VARIANTS: dict[str, VariantSpec] = {
    "thumb": VariantSpec(width=320, height=320),
    "preview": VariantSpec(width=1600, height=1600),
}


def checked(variants: dict[str, VariantSpec]) -> dict[str, VariantSpec]:
    """The set as configured, or ValueError saying what is wrong with it."""
    missing = [name for name in REQUIRED if name not in variants]
    if missing:
        raise ValueError(f"the variants {', '.join(missing)} are required (gallery, CLI)")
    if len(variants) > MOST:
        raise ValueError(f"at most {MOST} variants")
    if "original" in variants:
        raise ValueError("'original' names the uploaded bytes: not a variant name")
    return variants
