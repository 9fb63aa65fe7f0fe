#!/usr/bin/env bash
# The package as a user gets it: `make build` (sdist, then the wheel built from that sdist, then
# twine check) must print no warning; the wheel, not editable, goes with its [all] extra
# (napari[all], hence a Qt binding) into a fresh venv in a temporary folder; from outside the
# repository, so only the installed copy is importable, `npe2 list` must show the plugin with its
# widget, sample data and menu, and a real viewer under xvfb-run must dock the widget.
# Run by .ci/run after `make test`; needs python3-venv, xvfb and xauth (.ci/run installs them).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
log() { printf '\n==> check_wheel: %s\n' "$*"; }
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH

log "make build"
# make build installs build and twine when they are missing; installing them first keeps pip's
# own messages (this machine's pip config makes it warn about absent local indexes) out of the
# log that must be free of warnings.
make venv >/dev/null
.venv/bin/python -m pip install --quiet build twine
make build 2>&1 | tee "$work/build.log"
if grep -in 'warn' "$work/build.log"; then
    echo "check_wheel: the build printed the warnings above" >&2
    exit 1
fi
.venv/bin/python .ci/check_wheel.py archives dist

wheels=(dist/napari_ecc_align-*.whl)
wheel=$repo/${wheels[0]}
version=$(basename "$wheel" | cut -d- -f2)

log "fresh venv in $work with $(basename "$wheel")[all]"
python3 -m venv "$work/venv"
py=$work/venv/bin/python
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "$wheel[all]"
"$py" -m pip show napari-ecc-align | grep -E '^(Version|Location|Editable)'

cd "$work"
log "npe2 list"
COLUMNS=10000 "$work/venv/bin/npe2" list --format json \
    --fields name,version,contributions.widgets,contributions.sample_data,contributions.menus \
    >npe2.json
"$py" "$repo/.ci/check_wheel.py" manifest npe2.json "$version"
"$work/venv/bin/napari-ecc-align" --version

log "dock the widget in a viewer (xvfb-run)"
xvfb-run -a "$py" "$repo/.ci/check_wheel.py" dock

log "passed in $((SECONDS - start)) s"
