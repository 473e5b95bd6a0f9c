#!/usr/bin/env bash
# npm run bench: every benchmark in turn, then the report (BENCHMARKS.md, BENCHMARKS.json).
# A benchmark that fails does not stop the others; the report still runs, and the exit status says which failed.
# The metering benchmark runs at 100,000 records here (RECORDS=1000000 npm run bench:metering for the full figure).
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
# The service benchmarks start the compiled service (dist/server.js) as production does: build it first.
echo "=== build ($(date -u +%H:%M:%S))"
npm run --silent build || { echo "the build failed: the benchmarks would run the service through tsx" >&2; exit 1; }
for bench in store projections replay reconcile ingest notifications service metering; do
  echo "=== bench:${bench} ($(date -u +%H:%M:%S))"
  if [[ $bench == metering ]]; then
    RECORDS=${RECORDS:-100000} npm run --silent "bench:${bench}" || failed+=("$bench")
  else
    npm run --silent "bench:${bench}" || failed+=("$bench")
  fi
done
npm run --silent bench:report || failed+=(report)
if ((${#failed[@]} > 0)); then
  echo "benchmarks that failed: ${failed[*]}" >&2
  exit 1
fi
