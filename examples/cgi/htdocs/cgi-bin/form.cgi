#!/usr/bin/perl
# A form that posts to itself: reads QUERY_STRING on GET and stdin on POST.
use strict;
use warnings;

my $data = '';
if (($ENV{REQUEST_METHOD} // '') eq 'POST') {
    read(STDIN, $data, $ENV{CONTENT_LENGTH} // 0);
} else {
    $data = $ENV{QUERY_STRING} // '';
}
my %form;
for my $pair (split /&/, $data) {
    my ($name, $value) = map { my $s = $_ // ''; $s =~ tr/+/ /; $s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge; $s } split /=/, $pair, 2;
    $form{$name} = $value;
}
my $name = $form{name} // 'stranger';
$name =~ s/([<>&"'])/sprintf('&#%d;', ord($1))/ge;
print "Content-Type: text/html; charset=utf-8\r\n\r\n";
print "<!DOCTYPE html><html><body><p>Hello, $name!</p>\n";
print qq{<form method="post"><input name="name"><button>Greet</button></form></body></html>\n};
