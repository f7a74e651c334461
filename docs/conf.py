"""Sphinx configuration: MyST Markdown pages, the Furo theme, the API reference from docstrings."""

from __future__ import annotations

import forkhooks

project = "forkhooks"
author = "forkhooks contributors"
copyright = "2026, forkhooks contributors"
release = forkhooks.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](#a-heading) and [text](page.md#a-heading) resolve, as on GitHub

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "furo"
html_title = f"forkhooks {release}"
