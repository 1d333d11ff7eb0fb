"""The guide's "Advanced Techniques" (second example): the ports to listen
on are read from a file of numbers.

Twisted: ``for num in map(int, open("/etc/web/ports").read().split()):``
adding an ``internet.TCPServer(num, site)`` for each.

Here each number becomes an endpoint string in ``listen``. The file is
``/etc/web/ports`` unless the environment variable ``WEB_PORTS`` names
another; ``WEB_INTERFACE`` (optional) is the address to listen on.

Run: echo 8080 8081 > ports; WEB_PORTS=ports trioweb --config examples/config/ports_from_file.py
"""

import os

from trioweb import server, static

PORTS = os.environ.get("WEB_PORTS", "/etc/web/ports")
INTERFACE = os.environ.get("WEB_INTERFACE")

site = server.Site(static.File(os.path.join(os.path.dirname(__file__), "..", "htdocs")))

with open(PORTS) as ports:
    listen = [f"tcp:{int(number)}" + (f":interface={INTERFACE}" if INTERFACE else "")
              for number in ports.read().split()]
