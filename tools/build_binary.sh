#!/usr/bin/env bash
# Build the one-folder binary (dist/faceattr/) with PyInstaller and run its self-test.
#   bash tools/build_binary.sh [--model PATH]   (from the repo root, in the app's environment)
# --model: the ONNX model the self-test uses (default: the bundled assets/models one).
# Needs: pip install -e '.[build]'. Prints the build time in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

python -c "import PyInstaller" 2>/dev/null || {
    echo "build_binary.sh: PyInstaller is not installed (pip install -e '.[build]')" >&2; exit 2; }

start=$(date +%s)
python -m PyInstaller --noconfirm --clean --log-level WARN build.spec
end=$(date +%s)
echo "build_binary.sh: built dist/faceattr in $((end - start)) s ($(du -sh dist/faceattr | cut -f1))"

QT_QPA_PLATFORM=offscreen dist/faceattr/faceattr --self-test "$@"
