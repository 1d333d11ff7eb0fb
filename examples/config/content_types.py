"""The guide's "Modifying File Resources", for content types: a type the
host's mime.types lacks (``.woff2``) is added to ``contentTypes``.

Twisted: ``root.contentTypes[".woff2"] = "font/woff2"``. That dictionary is
shared by every File (it is a class attribute, in Twisted as here); this
file gives its root a copy first, so the change stays with this site.

Run: trioweb --config examples/config/content_types.py
"""

import os

from trioweb import static

HTDOCS = os.path.join(os.path.dirname(__file__), "..", "htdocs")

resource = static.File(HTDOCS)
resource.contentTypes = dict(static.File.contentTypes)
resource.contentTypes[".woff2"] = "font/woff2"
