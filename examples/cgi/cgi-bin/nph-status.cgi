#!/bin/sh
# A non-parsed-header script: it writes its own status line.
printf 'HTTP/1.1 200 Everything Is Fine\r\nContent-Type: text/plain\r\n\r\nstatus: ok\n'
