#!/usr/bin/env bash
# Builds the benchmark origin folder (default /tmp/imgedge-peers/data) from the corpus:
#   photos/*.jpg, photos/*.webp   copied from corpus/photos (real photos, 290x442 .. 5312x2988)
#   png/*.png                     4 photo PNGs made here with vips + 2 RGBA PNGs from corpus/alpha
#   srcset/pNNN_<photo>.jpg       (added for imgedge) SRCSET_COPIES (default 96) copies of each of the
#                                 7 photos/*.jpg under distinct names, for the `srcset` cell: 672 originals
# Idempotent: files already present are kept. Usage: prepare-data.sh [DEST]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dest=${1:-$PEERS_ROOT/data}
[[ -d $CORPUS_DIR/photos ]] || die "corpus not found at $CORPUS_DIR (set CORPUS_DIR)"
command -v vips >/dev/null || die "vips not found (./install.sh vips)"
mkdir -p "$dest/photos" "$dest/png"

for f in "$CORPUS_DIR"/photos/*.jpg "$CORPUS_DIR"/photos/*.webp; do
  [[ -e $dest/photos/$(basename "$f") ]] || cp "$f" "$dest/photos/"
done
for f in blackbug_rgba_mostly_transparent.png embedgravitybird_rgba_fully_opaque.png; do
  [[ -e $dest/png/$f ]] || cp "$CORPUS_DIR/alpha/$f" "$dest/png/"
done

# Photo PNGs (RGB, 8-bit, no alpha): decode, optionally shrink by an integer factor, save PNG.
mk_png() { # src out shrink
  local src=$1 out=$2 shrink=$3
  [[ -e $out ]] && return 0
  if [[ $shrink == 1 ]]; then
    vips copy "$src" "$out[compression=6,strip]"
  else
    vips shrink "$src" "$out[compression=6,strip]" "$shrink" "$shrink"
  fi
}
P=$CORPUS_DIR/photos
mk_png "$P/giunchedi_srgb_icc.jpg" "$dest/png/photo_giunchedi_800x533.png" 1
mk_png "$P/rockybeach_lossy.webp" "$dest/png/photo_rockybeach_1280x720.png" 1
mk_png "$P/friends_by_Aitzol_Berasategi_portrait.jpg" "$dest/png/photo_friends_1028x1544.png" 2
mk_png "$P/powerpano_3660x1080_panorama.jpg" "$dest/png/photo_powerpano_1830x540.png" 2

# srcset originals (the `srcset` cell): every copy must be a distinct object to every server.
# Real copies, not hard links, each with its own mtime: imgedge's folder origin derives the
# ETag from (length, mtime), and hard links (or copies made within the same coarse clock tick)
# would share it, so a cache keyed on the ETag could alias them.
copies=${SRCSET_COPIES:-96}
mkdir -p "$dest/srcset"
n_made=0
for ((i = 0; i < copies; i++)); do
  j=0
  for f in "$dest"/photos/*.jpg; do
    out=$dest/srcset/$(printf 'p%03d' "$i")_$(basename "$f")
    if [[ ! -e $out ]]; then
      cp "$f" "$out"
      touch -m -d "@$((1700000000 + i * 100 + j))" "$out"
      n_made=$((n_made + 1))
    fi
    j=$((j + 1))
  done
done
log "srcset: $(find "$dest/srcset" -name '*.jpg' | wc -l) originals in $dest/srcset ($n_made made now)"

log "data ready in $dest:"
( cd "$dest" && for f in photos/* png/*; do
    printf '  %-62s %9s bytes  %s\n' "$f" "$(stat -c %s "$f")" \
      "$(vipsheader "$f" 2>/dev/null | sed 's/^[^:]*: //')"
  done ) >&2
