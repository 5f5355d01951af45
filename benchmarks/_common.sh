# Shell helpers of the scripts for a lent GPU machine (benchmarks/gpu.sh,
# benchmarks/conv_encoder.sh); sourced, not run:
#   source "$(dirname "$0")/_common.sh"
#   begin                  # repository root, START, PY; output tee'd to $OUT/log.txt
#   install_wheels         # the wheels carried in .whl/, onto PYTHONPATH
#   limit=$(left MAX)      # seconds left of BUDGET, at most MAX, at least 1
#   missing_data DATASET   # true (and says what to copy) when an npz:DIR
#                          # dataset has no DIR/train.npz
#   finish                 # the closing line; log.txt complete on return

begin() {
  START=$(date +%s)
  cd "$(dirname "$0")/.." || exit 1
  : "${OUT:?set OUT to the results directory}"
  mkdir -p "$OUT"
  PY=${PYTHON:-python3}
  exec > >(tee "$OUT/log.txt") 2>&1
  TEE_PID=$!
  export PYTHONUNBUFFERED=1
}

install_wheels() {
  compgen -G ".whl/*.whl" > /dev/null || return 0
  local site
  site=$(mktemp -d /tmp/jaxcc_site.XXXXXX)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$site" .whl/*.whl || exit 1
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
}

# timeout 0 would never stop, hence at least 1.
left() {
  local rest=$(( BUDGET - ($(date +%s) - START) ))
  (( rest > $1 )) && rest=$1
  (( rest < 1 )) && rest=1
  echo "$rest"
}

missing_data() {
  local dir=${1#npz:}
  [[ $1 == npz:* && ! -f $dir/train.npz ]] || return 1
  echo "=== no $dir/train.npz: copy ../shared/data/${dir##*/} there and carry it"
}

finish() {
  echo "=== $(date -u +%H:%M:%S) done in $(( $(date +%s) - START ))s"
  exec > /dev/null 2>&1
  wait "$TEE_PID"
}
