#!/usr/bin/env bash
# The main job, on a two-namespace veth lab: apply configs/example.yaml on the appliance side,
# send a datagram for each route plus invalid ones from the sender side, show status, clean up.
# Traffic stays inside the two namespaces this script creates (test addresses 192.0.2.0/24).
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/mplexctl
PY=.venv/bin/python
id=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
SRC=mpxdemo-src-$id
DST=mpxdemo-dst-$id

cleanup() { ip netns del "$SRC" 2>/dev/null || true; ip netns del "$DST" 2>/dev/null || true; }
trap cleanup EXIT

echo "== lab: netns $SRC --veth--> netns $DST (veth-mplex0 carries XDP)"
ip netns add "$SRC"
ip netns add "$DST"
ip -n "$DST" link add veth-mplex0 type veth peer name veth-src netns "$SRC"
ip -n "$DST" addr add 192.0.2.2/24 dev veth-mplex0
ip -n "$SRC" addr add 192.0.2.1/24 dev veth-src
ip -n "$DST" link set veth-mplex0 up
ip -n "$SRC" link set veth-src up
ip netns exec "$SRC" ethtool -K veth-src tx off >/dev/null # real checksums on the wire
dst_mac=$(ip -n "$DST" -br link show veth-mplex0 | awk '{print $3}')
ip -n "$SRC" neigh replace 192.0.2.2 lladdr "$dst_mac" dev veth-src

echo "== mplexctl validate + apply"
$M validate configs/example.yaml
$M apply --netns "$DST" configs/example.yaml
echo "== apply again: idempotent"
$M apply --netns "$DST" configs/example.yaml

echo "== traffic: one datagram per route, plus a bad length, an unknown tag, another port"
ip netns exec "$DST" "$PY" - <<'PYEOF' &
import socket, select, time
socks = {}
for port in (5001, 5002, 5003, 5000, 7000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("192.0.2.2", port))
    socks[s] = port
got = {}
end = time.time() + 3
while time.time() < end:
    for s in select.select(list(socks), [], [], 0.2)[0]:
        data = s.recv(2048)
        got.setdefault(socks[s], []).append(data[20:23].decode(errors="replace"))
for port in sorted(got):
    print(f"   receiver on udp/{port} got tags {got[port]}")
PYEOF
recv=$!
sleep 0.5
ip netns exec "$SRC" "$PY" - <<'PYEOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def send(tag, length=292, port=5000):
    payload = bytearray(b"x" * length)
    payload[20:23] = tag.encode()
    s.sendto(bytes(payload), ("192.0.2.2", port))
for tag in ("600", "601", "602"):
    send(tag)                    # routed to 5001, 5002, 5003
send("600", length=100)          # bad length: dropped
send("999")                      # unknown tag: dropped (unmatched: drop)
send("600", port=7000)           # not a service: passes untouched
PYEOF
wait $recv

echo "== mplexctl status"
$M status --netns "$DST"
echo "== mplexctl detach"
$M detach --netns "$DST"
