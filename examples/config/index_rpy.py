"""The guide's "Modifying File Resources" (first example): every ``.rpy``
file is a resource script, and a directory is rendered by its
``index.rpy``.

Twisted: ``root.indexNames = ['index.rpy']`` and
``root.processors = {'.rpy': script.ResourceScript}`` on a
``static.File``, in an ``application`` for ``twistd -y``.

Run: trioweb --config examples/config/index_rpy.py
"""

import os

from trioweb import script, static

SITE = os.path.join(os.path.dirname(__file__), "..", "static", "rpysite")

resource = static.File(SITE)
resource.indexNames = ["index.rpy"]
resource.processors = {".rpy": script.ResourceScript}
