# The guide's first resource script: it must set the variable "resource".
from trioweb import resource


class MyGreatResource(resource.Resource):
    def render_GET(self, request):
        return b"<html>foo</html>"


resource = MyGreatResource()
