#!/usr/bin/env bash
# The drop-box end to end, as the original system did it: "start the server,
# start the receiver, run the sender".
#
#   1. start `sxf serve` on 127.0.0.1 (a free port);
#   2. start bob's `sxf fetch --watch --open --from alice.pub`;
#   3. alice seals a message for bob and `sxf send`s it;
#   4. bob's terminal shows the verified message.
#
# Uses the public demo keys in keys/ and a temporary directory; loopback only.
# Run from anywhere: bash examples/dropbox-demo.sh   (SXF=path overrides the binary)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
if [[ -z "${SXF:-}" ]]; then
    cargo build --quiet --release
    SXF="$repo/target/release/sxf"
fi
work="$(mktemp -d)"
# Its own config directory: the first contact with the server is recorded
# there (known-servers), not in yours.
export SXF_HOME="$work/home"
server_pid=""
bob_pid=""
cleanup() {
    [[ -n "$bob_pid" ]] && kill "$bob_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits (at most 20 s) until FILE contains TEXT.
wait_for() {
    local file="$1" text="$2"
    for _ in $(seq 200); do
        grep -q -- "$text" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$text' in $file" >&2
    cat "$file" >&2
    return 1
}

echo "== 1. the server"
"$SXF" serve --listen 127.0.0.1:0 --store "$work/store" 2>"$work/server.log" &
server_pid=$!
wait_for "$work/server.log" "listening on "
addr="$(head -1 "$work/server.log" | sed 's/^listening on //')"
echo "   sxf serve is listening on $addr"

echo "== 2. bob waits for messages"
"$SXF" fetch --watch --open --from keys/alice.pub \
    --server "$addr" --key keys/bob.key --out-dir "$work/bob-inbox" >"$work/bob.term" 2>&1 &
bob_pid=$!
wait_for "$work/bob.term" "waiting for messages"

echo "== 3. alice seals and sends"
"$SXF" seal --to keys/bob.pub --sign keys/alice.key \
    -m "Hello Bob, this came through the drop-box. -- Alice" -o "$work/hello.sxf" 2>&1 |
    sed 's/^/   /'
id="$("$SXF" send "$work/hello.sxf" --server "$addr" 2>"$work/send.err")"
sed 's/^/   /' "$work/send.err"
echo "   message id $id"

echo "== 4. bob's terminal"
wait_for "$work/bob.term" "Hello Bob"
sed 's/^/   | /' "$work/bob.term"

echo "== the server's log"
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=""
sed 's/^/   | /' "$work/server.log"
