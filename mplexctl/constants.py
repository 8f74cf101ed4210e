"""Names and numbers shared by the C program and Python: defined once, here.

`bpf/mplex_common.h` is rendered from this module (`make header`); a unit test keeps the
committed header identical to the rendering, as xdp-tools' common_kern_user.h is shared.
"""

from __future__ import annotations

from typing import Final

# Identity of an mplex program and its maps (BPF object names are at most 15 chars).
PROG_NAME: Final = "mplex_xdp"  # the XDP entry: every generation has it (it fills the maps)
PROG_TC_IN: Final = "mplex_tc_in"  # TC ingress entry (hook: tc)
PROG_TC_OUT: Final = "mplex_tc_out"  # TC egress entry (reply: restore)
PROG_NAMES: Final = (PROG_NAME, PROG_TC_IN, PROG_TC_OUT)
MAGIC_BASE: Final = 0x4D504C4558000000  # "MPLEX", then the layout version in the low bits
LAYOUT_VERSION: Final = 3  # 3: routes in an open-addressing array, counters by index
MAGIC: Final = MAGIC_BASE | LAYOUT_VERSION
MAGIC_PREVIOUS: Final = MAGIC_BASE | 1  # 1: one program per interface (read, then replaced)
MAGIC_HASHED: Final = MAGIC_BASE | 2  # 2: one program per netns, routes in a per-CPU hash
MAP_META: Final = "mplex_meta"
MAP_SERVICES: Final = "mplex_svcs"  # 2 rows per service: the one mplex_active selects is live
MAP_ACTIVE: Final = "mplex_active"
MAP_ROUTES: Final = "mplex_routes"  # open-addressing slots (layout 3), a hash before
MAP_ROUTE_CTR: Final = "mplex_route_ctr"  # per-CPU route counters by stable counter index
MAP_SVC_STATS: Final = "mplex_svc_stats"
MAP_SVC_INFO: Final = "mplex_svc_info"  # names of the compiled services (user space only)
MAP_IFSLOT: Final = "mplex_ifslot"  # ifindex -> counter slot, ifindex < IFINDEX_DIRECT
MAP_IFSLOT_HI: Final = "mplex_ifslot_hi"  # ifindex -> counter slot, larger ifindexes
MAP_FLOWS: Final = "mplex_flows"  # LRU hash: rewritten flows of `reply: restore` services
MAP_REPLIES: Final = "mplex_replies"  # per interface slot and service: replies restored
SVC_NAME_LEN: Final = 32

# Hooks an interface's ingress program runs at (interfaces[].hook).
HOOKS: Final = ("xdp", "tc")
REPLIES: Final = ("none", "restore")  # services[].reply

# Tags: at most this many bytes; shorter tags are zero-padded in the route key.
TAG_MAX_LEN: Final = 8

# Routes (layout 3). mplex_routes is a plain BPF_ARRAY (mmapable) of 16-byte slots, one open-
# addressing table shared by every service and both route-table slots of a service: a slot
# holds the tag (as a little-endian u64, zero-padded), the port, a key word (ROUTE_SLOT_KEY of
# the route prefix; EMPTY or TOMBSTONE otherwise) and the route's counter index. A service row
# carries the seed of its table's hash and the probe bound (longest displacement + 1); a lookup
# probes at most that many slots from the home slot, never wrapping (ROUTE_PROBES_MAX slots of
# slack follow the 2**ROUTE_BITS home slots) and stops at an EMPTY slot. The table has
# ROUTE_TABLE_FACTOR slots per route of limits.routes, so it is at most a quarter full even
# while a service's old and new tables are both present (a table swap). At half full, a new
# table of limits.routes tags placed around the old one needed more than ROUTE_PROBES_MAX
# probes for most seeds (a full-table change at the limit failed); at a quarter, 1 in ~60.
ROUTE_PROBES_MAX: Final = 16
ROUTE_TABLE_FACTOR: Final = 8
ROUTE_KEY_EMPTY: Final = 0
ROUTE_KEY_TOMBSTONE: Final = 0xFFFF
# Home slot: x = tag * (seed | 1); x ^= x >> ROUTE_HASH_SHIFT; x *= ROUTE_HASH_MUL (mod 2**64);
# the top ROUTE_BITS bits of x. The seed is random (os.urandom), per table, never in a packet.
ROUTE_HASH_MUL: Final = 0xD6E8FEB86659FD93
ROUTE_HASH_SHIFT: Final = 29
# Word 1 of a route slot as one little-endian u64: port | key << 16 | counter index << 32.
SLOT_KEY_SHIFT: Final = 16
SLOT_CTR_SHIFT: Final = 32
ROUTE_SEED_TRIES: Final = 8  # fresh seeds tried before a placement is given up


