#!/usr/bin/env bash
# Run here, before the GPU check: what bench/gpu_check.sh needs on a GPU machine that cannot reach
# the network. Puts the wheels fsv needs beyond that machine's PyTorch image (Python 3.12: zarr,
# numcodecs, donfig, google-crc32c, zlib-ng, PyAV) into .whl/ and the real videos into .gpu/videos,
# both ignored by git (.git/info/exclude), about 50 MB together. Then run the check with both carried:
#   bash bench/gpu_check.sh            (on the GPU machine, with .whl and .gpu carried)
set -euo pipefail
cd "$(dirname "$0")/.."
VIDEOS=${1:-../shared/data/videos}
for d in /.whl/ /.gpu/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
mkdir -p .whl .gpu/videos
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 zlib-ng==1.1.0 av==18.1.0
cp "$VIDEOS"/*.mp4 .gpu/videos/
du -sh .whl .gpu
