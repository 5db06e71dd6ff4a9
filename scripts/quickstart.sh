#!/usr/bin/env bash
# The main job on a fresh machine: installs dependencies, builds, and runs gpufrac's demo — two
# workloads sharing one GPU at 0.5 each, each seeing half the card as its whole card and stopped at
# its limit, and a third refused. It uses the real GPU when the machine has an NVIDIA driver, and
# gpufrac's simulated driver otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
exec scripts/demo.sh build
