#!/usr/bin/env bash
# The chat page of tern serve in headless Chromium (Debian's `chromium`; slow
# test): /?q=TEXT&stream=0 sends TEXT on load; the DOM after the reply must hold the
# user's message and a finished, non-empty assistant reply, and a screenshot
# is written (TERN_SCREENSHOT=PATH keeps it, e.g. for docs/img). Skipped
# (exit 77) without chromium or without the HTTP server.
set -euo pipefail
: "${TERN_BIN:?}" "${TERN_DATA:?}"
model=$TERN_DATA/models/stories260K/stories260K.bin
tok=$TERN_DATA/models/stories260K/tok512.bin
[[ -f $model && -f $tok ]] || { echo "test_serve_page: missing $model or $tok (set TERN_DATA)"; exit 1; }
# (the output is captured first: under pipefail, tern's non-zero exit would hide grep's match)
probe=$("$TERN_BIN" serve --model /nonexistent 2>&1 || true)
if [[ $probe == *"built without the HTTP server"* ]]; then
    echo "test_serve_page: skipped: this build has no HTTP server"; exit 77
fi
browser=$(command -v chromium || command -v chromium-browser || true)
[[ -n $browser ]] || { echo "test_serve_page: skipped: no chromium (apt-get install chromium)"; exit 77; }

work=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "test_serve_page: FAIL: $*"; tail -n 20 "$work/log"; exit 1; }

"$TERN_BIN" serve --model "$model" --tokenizer "$tok" --chat-template chatml --port 0 --threads 2 2>"$work/log" &
pid=$!
for _ in $(seq 100); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/log")
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || fail "server did not start"
# stream=0: the whole reply in one response. Headless Chromium takes its DOM and
# screenshot when the page goes idle, which a streamed body does not delay (the
# streamed path is tested with curl and the openai client).
page="http://127.0.0.1:$port/?q=Tell%20me%20a%20story&stream=0"
flags=(--headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/profile" --virtual-time-budget=20000)
timeout 120 "$browser" "${flags[@]}" --dump-dom "$page" >"$work/dom.html" 2>"$work/browser.log" ||
    fail "chromium: $(tail -n 3 "$work/browser.log")"
grep -q 'class="msg user">Tell me a story<' "$work/dom.html" || fail "the user's message is not on the page"
reply=$(python3 -c 'import re, sys
m = re.search(r"class=\"msg assistant\" data-done=\"1\">([^<]+)<", open(sys.argv[1]).read())
print(m.group(1).strip() if m else "")' "$work/dom.html")
[[ -n $reply ]] || fail "no finished assistant reply: $(grep -o 'class="msg [a-z]*"[^<]*' "$work/dom.html")"
shot=${TERN_SCREENSHOT:-$work/page.png}
timeout 120 "$browser" "${flags[@]}" --window-size=900,600 --screenshot="$shot" "$page" >/dev/null 2>&1 ||
    fail "chromium screenshot"
[[ $(stat -c %s "$shot") -gt 5000 ]] || fail "screenshot $shot is empty"
kill -TERM "$pid"; wait "$pid"; pid=
echo "test_serve_page: ok: reply '${reply:0:60}'"
