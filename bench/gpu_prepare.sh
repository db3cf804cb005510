#!/usr/bin/env bash
# Prepare the one-call GPU campaign (bench/results/gpu/CAMPAIGN.md), here, from the project root of a clone with
# ../shared beside it: the wheels the GPU machine lacks into .whl/, the course's label files into .course/ (both
# git-ignored, never committed), then print the command for the device and the folders to carry, and check that
# what travels stays under the device's 64 MiB.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared="$root/../shared"
[ -d "$shared/device" ] && [ -d "$shared/iclevr/course" ] || {
  echo "error: $shared/device and $shared/iclevr/course are needed beside the project" >&2; exit 2; }

# diffusers (fastddpm's UNet blocks) and its one missing dependency: the only packages the campaign needs that
# the GPU machine's image lacks (../shared/device/README.md); quiet unless it fails.
bash "$shared/device/wheels.sh" > /dev/null
mkdir -p .course
cp "$shared/iclevr/course/test.json" "$shared/iclevr/course/new_test.json" .course/
for folder in .whl .course; do
  git check-ignore -q "$folder" || { echo "error: $folder is not git-ignored" >&2; exit 2; }
done

tracked=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 -r stat -c %s -- 2>/dev/null \
  | awk '{s += $1} END {print s + 0}')
carried=$(du -sb .whl .course | awk '{s += $1} END {print s + 0}')
total=$((tracked + carried))
limit=$((64 * 1024 * 1024))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "travels: working tree $(mib "$tracked") + .whl and .course $(mib "$carried") = $(mib "$total") (limit 64 MiB)"
[ "$total" -lt "$limit" ] || { echo "error: what travels is over 64 MiB" >&2; exit 2; }

command='python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 bench/gpu_campaign.py --out "$OUT" --labels-dir .course --budget-s 540'
echo "carry: [\".whl\", \".course\"]"
echo "timeout_s: 600"
echo "command (${#command} characters):"
echo "$command"
