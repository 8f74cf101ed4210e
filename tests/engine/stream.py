"""A steady UDP stream across the wire, counted per receiving port (run in subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

RECEIVER = textwrap.dedent(
    """
    import json, select, socket, sys, time
    ip, ports, idle = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], float(sys.argv[3])
    socks = {}
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: past rmem_max
        s.bind((ip, port))
        s.setblocking(False)
        socks[s] = port
    print("ready", flush=True)
    counts = {p: 0 for p in ports}
    seqs = set()
    last = time.time() + 30
    while time.time() - last < idle:
        for s in select.select(list(socks), [], [], 0.05)[0]:
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                counts[socks[s]] += 1
                seqs.add(int.from_bytes(data[:4], "big"))
                last = time.time()
    print(json.dumps({"counts": counts, "unique": len(seqs)}), flush=True)
    """
)

SENDER = textwrap.dedent(
    """
    import select, socket, sys, time
    ip, tag, limit, pps = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    base = bytearray(b"x" * 292)
    base[20:23] = tag
    start, i = time.time(), 0
    while i < limit:  # until stdin closes (or the safety limit)
        if i % 100 == 0 and select.select([sys.stdin], [], [], 0)[0]:
            break
        base[:4] = i.to_bytes(4, "big")
        s.sendto(base, (ip, 5000))
        i += 1
        while time.time() - start < i / pps:
            pass
    print("sent", i, flush=True)
    """
)


class Stream:
    """Receivers in the host netns, a paced sender in the sender netns."""

    def __init__(self, host_ns: str, sender_ns: str, dst_ip: str, ports: list[int]) -> None:
        self.recv = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host_ns,
                sys.executable,
                "-c",
                RECEIVER,
                dst_ip,
                ",".join(map(str, ports)),
                "1.0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.recv.stdout is not None and self.recv.stdout.readline().strip() == "ready"
        self.sender_ns, self.dst_ip = sender_ns, dst_ip
        self.send: subprocess.Popen[str] | None = None

    def start(self, tag: str, count: int, pps: int) -> None:
        """Send `tag` datagrams at `pps` until finish() (at most `count`)."""
        self.send = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.sender_ns,
                sys.executable,
                "-c",
                SENDER,
                self.dst_ip,
                tag,
                str(count),
                str(pps),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def finish(self) -> dict[str, object]:
        """Stop the sender; the receivers' counts plus "sent"."""
        assert self.send is not None
        out, _ = self.send.communicate("stop\n", timeout=120)
        assert out.startswith("sent"), out
        result, _ = self.recv.communicate(timeout=60)
        doc: dict[str, object] = json.loads(result)
        doc["sent"] = int(out.split()[1])
        return doc
