"""The web console: one static page and its assets, served by the API at ``/console`` without a
key (the page asks for one and sends it in the ``x-api-key`` header of its own JSON calls).

Only the files of one folder are served, looked up by name in what was read at the first
request: a path naming anything else (a subfolder, ``..``, an encoded slash) is a 404, never a
read from disk. Every answer carries a strict Content-Security-Policy: scripts and styles from
this origin only (no inline ones), images from this origin and from where the bucket's presigned
links point, and nothing may frame the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from subconscious.errors import NotFound

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services

CONSOLE_PATH = "/console"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# A served name: one path segment, lower case, one of the types above (text only: the local
# stack's front and API Gateway pass these bodies through as they are).
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(html|js|css|svg)$")


@dataclass(frozen=True)
class Asset:
    name: str
    body: str
    content_type: str


def is_console_path(method: str, path: str) -> bool:
    """A GET of the page or one of its assets: the only requests served without a key."""
    return method.upper() == "GET" and (path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/"))


@cache
def load_assets(folder: Path) -> dict[str, Asset]:
    """Every servable file directly in ``folder``, by name (read once per process)."""
    return {
        path.name: Asset(path.name, path.read_text("utf-8"), CONTENT_TYPES[path.suffix])
        for path in sorted(folder.iterdir())
        if path.is_file() and _ASSET_NAME.fullmatch(path.name)
    }


def asset_for(assets: dict[str, Asset], path: str) -> Asset:
    """The asset a console path names: ``/console`` is the page, ``/console/<name>`` a file."""
    name = INDEX if path == CONSOLE_PATH else path.removeprefix(CONSOLE_PATH + "/")
    asset = assets.get(name) if _ASSET_NAME.fullmatch(name) else None
    if asset is None or (name == INDEX and path != CONSOLE_PATH):
        # the page has one address: relative links resolve against /console, not /console/
        raise NotFound(f"no console file {name[:80]!r}; the console is at {CONSOLE_PATH}")
    return asset


def image_origins(services: Services) -> tuple[str, ...]:
    """Where thumbnails come from: the setting, else the origin of a link the bucket presigns
    (signing is done offline; on the local stack it is moto's endpoint)."""
    configured = services.settings.console_image_origins
    if configured:
        return configured
    return (_presigned_origin(services),)


def _presigned_origin(services: Services) -> str:
    parts = urlsplit(services.bucket.presign("console/origin-probe.png", 60))
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(origins: tuple[str, ...]) -> str:
    images = " ".join(("'self'", *origins))
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            # the zip download reads the images through their presigned links
            f"connect-src {images}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def security_headers(origins: tuple[str, ...]) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(origins),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",  # presigned links must not leak to other sites
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }


def console_response(services: Services, folder: Path, path: str) -> dict[str, Any]:
    """The API Gateway (REST proxy) answer for a console path; :class:`NotFound` for a name
    that is not one of the folder's files."""
    asset = asset_for(load_assets(folder), path)
    headers = {"Content-Type": asset.content_type, **security_headers(image_origins(services))}
    return {"statusCode": 200, "headers": headers, "body": asset.body, "isBase64Encoded": False}
