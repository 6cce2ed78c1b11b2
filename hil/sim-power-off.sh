#!/bin/sh
# Power cut of a simulated board, fast (no Node start-up, so the cut lands within milliseconds of
# the runner's decision): SIGKILL its fwsim process, wait (bounded, 2 s) until it is gone or a
# zombie, forget its pid. The same as `hil/sim-device.ts off`. Idempotent. Env: HIL_WORK, HIL_DEVICE.
f="$HIL_WORK/devices/$HIL_DEVICE.pid"
[ -f "$f" ] || exit 0
p=$(cat "$f")
kill -9 "$p" 2>/dev/null
i=0
while [ "$i" -lt 200 ] && [ -r "/proc/$p/stat" ] && ! grep -q ') Z ' "/proc/$p/stat"; do
  sleep 0.01
  i=$((i + 1))
done
rm -f "$f"
