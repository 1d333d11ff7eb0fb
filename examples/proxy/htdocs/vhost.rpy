# The guide's vhost.rpy: paths below it name the public scheme and host.
from trioweb import vhost

resource = vhost.VHostMonsterResource()
