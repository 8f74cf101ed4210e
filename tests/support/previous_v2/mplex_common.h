/* SPDX-License-Identifier: GPL-2.0 */
/* Generated from mplexctl/constants.py by `make header`: do not edit by hand. */
#ifndef MPLEX_COMMON_H
#define MPLEX_COMMON_H

#define MPLEX_MAGIC 0x4d504c4558000002ULL
#define MPLEX_TAG_MAX_LEN 8
#define MPLEX_MAX_VLAN_TAGS 2
#define MPLEX_MAX_IPV6_EXT_HEADERS 4
#define MPLEX_PROTO_TCP 6
#define MPLEX_PROTO_UDP 17
#define MPLEX_SVC_F_VALID 1
#define MPLEX_SVC_F_PASS_UNMATCHED 2
#define MPLEX_IFINDEX_DIRECT 4096
#define MPLEX_IF_SLOT_NONE 0

/* Encodings of map indexes and keys (constants.ENCODINGS). */
#define MPLEX_ROUTE_PREFIX(svc, slot) (((svc) << 1) | (slot))
#define MPLEX_ROUTE_PREFIX_SVC(prefix) ((prefix) >> 1)
#define MPLEX_ROUTE_PREFIX_SLOT(prefix) ((prefix) & 1)
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
	__u16 pad;
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

struct mplex_counter {
	__u64 packets;
	__u64 bytes;
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
