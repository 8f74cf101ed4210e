/* SPDX-License-Identifier: GPL-2.0 */
/* Header parsing helpers in the style of xdp-tools' parsing_helpers.h: every read is
 * preceded by an explicit bounds check against data_end. A helper returns MPLEX_NOT_OURS
 * when the frame is not one the packet contract lets us touch (it then passes untouched). */
#ifndef MPLEX_PARSE_H
#define MPLEX_PARSE_H

/* Byte order of a constant, usable in case labels (bpf_htons is not a constant expression). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MPLEX_HTONS_CONST(x) ((__be16)((((x)&0xFF) << 8) | (((x) >> 8) & 0xFF)))
#else
#define MPLEX_HTONS_CONST(x) ((__be16)(x))
#endif

#define MPLEX_OK       0
#define MPLEX_NOT_OURS (-1)

#define MPLEX_ETH_P_IPV4   0x0800
#define MPLEX_ETH_P_IPV6   0x86DD
#define MPLEX_ETH_P_8021Q  0x8100
#define MPLEX_ETH_P_8021AD 0x88A8

#define MPLEX_IPV4_MIN_IHL	5
#define MPLEX_IPV4_FRAG_OFFSET	0x1FFF
#define MPLEX_IPV4_FRAG_MF	0x2000
#define MPLEX_IPV6_HDR_LEN	40
#define MPLEX_IPV6_FRAG_OFFSET	0xFFF8
#define MPLEX_IPV6_EXT_UNIT	8
#define MPLEX_IPV6_FRAG_HDR_LEN 8

#define MPLEX_NH_HOPOPTS  0
#define MPLEX_NH_ROUTING  43
#define MPLEX_NH_FRAGMENT 44
#define MPLEX_NH_DSTOPTS  60

#define MPLEX_UDP_HDR_LEN     8
#define MPLEX_TCP_MIN_DOFF    5
#define MPLEX_TCP_MIN_HDR_LEN 20

struct mplex_eth {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
};

struct mplex_vlan {
	__be16 tci;
	__be16 proto;
};

struct mplex_ipv4 {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct mplex_ipv6 {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct mplex_ext {
	__u8 nexthdr;
	__u8 len; /* in 8-byte units, not counting the first 8 bytes */
};

struct mplex_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | res | M */
	__be32 id;
};

struct mplex_ports {
	__be16 source;
	__be16 dest;
};

struct mplex_udp {
	__be16 source;
	__be16 dest;
	__be16 len;
	__sum16 check;
};

