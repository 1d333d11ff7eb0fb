"""A user's own configuration behind the front (``user_directory.py``):
``trioweb --personal --config ~/personal.py`` publishes what this file
defines over ``~/.trioweb-pb``, running as the user, so its scripts run
with the user's rights.

Here: ``~/public_html`` with resource scripts, plus a page made in Python.

Run (as the user): trioweb --personal --config examples/config/personal.py
"""

import os

from trioweb import resource as resourcelib
from trioweb import script, static


class Whoami(resourcelib.Resource):
    isLeaf = True

    def render_GET(self, request):
        return f"served by uid {os.getuid()} for {b'/'.join(request.prepath).decode()}".encode()


resource = static.File(os.path.expanduser("~/public_html"))
resource.processors = {".rpy": script.ResourceScript}
resource.putChild(b"whoami", Whoami())
