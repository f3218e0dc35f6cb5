#!/bin/bash
# teardown.sh : stops the services setup.sh started (images and archives are kept).
W=${CRT_WORK:-/tmp/scar-crt}
for pidfile in "$W"/*.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; rm -f "$pidfile"
done
exit 0