def route_bits(max_routes: int) -> int:
    """log2 of the home slots of the route table for limits.routes = max_routes."""
    return max(4, (ROUTE_TABLE_FACTOR * max_routes - 1).bit_length())


# Service flags (struct mplex_svc.flags).
SVC_F_VALID: Final = 1
SVC_F_PASS_UNMATCHED: Final = 2
SVC_F_RESTORE: Final = 4  # reply: restore (the ingress hook records the rewritten flow)

# Verdicts counted per service (index into the service's row of mplex_svc_stats).
VERDICTS: Final = (
    "rewrite",  # routed: destination port rewritten, passed
    "pass_unmatched",  # valid, tag has no route, unmatched: pass
    "drop_length",  # payload length outside every window
    "drop_unknown_tag",  # valid, tag has no route, unmatched: drop
    "drop_malformed",  # inconsistent IP/L4 lengths or headers
    "drop_fragment",  # a first fragment (IPv4 MF, any IPv6 fragment header)
)
VERDICT_INDEX: Final = {name: i for i, name in enumerate(VERDICTS)}
DROP_REASONS: Final = ("length", "unknown_tag", "malformed", "fragment")

# Interfaces. One program and one set of maps serve every interface of a network namespace;
# verdict counters are kept per interface in a counter slot. The program finds the slot of
# ctx->ingress_ifindex in an array (inlined by the verifier, no call) and, for the rare
# ifindex >= IFINDEX_DIRECT, in a small hash. Slot 0 counts packets of interfaces that have no
# slot (a test run, an interface attached by hand); slots 1.. belong to the file's interfaces.
IFINDEX_DIRECT: Final = 4096
IF_SLOT_NONE: Final = 0
IF_SLOTS_MIN: Final = 64  # slots compiled in; more interfaces than that grow it (a swap)


def if_slots(n_interfaces: int) -> int:
    """Counter slots a program for n interfaces has: 64, or the next power of two above."""
    need = n_interfaces + 1  # slot 0 is IF_SLOT_NONE
    return max(IF_SLOTS_MIN, 1 << (need - 1).bit_length())


# Encodings of map indexes and keys, written once as expressions valid in both C and Python:
# `make header` renders each as a macro of bpf/mplex_common.h, compiler/layout.py turns each
# into a Python function. (parameter names, expression)
Encoding = tuple[tuple[str, ...], str]
ENCODINGS: Final[dict[str, Encoding]] = {
    # Route keys start with a u32 prefix: the service index and the route-table slot (0/1).
    "ROUTE_PREFIX": (("svc", "slot"), "(svc << 1) | slot"),
    "ROUTE_PREFIX_SVC": (("prefix",), "prefix >> 1"),
    "ROUTE_PREFIX_SLOT": (("prefix",), "prefix & 1"),
    # The key word of a route slot: its prefix + 1 (0 is EMPTY, 0xFFFF a TOMBSTONE).
    "ROUTE_SLOT_KEY": (("prefix",), "prefix + 1"),
    # mplex_svcs holds two rows per service; mplex_active[svc] says which one is live.
    "SVC_ROW": (("svc", "which"), "svc * 2 + which"),
    # mplex_svc_stats: per interface slot, per service, one counter per verdict.
    "STATS_ROW": (
        ("ifslot", "svc", "verdict", "nsvc"),
        f"(ifslot * nsvc + svc) * {len(VERDICTS)} + verdict",
    ),
}

# Protocol numbers, emitted as numbers (IPPROTO_* are enums in C, not macros).
PROTO_NUMBERS: Final = {"tcp": 6, "udp": 17}

