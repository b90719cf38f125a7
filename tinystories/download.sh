#!/bin/sh
# tinystories/download.sh: download the real TinyStories (Eldan & Li 2023, CDLA-Sharing-1.0) from
# the Hugging Face hub and turn it into a tokenizer and token shards for train.c.
#
#   sh tinystories/download.sh [OUT_DIR]        (run from the repo root after `make`)
#
#   OUT_DIR         default out/tinystories; the text files go to OUT_DIR/raw
#   VOCAB=4096      vocabulary size of the tokenizer
#   TOKENIZER_MB=   train the tokenizer on the first N MB only (default: all 2.2 GB, about a minute)
#   TINYSTORIES_URL=  a mirror that serves the same file names (the size floors are then skipped)
#   FETCH=wget      force the downloader (default: curl if installed, else wget)
#   ALL_DATA=1      also fetch TinyStories_all_data.tar.gz (the GPT-3.5 + GPT-4 JSON shards) and
#                   encode it into train_all.bin / val_all.bin (1% of stories, by hash)
#
# Downloads resume (curl -C - / wget -c) and each file's size is checked against the server's
# Content-Length. Without network it stops within seconds; the built-in corpus needs none:
#   make demo    or    ./prepare generate --out out/builtin/stories.txt --mb 20
set -eu

OUT=${1:-out/tinystories}
VOCAB=${VOCAB:-4096}
PREPARE=${PREPARE:-./prepare}
BASE=${TINYSTORIES_URL:-https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main}
RAW="$OUT/raw"

die() {
    echo "error: $*" >&2
    exit 1
}

no_network() {
    cat >&2 <<EOF
error: cannot reach huggingface.co ($1).
  No internet here? The built-in corpus needs none:
    make demo
  or by hand:
    ./prepare generate --out out/builtin/stories.txt --mb 20
    ./prepare train-tokenizer --in out/builtin/stories.txt --vocab 1024 --out out/builtin/tok1024.bin
    ./prepare encode --tokenizer out/builtin/tok1024.bin --in out/builtin/stories.txt \\
        --out-train out/builtin/train.bin --out-val out/builtin/val.bin
EOF
    exit 1
}

[ -x "$PREPARE" ] || die "$PREPARE not found: run make first (or set PREPARE=path/to/prepare)"
FETCH=${FETCH:-}
if [ -z "$FETCH" ]; then
    if command -v curl >/dev/null 2>&1; then FETCH=curl
    elif command -v wget >/dev/null 2>&1; then FETCH=wget
    else die "neither curl nor wget is installed: install one, or use the built-in corpus (make demo)"
    fi
fi
[ "$FETCH" = curl ] || [ "$FETCH" = wget ] || die "FETCH=$FETCH: use curl or wget"

# Size in bytes announced by the server (the last Content-Length after redirects), or empty.
remote_size() {
    if [ "$FETCH" = curl ]; then
        curl -sSIL --connect-timeout 10 --max-time 60 "$1" 2>/dev/null
    else
        wget --spider -S --timeout=10 --tries=1 "$1" 2>&1
    fi | tr -d '\r' | awk 'tolower($1) == "content-length:" { n = $2 } END { print n }'
}

file_bytes() { wc -c <"$1" | tr -d ' '; }

# download NAME MIN_BYTES: fetch $BASE/NAME into $RAW/NAME, resuming a partial download
download() {
    min=$2 url="$BASE/$1" dest="$RAW/$1"
    [ -n "${TINYSTORIES_URL:-}" ] && min=0   # a mirror may serve smaller test files
    expected=$(remote_size "$url")
    if [ -f "$dest" ] && [ -n "$expected" ] && [ "$(file_bytes "$dest")" = "$expected" ]; then
        echo "$dest: already complete ($expected bytes)"
        return
    fi
    echo "downloading $url"
    if [ "$FETCH" = curl ]; then
        curl -fL --connect-timeout 10 --retry 3 -C - -o "$dest.part" "$url" || die "download of $url failed; rerun to resume"
    else
        wget -c --timeout=10 --tries=3 -O "$dest.part" "$url" || die "download of $url failed; rerun to resume"
    fi
    got=$(file_bytes "$dest.part")
    if [ -n "$expected" ] && [ "$got" != "$expected" ]; then
        die "$dest.part has $got bytes, the server announced $expected: delete it and rerun"
    fi
    [ "$got" -ge "$min" ] || die "$dest.part has only $got bytes (expected at least $min): delete it and rerun"
    mv "$dest.part" "$dest"
    echo "$dest: $got bytes"
}

# Fail fast without network: one HEAD request with a short connect timeout.
if [ "$FETCH" = curl ]; then
    curl -sSfIL --connect-timeout 8 --max-time 30 -o /dev/null "$BASE/TinyStoriesV2-GPT4-valid.txt" 2>/dev/null ||
        no_network "curl could not fetch the file list"
else
    wget --spider -q --timeout=8 --tries=1 "$BASE/TinyStoriesV2-GPT4-valid.txt" 2>/dev/null ||
        no_network "wget could not fetch the file list"
fi

mkdir -p "$RAW"
download TinyStoriesV2-GPT4-valid.txt 10000000
download TinyStoriesV2-GPT4-train.txt 1000000000
[ "${ALL_DATA:-0}" = 1 ] && download TinyStories_all_data.tar.gz 500000000

TOK="$OUT/tok$VOCAB.bin"
MAXMB=""
[ -n "${TOKENIZER_MB:-}" ] && MAXMB="--max-mb $TOKENIZER_MB"
# shellcheck disable=SC2086
"$PREPARE" train-tokenizer --in "$RAW/TinyStoriesV2-GPT4-train.txt" --vocab "$VOCAB" --out "$TOK" $MAXMB
"$PREPARE" encode --tokenizer "$TOK" --in "$RAW/TinyStoriesV2-GPT4-train.txt" --out "$OUT/train.bin"
"$PREPARE" encode --tokenizer "$TOK" --in "$RAW/TinyStoriesV2-GPT4-valid.txt" --out "$OUT/val.bin"
if [ "${ALL_DATA:-0}" = 1 ]; then
    "$PREPARE" encode --tokenizer "$TOK" --in "$RAW/TinyStories_all_data.tar.gz" \
        --out-train "$OUT/train_all.bin" --out-val "$OUT/val_all.bin" --val-fraction 0.01
fi
echo "done: tokenizer $TOK, shards $OUT/train.bin and $OUT/val.bin (the official validation split)"
echo "the data stays under CDLA-Sharing-1.0 (see the dataset page)"
