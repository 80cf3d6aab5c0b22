#!/usr/bin/env bash
# The quickstart demo: alice seals a message and the sample photo to bob, anyone
# verifies who sealed it, and bob opens it. Uses the public demo keys in keys/.
# Outputs are left in target/demo/ so you can look at them.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
sxf=target/release/sxf
demo=target/demo
rm -rf "$demo"
mkdir -p "$demo"

echo "== alice seals a message and examples/sample.jpg to bob"
"$sxf" seal --to keys/bob.pub --sign keys/alice.key \
  -m "Hi Bob, here is the photo from this morning. -- Alice" \
  --image examples/sample.jpg \
  -o "$demo/for-bob.sxf"

echo
echo "== anyone can check who sealed it, with no private key"
"$sxf" verify "$demo/for-bob.sxf" --from keys/alice.pub

echo
echo "== bob opens it: verified first, then decrypted into $demo/from-alice"
"$sxf" open "$demo/for-bob.sxf" --key keys/bob.key --from keys/alice.pub -o "$demo/from-alice"

echo
echo "== what bob got"
ls -l "$demo/from-alice"
