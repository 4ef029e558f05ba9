#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: installs dependencies when missing, makes sure Redis and
# PostgreSQL answer (starting private ones under ./data if not), then typechecks, lints and runs every test.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ ! -x node_modules/.bin/vitest ]; then
  echo "test: installing dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
bash scripts/services.sh
bash scripts/test-tools.sh
npx tsc --noEmit -p .
npx biome check .
npx vitest run "$@"
