# Run by PerlScript (perl index.pl): no #! line and no executable bit needed.
use strict;
use warnings;
print "Content-Type: text/plain\n\n";
print "Hello from Perl $^V\n";
print "SCRIPT_NAME=$ENV{SCRIPT_NAME}\n";
