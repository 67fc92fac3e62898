"""The web console's static files (``GET /console``): served without a key, with a strict
Content-Security-Policy, and nothing but the console folder's own files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from functions.api.handler import CONSOLE_DIR
from subconscious.logic import console
from subconscious.services import Services
from tests.conftest import install_services, with_settings
from tests.integration.api_helpers import assert_error, call, invoke, response_headers

pytestmark = pytest.mark.moto

SHIPPED = {"index.html", "app.js", "api.js", "chart.js", "zip.js", "style.css", "favicon.svg"}


def _csp(result: dict[str, object]) -> dict[str, list[str]]:
    policy = response_headers(result)["content-security-policy"]
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


def test_the_page_is_served_without_a_key_with_a_strict_policy(svc: Services) -> None:
    result = invoke("GET", "/console", key=None, content_type=None)
    headers = response_headers(result)
    assert result["statusCode"] == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="console/app.js">' in str(result["body"])
    policy = _csp(result)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    # thumbnails come from where the bucket presigns (moto's S3 here: the default endpoint)
    assert policy["img-src"] == ["'self'", f"https://{svc.settings.images_bucket}.s3.amazonaws.com"]
    assert policy["connect-src"] == policy["img-src"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_the_page_has_no_inline_script_or_style() -> None:
    """The policy would block them: everything the page runs is in its own files."""
    page = (CONSOLE_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+=", page)  # no onclick= and the like
    for script in CONSOLE_DIR.glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "eval(" not in text, script.name


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_each_asset_is_served_with_its_type(svc: Services, name: str, content_type: str) -> None:
    result = invoke("GET", f"/console/{name}", key=None, content_type=None)
    assert result["statusCode"] == 200
    assert response_headers(result)["content-type"] == content_type
    assert result["body"] == (CONSOLE_DIR / name).read_text()
    assert "content-security-policy" in response_headers(result)


def test_every_shipped_file_is_servable() -> None:
    assert set(console.load_assets(CONSOLE_DIR)) == SHIPPED
    assert {p.name for p in CONSOLE_DIR.iterdir()} == SHIPPED  # nothing unservable lies there


@pytest.mark.parametrize(
    "path",
    [
        "/console/nothing.js",
        "/console/",  # the page has one address: relative links resolve against /console
        "/console/index.html",
        "/console/../handler.py",
        "/console/..%2Fhandler.py",
        "/console/%2e%2e/handler.py",
        "/console/sub/app.js",
        "/console//etc/passwd",
        "/console/App.js",
        "/console/app.js.map",
        "/console/.hidden.js",
    ],
)
def test_anything_but_a_console_file_is_a_404_and_reads_nothing_else(
    svc: Services, path: str
) -> None:
    status, body = call("GET", path, key=None, content_type=None)
    assert_error((status, body), 404, "not_found")
    assert "import" not in json.dumps(body)  # no file's text, handler.py's least of all


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/console"), ("DELETE", "/console/app.js"), ("GET", "/consoles"), ("GET", "/")],
)
def test_only_gets_of_console_paths_skip_the_key(svc: Services, method: str, path: str) -> None:
    status, body = call(method, path, body=None, key=None)
    assert_error((status, body), 401, "unauthorized")


def test_the_json_api_still_needs_a_key(svc: Services) -> None:
    assert_error(call("GET", "/v1/market", key=None), 401, "unauthorized")


def test_configured_image_origins_replace_the_presigned_one(svc: Services) -> None:
    with_settings(svc, console_image_origins=("https://a.example.com", "http://127.0.0.1:9000"))
    result = invoke("GET", "/console", key=None, content_type=None)
    assert _csp(result)["img-src"] == ["'self'", "https://a.example.com", "http://127.0.0.1:9000"]


def test_the_local_stack_origin_is_moto_s_endpoint(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the local stack the links point at moto's server, so the policy names it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5123")
    built = install_services()
    assert console.image_origins(built) == ("http://127.0.0.1:5123",)


def test_only_the_folder_s_own_files_of_known_types_are_loaded(
    tmp_path: Path, svc: Services
) -> None:
    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "notes.txt").write_text("not served")
    (tmp_path / "sub").mkdir()
    assets = console.load_assets(tmp_path)
    assert set(assets) == {"index.html"}
    response = console.console_response(svc, tmp_path, "/console")
    assert response["body"] == "<p>hi</p>"
