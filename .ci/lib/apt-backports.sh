#!/usr/bin/env bash
# Adds Debian's <codename>-backports suite, derived from the machine's own apt
# sources (same mirror, same keyring), so no host name is written into the repo.
set -euo pipefail
. /etc/os-release
suite="${VERSION_CODENAME}-backports"
target=/etc/apt/sources.list.d/fti-backports.sources
if grep -rqs "$suite" /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
  exit 0
fi
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  # deb822: copy the first stanza that carries the main suite, swapping in backports.
  awk -v suite="$suite" -v main="$VERSION_CODENAME" '
    BEGIN { RS=""; ORS="\n\n" }
    $0 ~ ("Suites:[^\n]*" main "([ \n]|$)") && !done {
      n = split($0, lines, "\n"); out = ""
      for (i = 1; i <= n; i++) {
        if (lines[i] ~ /^Suites:/) lines[i] = "Suites: " suite
        if (lines[i] ~ /^#/) continue
        out = out lines[i] "\n"
      }
      printf "%s", out; done = 1
    }' /etc/apt/sources.list.d/debian.sources > "$target"
elif [ -f /etc/apt/sources.list ]; then
  line=$(grep -E "^deb [^ ]+ ${VERSION_CODENAME} " /etc/apt/sources.list | head -n 1)
  [ -n "$line" ] || { echo "no $VERSION_CODENAME line in /etc/apt/sources.list to derive backports from" >&2; exit 1; }
  echo "$line" | sed -E "s/ ${VERSION_CODENAME} / ${suite} /" > /etc/apt/sources.list.d/fti-backports.list
  target=/etc/apt/sources.list.d/fti-backports.list
fi
[ -s "$target" ] || { echo "could not derive a backports source" >&2; exit 1; }
echo "added $target:"; cat "$target"
