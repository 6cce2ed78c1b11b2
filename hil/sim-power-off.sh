#!/bin/sh
# Power cut of a simulated board, fast (no Node start-up, so the cut lands within milliseconds of
# the runner's decision): SIGKILL its fwsim process, wait (bounded, 5 s, as `hil/sim-device.ts
# off`) until it is gone or a zombie, then forget its pid. Exit 1, pid kept, if it is still alive
# (a power-on must not start a second process for the board). Idempotent. Env: HIL_WORK, HIL_DEVICE.
f="$HIL_WORK/devices/$HIL_DEVICE.pid"
[ -f "$f" ] || exit 0
p=$(cat "$f")
kill -9 "$p" 2>/dev/null
i=0
while [ -r "/proc/$p/stat" ] && ! grep -q ') Z ' "/proc/$p/stat"; do
  if [ "$i" -ge 500 ]; then
    echo "process $p of $HIL_DEVICE still alive 5 s after SIGKILL" >&2
    exit 1
  fi
  sleep 0.01
  i=$((i + 1))
done
rm -f "$f"
