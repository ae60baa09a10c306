"""The harness itself: Debian's chromium reaches the fresh gateway over HTTPS, trusting only the
gateway's own key, and axe-core runs in its pages."""
from urllib.parse import urlparse


def test_chromium_reaches_the_gateway_over_https(console, gateway):
    console.get("/health")
    assert urlparse(console.d.current_url).scheme == "https"
    assert console.d.execute_script("return window.isSecureContext") is True
    assert "ok" in console.body_text().lower() or "{" in console.body_text(), console.body_text()[:300]
    assert console.d.execute_script("return typeof window.axe") == "undefined"
    # axe really runs: the JSON page (not a console page) has no lang and no title.
    found = {v["id"] for v in console.axe("harness-health-not-a-console-page")}
    assert {"html-has-lang", "document-title"} <= found, found
    assert console.d.execute_script("return typeof window.axe.run") == "function"
