#!/bin/sh
# twistedmatrix.com's front page came from an index.cgi; this one says who ran it.
printf 'Content-Type: text/html; charset=utf-8\n\n'
printf '<h1>twistedmatrix.com</h1>\n<p>index.cgi at %s, run as uid %s</p>\n' "$SCRIPT_NAME" "$(id -u)"
