# The guide's "Serving PHP/Perl/CGI" resource script: .pl files below
# examples/cgi/perlsite are run by perl, index.pl is the index.
# Run: trioweb --path examples/cgi/htdocs   then open /perl.rpy/
# (The guide points at "/perlsite"; here it is the directory beside this one.)
# The same lines make a configuration file (trioweb --config, docs/config.md).
import os

from trioweb import static, twcgi


class PerlScript(twcgi.FilteredScript):
    filter = "/usr/bin/perl"  # Points to the perl parser


resource = static.File(os.path.join(os.path.dirname(os.path.dirname(__file__)), "perlsite"))
resource.processors = {".pl": PerlScript}  # Files that end with .pl are processed by PerlScript
resource.indexNames = ["index.pl"]
