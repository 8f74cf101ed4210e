/* SPDX-License-Identifier: GPL-2.0 */
/* Generated from mplexctl/constants.py by `make header`: do not edit by hand. */
#ifndef MPLEX_COMMON_H
#define MPLEX_COMMON_H

#define MPLEX_MAGIC 0x4d504c4558000003ULL
#define MPLEX_TAG_MAX_LEN 8
#define MPLEX_MAX_VLAN_TAGS 2
#define MPLEX_MAX_IPV6_EXT_HEADERS 4
#define MPLEX_PROTO_TCP 6
#define MPLEX_PROTO_UDP 17
#define MPLEX_SVC_F_VALID 1
#define MPLEX_SVC_F_PASS_UNMATCHED 2
#define MPLEX_SVC_F_RESTORE 4
#define MPLEX_IFINDEX_DIRECT 4096
#define MPLEX_IF_SLOT_NONE 0
#define MPLEX_ROUTE_PROBES_MAX 16
#define MPLEX_ROUTE_KEY_EMPTY 0
#define MPLEX_ROUTE_KEY_TOMBSTONE 0xFFFF
#define MPLEX_ROUTE_HASH_MUL 0xD6E8FEB86659FD93ULL
#define MPLEX_ROUTE_HASH_SHIFT 29
#define MPLEX_SLOT_KEY_SHIFT 16
#define MPLEX_SLOT_CTR_SHIFT 32
#define MPLEX_SLOT_KEY_MASK 0xFFFF
#define MPLEX_SLOT_PORT_MASK 0xFFFF
#define MPLEX_TC_ACT_UNSPEC (-1)
#define MPLEX_TC_ACT_SHOT 2
#define MPLEX_FLOW_ADDR_LEN 16
#define MPLEX_FLOW_IPV4 4
#define MPLEX_FLOW_IPV6 6

/* Encodings of map indexes and keys (constants.ENCODINGS). */
#define MPLEX_ROUTE_PREFIX(svc, slot) (((svc) << 1) | (slot))
#define MPLEX_ROUTE_PREFIX_SVC(prefix) ((prefix) >> 1)
#define MPLEX_ROUTE_PREFIX_SLOT(prefix) ((prefix) & 1)
#define MPLEX_ROUTE_SLOT_KEY(prefix) ((prefix) + 1)
#define MPLEX_SVC_ROW(svc, which) ((svc) * 2 + (which))
#define MPLEX_STATS_ROW(ifslot, svc, verdict, nsvc) (((ifslot) * (nsvc) + (svc)) * 6 + (verdict))

/* Verdicts counted per service: row MPLEX_NVERDICTS wide in mplex_svc_stats. */
#define MPLEX_V_REWRITE 0
#define MPLEX_V_PASS_UNMATCHED 1
#define MPLEX_V_DROP_LENGTH 2
#define MPLEX_V_DROP_UNKNOWN_TAG 3
#define MPLEX_V_DROP_MALFORMED 4
#define MPLEX_V_DROP_FRAGMENT 5
#define MPLEX_NVERDICTS 6

struct mplex_window {
	__u16 min;
	__u16 max;
};

struct mplex_svc {
	__u16 tag_off;
	__u8 tag_len;
	__u8 flags;
	__u8 nwin;
	__u8 slot;
	__u8 probes;
	__u8 pad;
	__u64 seed;
	struct mplex_window win[MPLEX_MAX_WINDOWS];
};

struct mplex_route_key {
	__u32 svc_slot;
	__u8 tag[8];
};

struct mplex_route {
	__be16 port;
	__u16 pad;
	__u32 pad2;
	__u64 packets;
	__u64 bytes;
};

struct mplex_route_slot {
	__u64 tag;
	__be16 port;
	__u16 key;
	__u32 ctr;
};

struct mplex_counter {
	__u64 packets;
	__u64 bytes;
};

struct mplex_flow_key {
	__u8 client[16];
	__u8 server[16];
	__be16 client_port;
	__be16 backend_port;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct mplex_flow {
	__be16 svc_port;
	__u16 svc;
	__u32 pad;
};

struct mplex_svc_info {
	__u8 name[32];
	__u8 proto;
	__u8 pad;
	__u16 port;
	__u32 pad2;
};

struct mplex_meta {
	__u64 magic;
	__u64 seq;
	__u64 applied_ns;
	__u8 config_digest[32];
	__u8 program_digest[32];
	__u8 source_digest[32];
	__u8 content_digest[32];
	__u32 n_interfaces;
	__u32 pad;
};

#endif /* MPLEX_COMMON_H */
