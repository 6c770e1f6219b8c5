#!/usr/bin/env bash
# Build faster_msgs with the ROS 2 pip wheels + system cmake/gcc and install it into a venv.
#
#   scripts/build_msgs.sh [VENV]        (default: $VENV, else <repo>/.venv)
#   FORCE=1 scripts/build_msgs.sh       rebuild even if up to date
#
# Installs with CMAKE_INSTALL_PREFIX=VENV, so `import faster_msgs` works in that venv with no
# environment variables. Also drops a .pth file that puts VENV on AMENT_PREFIX_PATH (see below).
# On a machine with a real ROS 2 install use colcon instead (README).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(realpath "${1:-${VENV:-$repo/.venv}}")"
src="$repo/faster_msgs"
py="$venv/bin/python"
[[ -x "$py" ]] || { echo "build_msgs: no python at $py" >&2; exit 1; }

# Up to date when the stamp is newer than every source file and this script.
stamp="$venv/share/faster_msgs/.built_by_build_msgs"
if [[ -z "${FORCE:-}" && -f "$stamp" ]] \
    && [[ -z "$(find "$src" "${BASH_SOURCE[0]}" -newer "$stamp" -print -quit)" ]]; then
  echo "build_msgs: faster_msgs up to date in $venv"
  exit 0
fi

# One build dir per venv, in the git-ignored build/ folder.
build="$repo/build/faster_msgs/$(printf '%s' "$venv" | sha1sum | cut -c1-10)"
mkdir -p "$build"

# A child python must not inherit the bootstrapper's guard from another interpreter.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"

start=$SECONDS
cmake -S "$src" -B "$build" \
  -DCMAKE_INSTALL_PREFIX="$venv" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_TESTING=OFF \
  -DPython3_EXECUTABLE="$py" \
  -DCMAKE_PROJECT_INCLUDE="$src/cmake/pip_wheels_fix.cmake" \
  > "$build/configure.log" || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --parallel "$(nproc)" > "$build/build.log" \
  || { tail -n 60 "$build/build.log"; exit 1; }
cmake --install "$build" > "$build/install.log"

# ament_index lookups (get_package_share_directory) need AMENT_PREFIX_PATH. A .pth line runs at
# every interpreter start; it sorts before ros_wheels_bootstrapper.pth, so the bootstrapper's
# re-exec and all child processes inherit it. The venv is appended once, as the underlay: a
# sourced colcon workspace listed before it keeps precedence.
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$site/faster_msgs_ament_prefix.pth" <<'PTH'
import os, sys; os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join([p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p and p != sys.prefix] + [sys.prefix])
PTH

# Check in a clean environment, as a user would run it.
env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH "$py" -c '
from faster_msgs.msg import ActionChunk, ModeChange, PolicyStatus
from faster_msgs.srv import SetInstruction, SetMode
from ament_index_python.packages import get_package_share_directory
get_package_share_directory("faster_msgs")
ActionChunk(positions=[0.0]); PolicyStatus(mode=PolicyStatus.MODE_HOLD)
'
touch "$stamp"
echo "build_msgs: faster_msgs built and installed into $venv in $((SECONDS - start)) s"
