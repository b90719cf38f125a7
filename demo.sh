#!/bin/sh
# demo.sh: the whole LoopLM story on one machine with no network (run by `make demo`).
#
#   1. generate the built-in corpus of children's stories      out/demo/stories.txt
#   2. train a BPE tokenizer and encode train/val shards       out/demo/{tok,train,val}.bin
#   3. Stage I: train a small LoopLM (T = 4) on it              out/demo/ckpt.bin
#   4. Stage II: train the exit gate alone                      out/demo/ckpt_stage2.bin
#   5. export it and generate a story, each token coloured by the step at which it exited
#   6. print the validation CE at every step and the Q-exit table
#
# Everything goes under out/demo/. A second run reuses whatever is already there (delete the
# folder to start over); an interrupted training run resumes from its last checkpoint.
# Environment knobs: DEMO_STEPS (Stage I steps), DEMO_STAGE2_STEPS, DEMO_THREADS, DEMO_OUT.
set -eu
cd "$(dirname "$0")"
# OpenMP threads wait for each other at every parallel loop. By default they spin while waiting,
# which is fastest on an idle machine and disastrous (10x slower) when any other program holds a
# core; passive waiting costs little either way.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
OUT=${DEMO_OUT:-out/demo}
STEPS=${DEMO_STEPS:-700}
STAGE2_STEPS=${DEMO_STAGE2_STEPS:-150}
THREADS=${DEMO_THREADS:-0}
MODEL="-d 128 -H 4 -F 344 -L 2 -T 4 -B 8 -S 128"
mkdir -p "$OUT"
start=$(date +%s)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. built-in corpus (procedurally generated stories, no download)"
if [ ! -f "$OUT/stories.txt" ]; then
    ./prepare generate --out "$OUT/stories.txt" --mb 8 --seed 1
else
    echo "reusing $OUT/stories.txt"
fi
head -c 600 "$OUT/stories.txt"; echo " ..."

say "2. tokenizer (byte-level BPE, 1024 tokens) and token shards"
if [ ! -f "$OUT/val.bin" ]; then
    ./prepare train-tokenizer --in "$OUT/stories.txt" --vocab 1024 --out "$OUT/tok.bin"
    ./prepare encode --tokenizer "$OUT/tok.bin" --in "$OUT/stories.txt" \
        --out-train "$OUT/train.bin" --out-val "$OUT/val.bin"
else
    echo "reusing $OUT/tok.bin, $OUT/train.bin, $OUT/val.bin"
fi

DATA="--train $OUT/train.bin --val $OUT/val.bin --tokenizer $OUT/tok.bin --threads $THREADS"

say "3. Stage I: LM and exit gate together, $STEPS steps (loss = sum_t p(t) CE_t - 0.1 H(p))"
if [ -f "$OUT/ckpt.bin" ]; then RESUME=--resume; else RESUME=; fi
./train $DATA $MODEL --steps "$STEPS" --lr 3e-3 --warmup 50 --eval-every 200 --eval-batches 4 \
    --log-every 25 --ckpt "$OUT/ckpt.bin" --ckpt-every 100 --log "$OUT/log.csv" $RESUME

say "4. Stage II: the exit gate alone learns where one more step stops helping"
# Stage II resumes its own checkpoint, unless Stage I has moved on since it started (a rerun with
# more DEMO_STEPS): then it starts again from the new Stage I weights.
if [ -f "$OUT/ckpt_stage2.bin" ] && [ ! "$OUT/ckpt.bin" -nt "$OUT/ckpt_stage2.bin" ]; then S2="--resume"
else S2="--init $OUT/ckpt.bin --overwrite"; fi
./train $DATA -B 8 -S 128 --stage 2 $S2 --ckpt "$OUT/ckpt_stage2.bin" --steps "$STAGE2_STEPS" \
    --lr 1e-2 --warmup 10 --eval-every "$STAGE2_STEPS" --eval-batches 4 --log-every 50 \
    --log "$OUT/log.csv" --plot "$OUT/plots" --export "$OUT/model.bin"

say "5. a story from the exported model, each token coloured by its exit step (Q-exit, q = 0.6)"
./run "$OUT/model.bin" -i "Once upon a time" -n 160 -t 0.8 -s 7 -q 0.6 --show-depth

say "6. validation: CE at every static depth, each KV strategy, and the Q-exit trade-off"
./run "$OUT/model.bin" --eval "$OUT/val.bin" --eval-tokens 1024 --eval-q 0.4,0.6,0.8,1

end=$(date +%s)
say "done in $((end - start)) s. Figures: $OUT/plots/*.svg (open them in a browser)."
