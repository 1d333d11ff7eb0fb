# The Registry example: one UserDirectory for the whole site, kept in the
# registry of the directory this script is in, made on the first request.
# Reached as /users/ (the site ignores the .rpy extension); a user's site is
# /users/alice/ (or /users/~alice/).
from trioweb import distrib, static

resource = registry.getComponent(distrib.UserDirectory)  # noqa: F821 (given to resource scripts)
if resource is None:
    resource = distrib.UserDirectory(public_html=static.PublicFile)
    registry.setComponent(distrib.UserDirectory, resource)  # noqa: F821
