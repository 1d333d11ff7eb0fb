"""The guide's "Modifying File Resources", for content types: types the
host's mime.types may lack (``.woff2``, ``.gmi``) are added to ``contentTypes``.

Twisted: ``root.contentTypes[".woff2"] = "font/woff2"``. That dictionary is
shared by every File (it is a class attribute, in Twisted as here); this
file gives its root a copy first, so the change stays with this site.

Run: trioweb --config examples/config/content_types.py
"""

import os

from trioweb import static

ASSETS = os.path.join(os.path.dirname(__file__), "assets")

resource = static.File(ASSETS)
resource.contentTypes = dict(static.File.contentTypes)
resource.contentTypes[".woff2"] = "font/woff2"
resource.contentTypes[".gmi"] = "text/gemini"  # one that Debian's mime.types lacks
