"""A root resource for the signal tests, written into the test's directory as a
module (``trioweb --class MODULE.Root``): it reads a file when it is built, so
a test can tell a reloaded tree from the old one, and it names the process that
answered (``x-pid``), so a test can tell workers apart."""

from pathlib import Path

ROOT_MODULE = '''
import os
from trioweb.resource import Resource

class Root(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        with open({path!r}, "rb") as f:
            self.text = f.read()

    def render_GET(self, request):
        request.setHeader(b"x-pid", str(os.getpid()).encode())
        return self.text
'''


def write_root_module(module: Path, content: Path) -> None:
    """Write the root's module to ``module``, serving the bytes of ``content``."""
    module.write_text(ROOT_MODULE.format(path=str(content)))
