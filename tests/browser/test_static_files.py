"""The dashboard's files as shipped: every file a page or module names exists, nothing is
loaded from elsewhere, and nothing inline would need the CSP loosened."""

from __future__ import annotations

import re

from orchestrate.server.dashboard import STATIC_DIR

FILES = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())
SCRIPTS = [p for p in FILES if p.suffix == ".js"]


def test_every_module_imports_files_that_exist() -> None:
    assert {p.name for p in SCRIPTS} >= {"main.js", "api.js", "run.js", "reviews.js", "dlq.js", "cost.js"}
    for script in SCRIPTS:
        for target in re.findall(r"""(?:from|import)\s*\(?\s*["'](\.[^"']+)["']""", script.read_text()):
            assert (script.parent / target).resolve().is_file(), f"{script.name} imports {target}, which is missing"


def test_the_page_names_only_its_own_files() -> None:
    page = (STATIC_DIR / "index.html").read_text()
    for target in re.findall(r'(?:src|href)="(/ui/[^"]+)"', page):
        assert (STATIC_DIR / target.removeprefix("/ui/")).is_file(), target
    # Nothing inline: the server's Content-Security-Policy allows neither.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+\s*=", page), "an inline event handler"


def test_nothing_is_loaded_from_another_origin() -> None:
    for path in FILES:
        text = path.read_text()
        # The SVG namespace is a name, not a download.
        urls = [u for u in re.findall(r"https?://[^\s\"'`)]+", text) if not u.startswith("http://www.w3.org/")]
        assert not urls, f"{path.name} names {urls}"
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, f"{path.name} parses HTML"
        assert "eval(" not in text and "new Function" not in text, path.name


def test_scripts_never_write_style_attributes() -> None:
    # element.style.x = ... is allowed under style-src 'self'; a style attribute is not.
    for script in SCRIPTS:
        assert not re.search(r"""setAttribute\(\s*["']style["']""", script.read_text()), script.name


async def test_the_server_serves_the_page_and_its_files_under_its_csp() -> None:
    import httpx

    from orchestrate import Client
    from orchestrate.server import create_app

    async with Client("memory://") as client:
        app = create_app(client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            page = await http.get("/")
            script = await http.get("/ui/js/main.js")
            bare = await http.get("/ui", follow_redirects=False)
            missing = await http.get("/ui/js/nothing.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/js/main.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert bare.status_code == 307 and bare.headers["location"] == "/"
    assert missing.status_code == 404
