"""The Registry example with ``UserDirectory``: a resource script
(``registry_site/users.rpy``) builds one ``UserDirectory`` on first use and
keeps it in the site's ``registry``, so that every request shares it (and
its per-user limits) although the script runs per request.

Twisted's ``users.rpy``: ``resource = registry.getComponent(distrib.UserDirectory)``,
and if there is none yet, make one and ``registry.setComponent`` it; the
server runs with ``--allow-ignore-ext`` so that ``/users/`` finds it.

Run (as a user who can read the homes): trioweb --config examples/config/registry_users.py
"""

import os

from trioweb import script, static

resource = static.File(os.path.join(os.path.dirname(__file__), "registry_site"))
resource.processors = {".rpy": script.ResourceScript}
resource.ignoreExt(".rpy")
