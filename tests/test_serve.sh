#!/usr/bin/env bash
# tern serve on the real stories260K, driven with curl (and Python's standard
# library for JSON): completions equal tern generate --temp 0, streams add up
# to the same text and end with [DONE], stop strings, bad requests get OpenAI
# error JSON with the right status while the server keeps serving, N slots
# answer N requests at once, a client that leaves mid-stream frees its slot,
# a bounded load test has no failures, and SIGTERM lets a running request
# finish before the server exits 0.
set -euo pipefail
: "${TERN_BIN:?}" "${TERN_SRC:?}" "${TERN_DATA:?}"
model=$TERN_DATA/models/stories260K/stories260K.bin
tok=$TERN_DATA/models/stories260K/tok512.bin
[[ -f $model && -f $tok ]] || { echo "test_serve: missing $model or $tok (set TERN_DATA)"; exit 1; }
# (the output is captured first: under pipefail, tern's non-zero exit would hide grep's match)
probe=$("$TERN_BIN" serve --model /nonexistent 2>&1 || true)
if [[ $probe == *"built without the HTTP server"* ]]; then
    echo "test_serve: skipped: this build has no HTTP server (libmicrohttpd-dev missing)"; exit 77
fi
command -v curl >/dev/null || { echo "test_serve: curl is needed"; exit 1; }

work=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "test_serve: FAIL: $*"; [[ -f $work/log ]] && tail -n 20 "$work/log"; exit 1; }

# Starts the server on a free port; sets pid and url.
start() {
    "$TERN_BIN" serve --model "$model" --tokenizer "$tok" --port 0 --threads 2 "$@" 2>"$work/log" &
    pid=$!
    for _ in $(seq 100); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/log")
        [[ -n $port ]] && break
        kill -0 "$pid" 2>/dev/null || fail "server did not start"
        sleep 0.1
    done
    [[ -n $port ]] || fail "server did not say its port"
    url=http://127.0.0.1:$port
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1, end='')"; }
post() { curl -sS -o "$work/body" -w '%{http_code}' "$url$1" -H 'Content-Type: application/json' --data-binary "$2"; }

start --parallel 2
# Bad start-up: a host that is not an address (usage, 2), a port in use (1); one line each.
set +e
"$TERN_BIN" serve --model "$model" --tokenizer "$tok" --host abc 2>"$work/err"; code=$?
set -e
[[ $code == 2 && $(wc -l <"$work/err") == 1 ]] && grep -q -- "--host" "$work/err" || fail "--host abc: $code $(cat "$work/err")"
set +e
"$TERN_BIN" serve --model "$model" --tokenizer "$tok" --port "$port" --chat-template chatml 2>"$work/err"; code=$?
set -e
[[ $code == 1 && $(wc -l <"$work/err") == 1 ]] && grep -q "cannot listen on 127.0.0.1:$port" "$work/err" ||
    fail "port in use: $code $(cat "$work/err")"
[[ $(curl -sS "$url/health" | json 'd["status"]') == ok ]] || fail "/health"
[[ $(curl -sS "$url/v1/models" | json 'd["data"][0]["id"]') == stories260K.bin ]] || fail "/v1/models"
curl -sS "$url/" | grep -q '<title>tern chat</title>' || fail "chat page"
curl -sS "$url/" | grep -qi '<script src' && fail "chat page loads an external script"

# A completion at temperature 0 is tern generate --temp 0's text.
prompt="Once upon a time"
expect=$("$TERN_BIN" generate --model "$model" --tokenizer "$tok" --prompt "$prompt" -n 40 --temp 0 2>/dev/null)
[[ $(post /v1/completions "{\"prompt\": \"$prompt\", \"max_tokens\": 40, \"temperature\": 0}") == 200 ]] ||
    fail "completion: $(cat "$work/body")"
got=$(json 'd["choices"][0]["text"]' <"$work/body")
[[ "$got" == "$expect" ]] || fail "completion differs from tern generate: '$got' vs '$expect'"
[[ $(json 'd["usage"]["completion_tokens"]' <"$work/body") == 40 ]] || fail "usage"
[[ $(json 'd["choices"][0]["finish_reason"]' <"$work/body") == length ]] || fail "finish_reason length"

# The stream's pieces add up to the same text; it ends with a finish chunk, usage and [DONE].
curl -sSN "$url/v1/completions" -d "{\"prompt\": \"$prompt\", \"max_tokens\": 40, \"temperature\": 0, \"stream\": true,
    \"stream_options\": {\"include_usage\": true}}" >"$work/sse"
