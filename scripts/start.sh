#!/bin/sh
# `npm start`: compile to dist/ when it is missing or older than the sources (npm run build), then
# replace this shell with `node dist/server.js` (exec), so the signal npm forwards on SIGTERM/SIGINT
# reaches the service itself and nothing is left running behind it.
set -e
cd "$(dirname "$0")/.."
if [ ! -f dist/.built ] || [ -n "$(find src package.json tsconfig.json tsconfig.build.json -newer dist/.built -print -quit)" ]; then
  echo "fulfillment-ledger: compiling to dist/ (npm run build)" >&2
  npm run --silent build >&2
fi
exec node dist/server.js "$@"
