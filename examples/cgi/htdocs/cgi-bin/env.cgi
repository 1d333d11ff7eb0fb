#!/bin/sh
# Shows the environment the server gives a CGI script (RFC 3875 section 4.1).
printf 'Content-Type: text/plain\n\n'
env | LC_ALL=C sort
