"""``trioweb.config.load``: what a configuration file defines, and every way it can be wrong."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from trioweb.config import CONFIG_MODULE_NAME, Config, ConfigError, load
from trioweb.resource import Resource
from trioweb.server import Site
from trioweb.static import File
from trioweb.testing import fetch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "config"


def write(tmp_path: Path, text: str, name: str = "site.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_resource_with_listen_and_accounts(tmp_path):
    path = write(tmp_path, """
        from trioweb.static import Data
        resource = Data(b"hi", "text/plain")
        listen = ["tcp:8081:interface=127.0.0.1", "unix:/tmp/x.sock"]
        uid = "root"
        gid = 0
    """)
    config = load(path)
    assert isinstance(config, Config)
    assert config.path == str(path) and config.site is None
    assert config.listen == ("tcp:8081:interface=127.0.0.1", "unix:/tmp/x.sock")
    assert (config.uid, config.gid) == (0, 0)


async def test_the_loaded_tree_serves(tmp_path):
    path = write(tmp_path, """
        from trioweb.static import Data
        from trioweb.resource import Resource
        resource = Resource()
        resource.putChild(b"hello", Data(b"hello from a config", "text/plain"))
    """)
    response = await fetch(load(path).resource, b"/hello")
    assert response.code == 200 and bytes(response.body) == b"hello from a config"


def test_a_site_and_its_resource(tmp_path):
    path = write(tmp_path, """
        from trioweb.resource import Resource
        from trioweb.server import Site
        resource = Resource()
        site = Site(resource, displayTracebacks=True)
    """)
    config = load(path)
    assert isinstance(config.site, Site) and config.site.displayTracebacks
    assert config.resource is config.site.resource
    assert config.listen == () and config.uid is None and config.gid is None


def test_file_is_set_and_main_blocks_do_not_run(tmp_path):
    path = write(tmp_path, """
        import os
        from trioweb.static import File
        resource = File(os.path.dirname(__file__))
        ran_as = __name__
        if __name__ == "__main__":
            raise SystemExit("a script's own server must not start")
    """)
    config = load(path)
    assert isinstance(config.resource, File) and config.resource.path == str(tmp_path)
    assert CONFIG_MODULE_NAME == "__trioweb_config__"


def test_a_module_next_to_the_file_can_be_imported(tmp_path):
    (tmp_path / "mysite_parts_for_test.py").write_text(
        "from trioweb.static import Data\ndef page():\n    return Data(b'part', 'text/plain')\n")
    path = write(tmp_path, "import mysite_parts_for_test\nresource = mysite_parts_for_test.page()\n")
    assert load(path).resource.data == b"part"


def test_each_load_builds_a_new_tree(tmp_path):
    """What a reload relies on: loading again runs the file again."""
    counter = tmp_path / "runs"
    path = write(tmp_path, f"""
        from trioweb.resource import Resource
        with open({str(counter)!r}, "a") as f:
            f.write("x")
        resource = Resource()
    """)
    first, second = load(path), load(path)
    assert first.resource is not second.resource
    assert counter.read_text() == "xx"


def test_every_example_loads():
    env = dict(os.environ)
    os.environ["WEB_PORTS"] = os.devnull  # ports_from_file.py reads it: no ports, still valid
    try:
        for path in sorted(EXAMPLES.glob("*.py")):
            config = load(path)
            assert isinstance(config.resource, Resource) or hasattr(config.resource, "render"), path
    finally:
        os.environ.clear()
        os.environ.update(env)


@pytest.mark.parametrize(("source", "expected"), [
    ("x = 1\nresource = (\n", ":2: SyntaxError: "),
    ("x = 1\n\nresource = undefined_name\n", ":3: NameError: name 'undefined_name' is not defined"),
    ("def build():\n    return 1 / 0\n\nresource = build()\n", ":2: ZeroDivisionError: division by zero"),
    ("import sys\nsys.exit(3)\n", ":2: SystemExit: 3"),
    ("x = 1\n", ": defines neither 'resource' (the root Resource) nor 'site' (a Site); it must define one"),
    ("application = object()\n", "'application' is twistd's: see docs/porting.md"),
    ("resource = 'not a resource'\n", ": 'resource' must be a trioweb Resource, not str"),
    ("site = 42\n", ": 'site' must be a trioweb.server.Site, not int"),
    ("from trioweb.resource import Resource\nfrom trioweb.server import Site\n"
     "resource = Resource()\nsite = Site(Resource())\n", "the site serves another resource"),
    ("from trioweb.resource import Resource\nresource = Resource()\nlisten = 'tcp:80'\n",
     ": 'listen' must be a list of endpoint strings"),
    ("from trioweb.resource import Resource\nresource = Resource()\nlisten = ['tcp:nope']\n",
     ": 'listen': "),
    ("from trioweb.resource import Resource\nresource = Resource()\nuid = 'no-such-user-here'\n",
     ": 'uid': no such user 'no-such-user-here'"),
    ("from trioweb.resource import Resource\nresource = Resource()\ngid = -1\n",
     ": 'gid' must be a name or a number, not -1"),
])
def test_errors_are_one_line_naming_the_file(tmp_path, source, expected):
    path = write(tmp_path, source)
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


def test_a_missing_file_and_a_directory(tmp_path):
    for path, reason in ((tmp_path / "missing.py", "No such file"), (tmp_path, "Is a directory")):
        with pytest.raises(ConfigError, match=reason) as caught:
            load(path)
        assert str(caught.value).startswith(str(path))


def test_a_nul_byte_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "nul.py"
    path.write_bytes(b"resource = 1\x00\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(str(path))
