#!/bin/sh
# make_corpus.sh [OUTDIR] - generates the seed corpora of the fuzz targets
# into OUTDIR/<target>/ (default: fuzz/corpus), using the engine itself:
# builds the release library, compiles fuzz/gen_corpus.c against it and
# runs it (it creates small databases in /tmp and copies their files in
# each target's input format).  Nothing generated is meant to be committed.
set -e
here=$(cd "$(dirname "$0")" && pwd)
engine=$(dirname "$here")
out=${1:-$here/corpus}
cc=${CC:-cc}

make -C "$engine" lib > /dev/null
mkdir -p "$engine/build/fuzz"
$cc -std=c11 -D_GNU_SOURCE -pthread -O1 -g -Wall -Wextra -Werror -Wmissing-prototypes \
    -Wdeclaration-after-statement -Werror=vla -I"$engine/include" -I"$engine/src" \
    -o "$engine/build/fuzz/gen_corpus" "$here/gen_corpus.c" "$engine/build/release/libkvsep.a" \
    -lsnappy -lzstd -lm -pthread
rm -rf "$out"
mkdir -p "$out"
"$engine/build/fuzz/gen_corpus" "$out"
for d in "$out"/*/; do
    echo "corpus $(basename "$d"): $(ls "$d" | wc -l) seeds"
done
