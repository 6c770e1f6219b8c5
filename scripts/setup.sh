#!/usr/bin/env bash
# Create or refresh the development venv (what `make setup` runs):
#
#   scripts/setup.sh [VENV]      (default: $VENV, else <repo>/.venv; PYTHON=python3.x to choose)
#
# Steps: venv -> ROS 2 Kilted wheels + build tools -> torch==2.13.0 alone (the CPU build: set
# PIP_FIND_LINKS or PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu where PyPI would give
# a CUDA build) -> plain requirements (torch held by a constraint) -> the simulator
# (requirements/sim.txt: gym-aloha + mujoco, about 15 s) -> faster_msgs -> faster_ros editable.
# Each step stores a hash of its inputs under VENV/.setup-stamps and is skipped while the hash
# matches, so a second run takes seconds. Delete that folder (or the venv) to force a redo.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${1:-${VENV:-$repo/.venv}}"
py="$venv/bin/python"
stamps="$venv/.setup-stamps"
torch_pin="torch==2.13.0"

unset _ROS_WHEELS_BOOTSTRAP_COMPLETE  # never reuse another interpreter's ROS bootstrap
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Short hash of the files that exist among the arguments.
hash_of() {
  local f
  for f in "$@"; do if [[ -f "$f" ]]; then cat "$f"; fi; done | sha256sum | cut -c1-16
}

# step NAME KEY CMD...: run CMD unless the stamp of NAME already holds KEY.
step() {
  local name=$1 key=$2 t0=$SECONDS
  shift 2
  if [[ "$(cat "$stamps/$name" 2>/dev/null)" == "$key" ]]; then
    echo "setup: $name up to date"
    return
  fi
  echo "setup: $name ..."
  "$@"
  mkdir -p "$stamps"
  echo "$key" > "$stamps/$name"
  echo "setup: $name done in $((SECONDS - t0)) s"
}

pip_install() { "$py" -m pip install --quiet "$@"; }

make_venv() {
  "${PYTHON:-python3}" - <<'PY'
import sys
if not (3, 10) <= sys.version_info[:2] <= (3, 13):
    sys.exit(f"setup: the ROS 2 wheels need CPython 3.10-3.13, not {sys.version.split()[0]}")
PY
  "${PYTHON:-python3}" -m venv "$venv"
}

install_plain() {
  printf '%s\n' "$torch_pin" > "$stamps/torch-constraint.txt"
  pip_install -r requirements/base.txt -r requirements/dev.txt -c "$stamps/torch-constraint.txt"
}

install_package() {
  "$py" -c 'import setuptools' 2>/dev/null \
    || { echo "setup: no setuptools in $venv; pin one in requirements/dev.txt" >&2; exit 1; }
  pip_install --no-deps --no-build-isolation -e .
}

total0=$SECONDS
[[ -x "$py" ]] || make_venv
mkdir -p "$stamps"
step ros "$(hash_of requirements/ros-kilted.txt requirements/ros-build.txt)" \
  pip_install -r requirements/ros-kilted.txt -r requirements/ros-build.txt
step torch "$torch_pin" pip_install "$torch_pin"
step plain "$(hash_of requirements/base.txt requirements/dev.txt)-$torch_pin" install_plain
step sim "$(hash_of requirements/sim.txt)-$torch_pin" \
  pip_install -r requirements/sim.txt -c "$stamps/torch-constraint.txt"
scripts/build_msgs.sh "$venv"
if [[ -f setup.py ]]; then
  step package "$(hash_of setup.py setup.cfg package.xml)" install_package
else
  echo "setup: no setup.py yet, faster_ros not installed"
fi
echo "setup: $venv ready in $((SECONDS - total0)) s"