struct mplex_tcp {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res; /* data offset in the high nibble */
	__u8 flags;
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

/* What the IP layer says about a frame whose L4 ports are readable. */
struct mplex_pkt {
	void *l3;      /* start of the IP header */
	void *l4;      /* start of the L4 header */
	__u32 ip_len;  /* bytes of the IP packet as its header claims, from l3 */
	__u32 hdr_len; /* bytes before the L4 header, from l3 (IP + extension headers) */
	__u8 l4proto;  /* IPPROTO number of the L4 header */
	__u8 fragment; /* a first fragment: IPv4 MF, or any IPv6 fragment header */
	__u8 ipv4;     /* 1: IPv4, 0: IPv6 */
};

static __always_inline int mplex_parse_eth(void **pos, void *data_end, __be16 *proto)
{
	struct mplex_eth *eth = *pos;
	__be16 p;
	int i;

	if ((void *)(eth + 1) > data_end)
		return MPLEX_NOT_OURS;
	p = eth->proto;
	*pos = eth + 1;
#pragma unroll
	for (i = 0; i < MPLEX_MAX_VLAN_TAGS; i++) {
		struct mplex_vlan *vlan = *pos;

		if (p != bpf_htons(MPLEX_ETH_P_8021Q) && p != bpf_htons(MPLEX_ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > data_end)
			return MPLEX_NOT_OURS;
		p = vlan->proto;
		*pos = vlan + 1;
	}
	*proto = p;
	return MPLEX_OK;
}

static __always_inline int mplex_parse_ipv4(void **pos, void *data_end, struct mplex_pkt *pkt)
{
	struct mplex_ipv4 *ip = *pos;
	__u32 ihl;

	if ((void *)(ip + 1) > data_end)
		return MPLEX_NOT_OURS;
	if ((ip->ver_ihl >> 4) != 4)
		return MPLEX_NOT_OURS;
	ihl = ip->ver_ihl & 0x0F;
	if (ihl < MPLEX_IPV4_MIN_IHL)
		return MPLEX_NOT_OURS;
	if ((void *)ip + ihl * 4 > data_end)
		return MPLEX_NOT_OURS;
	if (ip->frag_off & bpf_htons(MPLEX_IPV4_FRAG_OFFSET))
		return MPLEX_NOT_OURS; /* a non-first fragment carries no L4 header */
	pkt->fragment = (ip->frag_off & bpf_htons(MPLEX_IPV4_FRAG_MF)) != 0;
	pkt->l4proto = ip->protocol;
	pkt->ip_len = bpf_ntohs(ip->tot_len);
	pkt->hdr_len = ihl * 4;
	pkt->ipv4 = 1;
	pkt->l3 = ip;
	*pos = (void *)ip + ihl * 4;
	return MPLEX_OK;
}

static __always_inline int mplex_is_ext(__u8 nexthdr)
{
	return nexthdr == MPLEX_NH_HOPOPTS || nexthdr == MPLEX_NH_ROUTING ||
	       nexthdr == MPLEX_NH_FRAGMENT || nexthdr == MPLEX_NH_DSTOPTS;
}

static __always_inline int mplex_parse_ipv6(void **pos, void *data_end, struct mplex_pkt *pkt)
{
	struct mplex_ipv6 *ip = *pos;
	__u32 ext_len = 0;
	__u8 nexthdr;
	int i;

	if ((void *)(ip + 1) > data_end)
		return MPLEX_NOT_OURS;
	if ((*(__u8 *)ip >> 4) != 6)
		return MPLEX_NOT_OURS;
	nexthdr = ip->nexthdr;
	*pos = ip + 1;
	pkt->fragment = 0;
#pragma unroll
	for (i = 0; i < MPLEX_MAX_IPV6_EXT_HEADERS; i++) {
		struct mplex_ext *ext = *pos;
		__u32 len;

		if (!mplex_is_ext(nexthdr))
			break;
		if (nexthdr == MPLEX_NH_FRAGMENT) {
			struct mplex_frag *frag = *pos;

			if ((void *)(frag + 1) > data_end)
				return MPLEX_NOT_OURS;
			if (frag->frag_off & bpf_htons(MPLEX_IPV6_FRAG_OFFSET))
				return MPLEX_NOT_OURS; /* non-first fragment */
			pkt->fragment = 1;
			len = MPLEX_IPV6_FRAG_HDR_LEN;
		} else {
			if ((void *)(ext + 1) > data_end)
				return MPLEX_NOT_OURS;
			len = ((__u32)ext->len + 1) * MPLEX_IPV6_EXT_UNIT;
		}
		nexthdr = ext->nexthdr;
		ext_len += len;
		*pos += len;
	}
	if (mplex_is_ext(nexthdr))
		return MPLEX_NOT_OURS; /* more extension headers than we walk */
	pkt->l4proto = nexthdr;
	pkt->ip_len = MPLEX_IPV6_HDR_LEN + bpf_ntohs(ip->payload_len);
	pkt->hdr_len = MPLEX_IPV6_HDR_LEN + ext_len;
	pkt->ipv4 = 0;
	pkt->l3 = ip;
	return MPLEX_OK;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), 16-bit one's complement arithmetic. */
static __always_inline __u16 mplex_csum_replace(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u32)(__u16)~old + (__u32) new;

	sum = (sum & 0xFFFF) + (sum >> 16);
	sum = (sum & 0xFFFF) + (sum >> 16);
	return (__u16)~sum;
}

#endif /* MPLEX_PARSE_H */
