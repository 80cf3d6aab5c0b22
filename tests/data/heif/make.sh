#!/usr/bin/env bash
# Regenerate the HEIF/HEIC/AVIF fixtures of this directory; see make.py for what
# each file is and the tool versions they were made with.
# Needs: heif-enc, heif-info and heif-convert (Debian: libheif-examples, with its
# x265 and aom encoder dependencies), python3, and the icc-profiles-free package.
set -euo pipefail
cd "$(dirname "$0")"
for tool in heif-enc heif-convert python3; do
  command -v "$tool" >/dev/null || { echo "make.sh: $tool is missing" >&2; exit 1; }
done
heif-enc --list-encoders
python3 make.py
