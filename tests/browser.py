"""What every real-browser test shares: Debian's Chromium, driven by Playwright (no browser download is possible
here), with the flags it needs in a container without a display or a network beyond the test servers."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
