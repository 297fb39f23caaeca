#!/usr/bin/env bash
# The prepared GPU check, in two parts that each fit one device call (600 s):
#   flow (the default; issue 16), within about 8 minutes on one GPU:
#     1. installs what fsv needs beyond the machine's PyTorch, from the wheels bench/gpu_prepare.sh
#        put in .whl/ (such a machine cannot reach the network),
#     2. bench/flow.py --device cuda: tvl1-torch on CUDA against the reference, and pairs/s,
#     3. bench/extract.py --device cuda: I3D RGB + tvl1-torch flow, end-to-end against model-only,
#     4. one summary table (bench/gpu_summary.py): pairs/s, snippets/s, end-to-end / model-only, GPU memory;
#   transformers (issue 29), within about 5 minutes:
#     1. as above,
#     2. bench/extract.py --device cuda --precision bf16: CLIP ViT-B/16 frames and VideoMAE V2-g
#        windows, end-to-end against model-only,
#     3. bench/vit_forward.py --device cuda --precision bf16: fsv's transformers against transformers'
#        forward on the same weights (only where the machine's image has transformers: the carried
#        wheels cannot hold it),
#     4. the summary table.
# Figures land in $OUT (or a fresh temporary folder): flow.json, extract.json and summary.txt;
# extract_vit.json, vit_forward.json and summary_transformers.txt.
#
#   bash bench/gpu_check.sh [flow]             # on the GPU machine
#   bash bench/gpu_check.sh transformers       # on the GPU machine, a second call
#   bash bench/gpu_check.sh --cpu [PART]       # the same steps at reduced sizes on the CPU (the test suite runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
cpu=0
if [ "${1:-}" = "--cpu" ]; then cpu=1; shift; fi
part=${1:-flow}
case "$part" in flow|transformers) ;; *) echo "unknown part $part: flow or transformers" >&2; exit 2 ;; esac
if [ "$cpu" = 1 ]; then
  device=cpu
  flow_args=(--quick --skip-speed)
  extract_args=(--quick --units 1 --batch-size 1 --repeats 1 --clip-seconds 1 --flow dis)
  vit_args=(--backbones clip-vit-b32 --quick --units 1 --batch-size 1 --repeats 1 --clip-seconds 1)
  forward_args=(--backbones clip-vit-b32 --frames 1 --reps 1)
else
  device=cuda
  flow_args=(--videos 3 --snippets 1 --pairs 32 --repeats 2)
  extract_args=(--units 24 --repeats 2 --flow tvl1-torch)
  vit_args=(--backbones clip-vit-b16 videomaev2-g --units 64 --repeats 2 --precision bf16)
  forward_args=(--backbones clip-vit-b16 videomaev2-g --frames 64 --clips 8 --reps 5 --precision bf16)
fi
if ! "$PY" -c "import zarr, av, zlib_ng" 2>/dev/null; then
  [ -d .whl ] || { echo "fsv's packages are missing and there is no .whl/: run bench/gpu_prepare.sh where pip works" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fsv-site .whl/*.whl
  export PYTHONPATH=/tmp/fsv-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
videos=.gpu/videos
[ -d "$videos" ] || videos=../shared/data/videos
[ -d "$videos" ] || videos=none
"$PY" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
[ "$device" = cpu ] || "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --cpu')"
if [ "$part" = flow ]; then
  timeout 330 "$PY" bench/flow.py --device "$device" --real "$videos" --json "$out/flow.json" "${flow_args[@]}" | tee "$out/flow.txt"
  timeout 210 "$PY" bench/extract.py --backbones i3d --streams rgb,flow --device "$device" --skip-rss --real "$videos" \
    --json "$out/extract.json" "${extract_args[@]}" | tee "$out/extract.txt"
  "$PY" bench/gpu_summary.py "$out/flow.json" "$out/extract.json" | tee "$out/summary.txt"
else
  timeout 180 "$PY" bench/extract.py --device "$device" --skip-rss --real "$videos" --json "$out/extract_vit.json" "${vit_args[@]}" | tee "$out/extract_vit.txt"
  if "$PY" -c "import transformers" 2>/dev/null; then
    timeout 100 "$PY" bench/vit_forward.py --device "$device" --json "$out/vit_forward.json" "${forward_args[@]}" | tee "$out/vit_forward.txt"
  else
    echo "vit_forward: skipped (transformers is not installed on this machine)" | tee "$out/vit_forward.txt"
  fi
  "$PY" bench/gpu_summary.py "$out/extract_vit.json" "$out/vit_forward.json" | tee "$out/summary_transformers.txt"
fi