# Limits: defaults a config may override under `limits:`, and the hard ceilings.
DEFAULT_MAX_ROUTES: Final = 65536
DEFAULT_MAX_SERVICES: Final = 64
DEFAULT_MAX_WINDOWS: Final = 8
CEIL_MAX_ROUTES: Final = 1 << 20
CEIL_MAX_SERVICES: Final = 256
CEIL_MAX_WINDOWS: Final = 32
DEFAULT_FLOWS: Final = 65536  # limits.flows: entries of the reply path's flow table
CEIL_FLOWS: Final = 1 << 24

# Parsing bounds of the data plane (the packet contract).
MAX_VLAN_TAGS: Final = 2
MAX_IPV6_EXT_HEADERS: Final = 4

# XDP return codes (uapi enum xdp_action) as the test harness sees them.
XDP_DROP: Final = 1
XDP_PASS: Final = 2
# TC return codes (uapi linux/pkt_cls.h): UNSPEC hands the frame to the next program or
# filter of the hook (tcx: TCX_NEXT), as XDP_PASS hands it to the stack.
TC_ACT_UNSPEC: Final = -1
TC_ACT_SHOT: Final = 2

# Flow table of the reply path: addresses are IPv6-sized (an IPv4 address in the first 4
# bytes, the rest zero), family says which.
FLOW_ADDR_LEN: Final = 16
FLOW_IPV4: Final = 4
FLOW_IPV6: Final = 6

# Struct layouts: (C type, field name, count). Little-endian host, explicit padding, no holes.
Layout = tuple[tuple[str, str, int], ...]
LAYOUT_WINDOW: Final[Layout] = (("__u16", "min", 1), ("__u16", "max", 1))
LAYOUT_SVC_HEAD: Final[Layout] = (
    ("__u16", "tag_off", 1),
    ("__u8", "tag_len", 1),
    ("__u8", "flags", 1),
    ("__u8", "nwin", 1),
    ("__u8", "slot", 1),
    ("__u8", "probes", 1),  # probe bound of the live route table (layout 3)
    ("__u8", "pad", 1),
    ("__u64", "seed", 1),  # hash seed of the live route table (random, per table)
)
LAYOUT_ROUTE_KEY: Final[Layout] = (("__u32", "svc_slot", 1), ("__u8", "tag", TAG_MAX_LEN))
LAYOUT_ROUTE: Final[Layout] = (
    ("__be16", "port", 1),
    ("__u16", "pad", 1),
    ("__u32", "pad2", 1),
    ("__u64", "packets", 1),
    ("__u64", "bytes", 1),
)
LAYOUT_ROUTE_SLOT: Final[Layout] = (
    ("__u64", "tag", 1),
    ("__be16", "port", 1),
    ("__u16", "key", 1),
    ("__u32", "ctr", 1),
)
LAYOUT_FLOW_KEY: Final[Layout] = (
    ("__u8", "client", FLOW_ADDR_LEN),
    ("__u8", "server", FLOW_ADDR_LEN),
    ("__be16", "client_port", 1),
    ("__be16", "backend_port", 1),
    ("__u8", "proto", 1),
    ("__u8", "family", 1),
    ("__u16", "pad", 1),
)
LAYOUT_FLOW: Final[Layout] = (("__be16", "svc_port", 1), ("__u16", "svc", 1), ("__u32", "pad", 1))
LAYOUT_COUNTER: Final[Layout] = (("__u64", "packets", 1), ("__u64", "bytes", 1))
LAYOUT_SVC_INFO: Final[Layout] = (
    ("__u8", "name", SVC_NAME_LEN),
    ("__u8", "proto", 1),
    ("__u8", "pad", 1),
    ("__u16", "port", 1),
    ("__u32", "pad2", 1),
)
LAYOUT_META: Final[Layout] = (
    ("__u64", "magic", 1),
    ("__u64", "seq", 1),
    ("__u64", "applied_ns", 1),
    ("__u8", "config_digest", 32),  # Build.digest (build_digest in Python; C name kept)
    ("__u8", "program_digest", 32),
    ("__u8", "source_digest", 32),  # the config file (+ mplexctl) this generation came from
    ("__u8", "content_digest", 32),  # the services and routes as this generation wrote them
    ("__u32", "n_interfaces", 1),  # interfaces in that file
    ("__u32", "pad", 1),
)
