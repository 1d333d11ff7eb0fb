"""Resource scripts (.rpy): globals, registry, cache(), errors, the directory and wrapper kinds."""

from __future__ import annotations

import textwrap

import pytest

from trioweb.resource import Resource
from trioweb.script import ResourceScript, ResourceScriptDirectory, ResourceScriptWrapper
from trioweb.static import File, Registry

COUNTER = """
    from trioweb.resource import Resource

    class Visits:
        pass

    key = "visits"  # a stable key: the class above is new on every run
    state = registry.getComponent(key)
    if state is None:
        state = {"count": 0, "runs": 0}
        registry.setComponent(key, state)
    state["runs"] += 1

    class Page(Resource):
        isLeaf = True
        def render_GET(self, request):
            state["count"] += 1
            return b"%d %d %s" % (state["count"], state["runs"], __file__.encode())

    resource = Page()
"""


@pytest.fixture
def scripts(tmp_path):
    site = tmp_path / "site"
    (site / "deeper").mkdir(parents=True)

    def write(name: str, source: str) -> None:
        (site / name).write_text(textwrap.dedent(source))

    write("counter.rpy", COUNTER)
    write("deeper/counter.rpy", COUNTER)
    write("forgot.rpy", "x = 1\n")
    write("broken.rpy", "raise RuntimeError('broken on purpose <tag>')\n")
    write("syntax.rpy", "def (:\n")
    write("notresource.rpy", "resource = 'a string'\n")
    write("cached.rpy", """
        import itertools
        from trioweb.resource import Resource
        cache()
        runs = registry.getComponent("runs") or itertools.count(1)
        registry.setComponent("runs", runs)
        class Page(Resource):
            isLeaf = True
            n = next(runs)
            def render_GET(self, request):
                return b"run %d" % self.n
        resource = Page()
    """)
    return site


def _root(path) -> File:
    root = File(str(path))
    root.processors = {".rpy": ResourceScript}
    return root


async def test_script_runs_per_request_with_shared_registry(scripts, serve_in_memory):
    root = _root(scripts)
    site = await serve_in_memory(root)
    assert (await site.get("/counter.rpy")).body == b"1 1 %s" % str(scripts / "counter.rpy").encode()
    assert (await site.get("/counter.rpy")).body.startswith(b"2 2 ")
    # The registry belongs to the File tree: a script deeper down shares it.
    assert (await site.get("/deeper/counter.rpy")).body.startswith(b"3 3 ")
    assert root.registry.getComponent("visits")["runs"] == 3


async def test_edits_show_on_the_next_request(scripts, serve_in_memory):
    site = await serve_in_memory(_root(scripts))
    (scripts / "edit.rpy").write_text(
        "from trioweb.static import Data\nresource = Data(b'first', 'text/plain')\n")
    assert (await site.get("/edit.rpy")).body == b"first"
    (scripts / "edit.rpy").write_text(
        "from trioweb.static import Data\nresource = Data(b'second', 'text/plain')\n")
    assert (await site.get("/edit.rpy")).body == b"second"


async def test_cache_keeps_the_first_resource(scripts, serve_in_memory):
    site = await serve_in_memory(_root(scripts))
    assert (await site.get("/cached.rpy")).body == b"run 1"
    assert (await site.get("/cached.rpy")).body == b"run 1"


async def test_forgetting_resource_says_so(scripts, serve_in_memory):
    site = await serve_in_memory(_root(scripts))
    response = await site.get("/forgot.rpy")
    assert response.status == 500
    assert b'You forgot to assign to the variable &quot;resource&quot; in your script.' in response.body


@pytest.mark.parametrize("name", ["broken.rpy", "syntax.rpy", "notresource.rpy"])
async def test_failing_script_is_the_normal_500(scripts, serve_in_memory, name):
    site = await serve_in_memory(_root(scripts))
    response = await site.get("/" + name)
    assert response.status == 500
    assert b"Processing Failed" in response.body
    assert b"Traceback" not in response.body and b"broken on purpose" not in response.body
    detailed = await serve_in_memory(_root(scripts), displayTracebacks=True)
    response = await detailed.get("/" + name)
    assert response.status == 500
    assert b"Traceback" in response.body
    assert str(scripts / name).encode() in response.body
    if name == "broken.rpy":
        assert b"broken on purpose &lt;tag&gt;" in response.body


async def test_missing_script_is_404(scripts, serve_in_memory):
    site = await serve_in_memory(_root(scripts))
    assert (await site.get("/nothing.rpy")).status == 404


async def test_index_rpy(scripts, serve_in_memory):
    (scripts / "deeper" / "index.rpy").write_text(
        "from trioweb.static import Data\nresource = Data(b'index script', 'text/plain')\n")
    site = await serve_in_memory(_root(scripts))
    assert (await site.get("/deeper/")).body == b"index script"


async def test_resource_script_directory(scripts, serve_in_memory):
    root = Resource()
    root.putChild(b"scripts", ResourceScriptDirectory(str(scripts)))
    site = await serve_in_memory(root)
    assert (await site.get("/scripts/counter.rpy")).body.startswith(b"1 1 ")
    assert (await site.get("/scripts/deeper/counter.rpy")).body.startswith(b"2 2 ")
    for path in ("/scripts", "/scripts/", "/scripts/missing", "/scripts/deeper/", "/scripts/%2e%2e/x",
                 "/scripts/..", "/scripts/a%2fb"):
        assert (await site.get(path)).status == 404, path


async def test_resource_script_wrapper(scripts, serve_in_memory):
    site = await serve_in_memory(ResourceScriptWrapper(str(scripts / "counter.rpy")))
    assert (await site.get("/")).body.startswith(b"1 1 ")
    assert (await site.get("/any/path")).body.startswith(b"2 2 ")


async def test_wrapper_of_non_leaf_resource_is_traversed(tmp_path, serve_in_memory):
    script = tmp_path / "tree.rpy"
    script.write_text(textwrap.dedent("""
        from trioweb.resource import Resource
        from trioweb.static import Data
        resource = Resource()
        resource.putChild(b"", Data(b"top", "text/plain"))
        resource.putChild(b"child", Data(b"child", "text/plain"))
    """))
    site = await serve_in_memory(ResourceScriptWrapper(str(script), Registry()))
    assert (await site.get("/")).body == b"top"
    assert (await site.get("/child")).body == b"child"
    assert (await site.get("/other")).status == 404
