#!/usr/bin/env bash
# npm run coverage: the whole suite with coverage (tap's ts-node plugin, V8 coverage mapped through its source
# maps) against the floors of scripts/coverage.taprc, from a copy of the tracked files (tap reads only the
# project's .taprc, which runs the suite through tsx without coverage). The copy shares node_modules; tap builds
# its plugin set for the copy's config, and `npm test` builds it back (`tap build`) before its own run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$copy"
cp scripts/coverage.taprc "$copy/.taprc"
ln -s "$root/node_modules" "$copy/node_modules"
[[ -d dist ]] && cp -r dist "$copy/dist"
cd "$copy"
npx tap build
status=0
npx tap "$@" || status=$?
exit "$status"
