#!/usr/bin/env bash
# Usage: bench/idle-rss.sh (BIN= a release build; IDLE= seconds to wait at the end). Prints the
# RSS at start, after three 100 MB uploads, after 5 s of Range playback, and once idle again.
# Idle RSS before and after uploads, for one binary.
set -u
BIN=${BIN:-/work/main/target/release/douyin_club}
D=$(mktemp -d)
$BIN --data-dir $D --api-addr 127.0.0.1:18000 --stream-addr 127.0.0.1:18001 --scheduler-addr 127.0.0.1:18002 --web-addr 127.0.0.1:18003 >$D/log 2>&1 &
PID=$!
for i in $(seq 50); do curl -sf 127.0.0.1:18000/healthz >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$PID/status; }
echo "start: $(rss)"; awk '/^[0-9a-f]+-/{r=$0} /^Rss:/{ if ($2>500) print $2" kB  "r}' /proc/$PID/smaps | grep 20000000000
S=$(curl -s -XPOST 127.0.0.1:18000/user -H 'content-type: application/json' -d '{"user_name":"bob","pwd":"password1"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["session_id"])')
head -c 100000000 /dev/urandom > $D/big; printf '\0\0\0\x18ftypisom' | dd of=$D/big conv=notrunc 2>/dev/null
for i in 1 2 3; do
  V=$(curl -s -XPOST 127.0.0.1:18000/user/bob/videos -H "X-Session-Id: $S" -H 'content-type: application/json' -d '{"name":"x"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
  curl -s -o /dev/null -w "upload %{http_code}\n" -XPOST 127.0.0.1:18001/upload/$V -H "X-Session-Id: $S" -H 'content-type: video/mp4' --data-binary @$D/big
done
echo "after uploads: $(rss)"
wrk -t2 -c16 -d5s -H 'Range: bytes=1000000-2048575' http://127.0.0.1:18001/videos/$V >/dev/null
echo "after playback load: $(rss)"
sleep ${IDLE:-15}
echo "idle 15 s later: $(rss)"
awk '/^[0-9a-f]+-/{r=$0} /^Rss:/{ if ($2>500) print $2" kB  "r}' /proc/$PID/smaps | sort -rn | head -15
grep -E "VmHWM|Threads|RssAnon|RssFile" /proc/$PID/status
kill $PID; wait $PID 2>/dev/null; grep -vE "^\[|INFO|WARN" $D/log | head -60; rm -rf $D
