"""The Content-Security-Policy header: present on the pages, strict (no inline scripts), and the templates obey it.

The browser test (tests/browser/test_csp.py) checks that every page really runs under it; these are the quick checks.
"""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

EXPECTED = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def _policy(response) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']} has no Content-Security-Policy header"
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def _check(policy: dict[str, list[str]]) -> None:
    for name, sources in EXPECTED.items():
        assert policy.get(name) == sources, (name, policy.get(name))
    # Styles: this site's files, plus an inline <style> only with the nonce of the request (if any).
    assert policy["style-src"][0] == "'self'"
    assert all(source.startswith("'nonce-") for source in policy["style-src"][1:]), policy["style-src"]
    everything = " ".join(" ".join(sources) for sources in policy.values())
    assert "'unsafe-inline'" not in everything and "'unsafe-eval'" not in everything


@pytest.mark.django_db
def test_the_sign_in_page_sends_the_policy():
    response = Client().get("/login/")
    assert response.status_code == 200
    _check(_policy(response))


@pytest.mark.parametrize(
    "path", ["/", "/datasets/", "/training/", "/evaluation/", "/annotation/", "/accounts/profile/", "/admin/"]
)
def test_signed_in_pages_send_the_policy(client, make_user, path):
    client.force_login(make_user("admin"))
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    _check(_policy(response))


def test_api_docs_run_no_inline_script_and_their_style_carries_the_nonce(client, make_user):
    client.force_login(make_user("engineer"))
    response = client.get("/api/docs/")
    assert response.status_code == 200
    policy = _policy(response)
    _check(policy)
    page = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)
    assert scripts and all('src="' in attributes and not body.strip() for attributes, body in scripts), scripts
    nonce = re.search(r'<style nonce="([^"]+)">', page).group(1)
    assert f"'nonce-{nonce}'" in policy["style-src"]
    # A second request gets another nonce: a nonce that repeats protects nothing.
    assert nonce not in client.get("/api/docs/")["Content-Security-Policy"]


# What the policy would block (and so would break the page): an inline <script> that runs (a JSON data block from
# json_script does not), an event handler attribute, a javascript: URL, a style="" attribute.
FORBIDDEN = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    "event handler attribute": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
}


def _templates() -> list[Path]:
    folders = [Path(folder) for folder in settings.TEMPLATES[0]["DIRS"]]
    folders += Path(settings.BASE_DIR).glob("*/templates")  # an app's own templates, should one have them
    return sorted({path for folder in folders for path in folder.rglob("*.html")})


def test_templates_have_nothing_the_policy_would_block():
    templates = _templates()
    assert len(templates) > 50  # the scan really reads the project's templates
    found = [
        f"{path.relative_to(settings.BASE_DIR)}: {what}: {match.group(0)[:80]}"
        for path in templates
        for what, pattern in FORBIDDEN.items()
        for match in pattern.finditer(path.read_text())
    ]
    assert not found, "\n".join(found)


def test_the_scan_finds_what_it_looks_for():
    samples = {
        "inline script": '<script>alert(1)</script><script type="application/json" id="x">{}</script>',
        "event handler attribute": '<button type="button" onclick="go()">Go</button>',
        "javascript: URL": '<a href="javascript:void(0)">x</a>',
        "style attribute": '<div class="a" style="color: red">x</div>',
    }
    for what, sample in samples.items():
        assert len(FORBIDDEN[what].findall(sample)) == 1, what
    allowed = '<script src="/static/a.js" defer></script><script type="application/json" id="d">{}</script>'
    assert not any(pattern.search(allowed) for pattern in FORBIDDEN.values())
