#!/usr/bin/env bash
# Installs the test tools that come from PyPI into a virtual environment under ~/.cache/den,
# keyed by their pinned versions: schemathesis, which fuzzes dend's API from its OpenAPI
# document. Prints the environment's folder.
set -euo pipefail
SCHEMATHESIS=4.32.5
venv="${DEN_CACHE:-$HOME/.cache/den}/venv/schemathesis-$SCHEMATHESIS"
if [ ! -f "$venv/.complete" ]; then
  echo "den: installing schemathesis $SCHEMATHESIS from PyPI into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS" >&2
  touch "$venv/.complete"
fi
echo "$venv"
