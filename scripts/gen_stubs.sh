#!/usr/bin/env bash
# Regenerates the type stubs of the extension (python/speechlens/_C/*.pyi) after a binding
# changes; tests/python/test_stubs.py fails while they are out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
python3 -m pybind11_stubgen speechlens._C -o "$out" --ignore-all-errors >/dev/null
rm -rf python/speechlens/_C
cp -r "$out/speechlens/_C" python/speechlens/_C
rm -rf "$out"
