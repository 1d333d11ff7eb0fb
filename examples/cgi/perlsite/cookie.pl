# Two cookies and a status of its own.
print "Status: 201 Made\n";
print "Set-Cookie: flavour=oatmeal\n";
print "Set-Cookie: count=1\n";
print "Content-Type: text/plain\n\n";
print "two cookies\n";
