"""The tutorial's twistedmatrix.com configuration: a static site whose
directories may be indexed by a script, the users' sites under ``/users``
and at ``/~name/``, the documentation at ``/doc``, run as an unprivileged
user once port 80 is bound.

Twisted's configuration: a ``static.File`` root with ``indexNames``
including ``index.cgi``, ``CGIDirectory`` mounts, ``putChild('users',
distrib.UserDirectory())``, ``putChild('doc', ...)``, the root wrapped in
``RewriterResource(root, rewrite.tildeToUsers)``, and ``uid``/``gid``.

Not here yet: the ``CGIDirectory`` mounts and ``index.cgi`` (they need
``trioweb.twcgi``); until CGI is served, ``index.cgi`` stays out of
``indexNames``, or its source would be sent as a file.

trioweb's ``UserDirectory`` names users ``~alice`` below itself (Twisted's
named them ``alice``), so the rewrite rule here sends ``/~alice/...`` to
``/users/~alice/...`` where Twisted's ``tildeToUsers`` made it
``/users/alice/...``.

Run (as root): trioweb --config examples/config/twistedmatrix_com.py --listen tcp:80
"""

import os

from trioweb import distrib, rewrite, script, static

HERE = os.path.dirname(__file__)

root = static.File(os.path.join(HERE, "..", "htdocs"))
root.indexNames = ["index.html", "index.rpy"]
root.processors = {".rpy": script.ResourceScript}
root.putChild(b"users", distrib.UserDirectory(public_html=static.PublicFile))
root.putChild(b"doc", static.File("/usr/share/doc"))


def tilde_to_user_directory(request):
    """``/~alice/x`` → ``/users/~alice/x``: the user directory's own name for alice."""
    if request.postpath and request.postpath[0][:1] == b"~":
        request.postpath[:0] = [b"users"]
        request.path = b"/" + b"/".join(request.prepath + request.postpath)


resource = rewrite.RewriterResource(root, tilde_to_user_directory)

uid = "www-data"
gid = "www-data"
