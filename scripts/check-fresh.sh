#!/usr/bin/env bash
# Checks the fresh-machine promise of the README: `make run` and `make test` (and every other
# target that compiles) begin with the one dependency installer, and that installer provides
# every non-Rust tool the build runs (the vendored libjpeg-turbo needs cmake and nasm).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
for target in run test build failpoints bench; do
    out=$(make --no-print-directory -n "$target" 2>/dev/null || true)
    first=${out%%$'\n'*}
    if [ "$first" != "scripts/install-deps.sh" ]; then
        echo "check-fresh: 'make $target' starts with '$first', not scripts/install-deps.sh"
        fail=1
    fi
done
for tool in cmake nasm cc cbindgen pkg-config man; do
    if ! grep -q "command -v $tool " scripts/install-deps.sh; then
        echo "check-fresh: scripts/install-deps.sh does not install $tool"
        fail=1
    fi
done
[ $fail -eq 0 ] && echo "check-fresh: make run, make test and every compiling target start with scripts/install-deps.sh"
exit $fail
