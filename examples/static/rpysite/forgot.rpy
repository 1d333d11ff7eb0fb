# A resource script that forgets to set "resource": the answer is a 500 page saying so.
from trioweb.resource import Resource


class Forgotten(Resource):
    pass
