#!/usr/bin/env bash
# The evidence bench of docs/evidence.md: the builtin run that ranks settings and signals, the held-out run
# (250 prompts × 3 seeds) in 15 pieces, the builtin winner's extra held-out pieces, then the verdict. Pieces
# are claimed with mkdir, so a second copy of this script beside the first shares the work (JOBS=2 starts
# two); a finished piece is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out}
PY=".venv/bin/python -m scalingar_core"
SWEEP="gate.quantile=0.1 gate.quantile=0.3 gate.min_survivors=2"
HELD="plain,best_of_n,scalingar,random_prune"; for x in $SWEEP; do HELD="$HELD,scalingar@$x,random_prune@$x"; done
BUILT="plain,best_of_n,scalingar,random_prune"
for x in gate.quantile=0.1 gate.quantile=0.3 gate.warmup_fraction=0.25 gate.recovery_window=16 gate.min_survivors=2; do
  BUILT="$BUILT,scalingar@$x"
done
mkdir -p "$OUT"

pieces() {
  [ -f "$OUT/builtin/results.json" ] || ! mkdir "$OUT/.claim_builtin" 2>/dev/null || \
    $PY bench --model toy-shapes-256 --prompts builtin --per-category 20 --seeds 1 --n 8 --methods "$BUILT" \
      --workers 1 --out "$OUT/builtin"
  for seed in 0 1 2; do for part in 0 1 2 3 4; do
    d="$OUT/heldout_s${seed}_p${part}"
    [ -f "$d/results.json" ] || ! mkdir "$OUT/.claim_s${seed}_p${part}" 2>/dev/null || \
      $PY bench --model toy-shapes-256 --prompts heldout --seeds 1 --first-seed "$seed" --part "$part/5" --n 8 \
        --methods "$HELD" --workers 1 --out "$d"
  done; done
  # the builtin split's best point, added to the held-out split after the ranking (same prompts and seeds)
  for seed in 0 1 2; do for part in 0 1 2 3 4; do
    d="$OUT/heldoutrw16_s${seed}_p${part}"
    [ -f "$d/results.json" ] || ! mkdir "$OUT/.claimrw_s${seed}_p${part}" 2>/dev/null || \
      $PY bench --model toy-shapes-256 --prompts heldout --seeds 1 --first-seed "$seed" --part "$part/5" --n 8 \
        --methods scalingar@gate.recovery_window=16,random_prune@gate.recovery_window=16 --workers 1 --out "$d"
  done; done
}
for _ in $(seq "${JOBS:-1}"); do pieces & done
wait
.venv/bin/python -m scalingar_core.app.evidence --builtin "$OUT/builtin" --heldout "$OUT"/heldout_s?_p? "$OUT"/heldoutrw16_s?_p? \
  --builtin-out docs/bench_toy_builtin --heldout-out docs/bench_toy_heldout --out docs/bench_toy_heldout/verdict.md
