"""trioweb: a web server for Python on trio, in the model of Twisted Web."""

from trioweb._version import __version__

__all__ = ["__version__"]
