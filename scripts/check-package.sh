#!/usr/bin/env bash
# npm run check:package — build, pack, install the tarball globally into a temp prefix (as on a
# machine without TypeScript or tsx) and run each installed program's --help and --version.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" >/dev/null   # prepack runs npm run build
tarball=$(ls "$tmp"/*.tgz)
npm install -g --silent --no-audit --no-fund --prefix "$tmp/prefix" "$tarball"
lib="$tmp/prefix/lib/node_modules/fwgate"
for dev in typescript tsx; do
  if [ -e "$lib/node_modules/$dev" ]; then echo "check:package: $dev was installed with the package" >&2; exit 1; fi
done
for tool in fwgate fwpush fwsim fwsign; do
  [ -x "$tmp/prefix/bin/$tool" ] || continue
  "$tmp/prefix/bin/$tool" --help >"$tmp/help.txt"
  grep -q "^Usage: $tool" "$tmp/help.txt" || { echo "check:package: $tool --help printed no usage" >&2; exit 1; }
  flag=--version; case $tool in fwpush|fwsign) flag=-V;; esac
  version=$("$tmp/prefix/bin/$tool" $flag)
  [ "$version" = "$tool $(node -p 'require("./package.json").version')" ] || { echo "check:package: $tool $flag printed '$version'" >&2; exit 1; }
  echo "check:package: $tool --help and $flag ok ($version)"
done
# the serial port list loads serialport's native binding (prebuilt; no install script needed)
"$tmp/prefix/bin/fwpush" ports --json | grep -q '"ports"' || { echo "check:package: fwpush ports failed" >&2; exit 1; }
echo "check:package: fwpush ports ok (serialport binding loads)"
echo "check:package: $(basename "$tarball") installs and runs ($(du -k "$tarball" | cut -f1) KiB)"
