"""Serve plotly.js from the pinned Python `plotly` package, as `vendor/plotly.min.js`.

The browser draws the figures that `plotly` builds server-side, so both must be the same release: taking the file
from the installed package (rather than a copy in git or a CDN) keeps them in step whenever the pin moves. Only this
one file is exposed; the package's other data (datasets, the Jupyter widget bundle) is not collected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "vendor/plotly.min.js"
PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"


class PlotlyFinder(BaseFinder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=str(PLOTLY_DIR))

    def check(self, **kwargs: Any) -> list[Any]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> str | list[str]:  # type: ignore[override]
        if path != PLOTLY_JS:
            return [] if find_all else ""
        found = str(PLOTLY_DIR / "plotly.min.js")
        return [found] if find_all else found

    def list(self, ignore_patterns: Any) -> Any:
        # collectstatic: (path relative to the storage, storage); the prefix places it under vendor/.
        self.storage.prefix = "vendor"  # type: ignore[attr-defined]
        yield "plotly.min.js", self.storage
