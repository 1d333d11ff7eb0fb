# The guide's resource script with persistent data: the registry keeps one
# Counter per File tree, across requests (the script itself runs each time).
import os
import sys

# The guide imports Counter from a module ("SillyWeb"); ours is examples/static/sillyweb.py.
_modules = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
if _modules not in sys.path:
    sys.path.append(_modules)

from sillyweb import Counter  # noqa: E402

from trioweb import resource  # noqa: E402

counter = registry.getComponent(Counter)  # noqa: F821 (registry is given to resource scripts)
if not counter:
    registry.setComponent(Counter, Counter())  # noqa: F821
counter = registry.getComponent(Counter)  # noqa: F821


class MyResource(resource.Resource):
    def render_GET(self, request):
        counter.increment()
        return b"you are visitor %d" % counter.getValue()


resource = MyResource()