python3 - "$work/sse" "$expect" <<'EOF' || fail "stream"
import json, sys
events = [e[6:] for e in open(sys.argv[1]).read().split("\n\n") if e.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
chunks = [json.loads(e) for e in events[:-1]]
text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
assert text == sys.argv[2], (text, sys.argv[2])
assert chunks[-2]["choices"][0]["finish_reason"] == "length"
assert chunks[-1]["usage"]["completion_tokens"] == 40
EOF

# A stop string ends the text before it (and is not part of it).
stop=$(printf '%s' "$expect" | cut -c 20-24)
post /v1/completions "{\"prompt\": \"$prompt\", \"max_tokens\": 40, \"temperature\": 0, \"stop\": [\"$stop\"]}" >/dev/null
got=$(json 'd["choices"][0]["text"]' <"$work/body")
[[ "$expect" == "$got$stop"* && $(json 'd["choices"][0]["finish_reason"]' <"$work/body") == stop ]] ||
    fail "stop '$stop': '$got'"

# Bad requests: OpenAI error JSON, the right status, and the server goes on.
check_error() { # status path body
    local code
    code=$(post "$2" "$3")
    [[ $code == "$1" ]] || fail "$2 $3: status $code, expected $1: $(cat "$work/body")"
    [[ -n $(json 'd["error"]["message"]' <"$work/body") ]] || fail "$2 $3: no error message"
}
check_error 400 /v1/completions '{"prompt": "x",'
check_error 400 /v1/completions '["prompt"]'
check_error 400 /v1/completions '{"prompt": 42}'
check_error 400 /v1/completions '{"prompt": "x", "temperature": "hot"}'
check_error 400 /v1/completions '{"prompt": "x", "max_tokens": -1}'
check_error 400 /v1/completions '{"prompt": "x", "stream": "yes"}'
check_error 400 /v1/completions '{"prompt": "x", "stop": [1]}'
check_error 400 /v1/completions '{"prompt": "x", "max_tokens": 100000}'
[[ $(json 'd["error"]["code"]' <"$work/body") == context_length_exceeded ]] || fail "context_length_exceeded"
check_error 400 /v1/chat/completions '{"messages": "hi"}'
check_error 400 /v1/chat/completions '{"messages": [{"role": "wizard", "content": "hi"}]}'
check_error 400 /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"}]}'
grep -q -- "--chat-template" "$work/body" || fail "a chat request without a template does not say how to set one"
check_error 404 /v1/nothing '{}'
head -c 2000000 /dev/zero | tr '\0' a >"$work/big"
check_error 413 /v1/completions "@$work/big"
code=$(curl -sS -o "$work/body" -w '%{http_code}' "$url/v1/completions")
[[ $code == 405 ]] || fail "GET /v1/completions: $code"
[[ $(post /v1/completions '{"prompt": "x", "max_tokens": 2}') == 200 ]] || fail "server stopped serving"

# Two slots answer two requests at once, the rest queue: 6 at once all succeed.
clients=()
for i in 1 2 3 4 5 6; do
    curl -sS -o "$work/par$i" "$url/v1/completions" -d "{\"prompt\": \"$prompt\", \"max_tokens\": 30, \"temperature\": 0}" &
    clients+=($!)
done
wait "${clients[@]}" || fail "a parallel request failed"
for i in 1 2 3 4 5 6; do
    text=$(json 'd["choices"][0]["text"]' <"$work/par$i")
    [[ -n $text && "$expect" == "$text"* ]] || fail "parallel request $i: '$text'"
done
kill -TERM "$pid"; wait "$pid" || fail "server exit status $? after SIGTERM"; pid=

# One slot. A client that leaves mid-stream frees it: the server stops
# generating for it (and says so) and answers the next request.
start --parallel 1 --ctx 512
python3 - "$url" <<'EOF' || fail "client leaving mid-stream"
import json, socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
body = json.dumps({"prompt": "x", "max_tokens": 500, "stream": True, "temperature": 0}).encode()
s = socket.create_connection((u.hostname, u.port))
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
got = b""
while b"data: " not in got:
    chunk = s.recv(4096)
    assert chunk, got
    got += chunk
s.close()  # gone after the first event
EOF
[[ $(post /v1/completions '{"prompt": "x", "max_tokens": 3}') == 200 ]] || fail "request after a client left"
grep -q "closed by the client after" "$work/log" || fail "no sign that the stream was cut"
left=$(sed -n 's/.*closed by the client after \([0-9]*\) tokens.*/\1/p' "$work/log")
(( left < 500 )) || fail "generation went on after the client left ($left tokens)"

# A bounded load test: 8 clients x 20 requests, no failures.
python3 "$TERN_SRC/bench/serve_load.py" "$url" --clients 8 --requests 20 --max-tokens 8 || fail "load test"

# SIGTERM while a stream runs: it completes, then the server exits 0.
python3 - "$url" "$pid" <<'EOF' || fail "stream cut by SIGTERM"
import json, os, signal, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/completions", json.dumps(
    {"prompt": "x", "max_tokens": 500, "stream": True, "temperature": 0}).encode())
with urllib.request.urlopen(req) as r:
    first = r.readline()
    assert first.startswith(b"data: "), first
    os.kill(int(sys.argv[2]), signal.SIGTERM)
    rest = r.read().decode()
assert rest.rstrip().endswith("data: [DONE]"), rest[-200:]
EOF
wait "$pid" || fail "server exit status $? after SIGTERM"
pid=
cat "$work/log" | grep -v "^POST /v1/completions 200:" | tail -n 15; echo "test_serve: ok"
