"""The guide's "Modifying File Resources" (second example): ``ignoreExt``
gives extension-less URLs, so that ``/foo`` is served by ``foo.rpy`` when
no file ``foo`` exists.

Twisted: ``root.ignoreExt(".rpy")`` and
``root.processors = {'.rpy': script.ResourceScript}``.

Run: trioweb --config examples/config/ignore_ext.py
"""

import os

from trioweb import script, static

SITE = os.path.join(os.path.dirname(__file__), "..", "static", "rpysite")

resource = static.File(SITE)
resource.ignoreExt(".rpy")
resource.processors = {".rpy": script.ResourceScript}
