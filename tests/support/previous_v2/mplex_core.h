/* SPDX-License-Identifier: GPL-2.0 */
/* mplex core: the packet contract on a parsed frame, shared by every hook (XDP in mplex.c).
 *
 * Packet contract (README "Packet semantics"): parse Ethernet, up to two VLAN tags, IPv4 or
 * IPv6 (+ up to four extension headers) and the L4 ports. A frame whose (protocol, port)
 * is no service passes untouched. A service packet is dropped when it is a first fragment,
 * malformed, or its payload length is outside every window; otherwise the tag selects a
 * route (destination port rewritten, checksum fixed) or `unmatched` decides.
 *
 * The core reads the frame through data/data_end only and never writes it: a hook's entry
 * applies the decision (its own return codes, packet writes and checksum update).
 */
#ifndef MPLEX_CORE_H
#define MPLEX_CORE_H

/* One program and these maps serve every interface of the network namespace.
 *
 * Row MPLEX_SVC_ROW(i, mplex_active[i]) of mplex_svcs is service i's live row; the other is
 * written by user space before it flips the selector, so a packet sees a whole old or new row. */
BPF_ARRAY(mplex_active, __u32, MPLEX_NSERVICES);
BPF_ARRAY(mplex_svcs, struct mplex_svc, 2 * MPLEX_NSERVICES);
/* Route counters live in the route value: summed over the interfaces. */
BPF_TABLE("percpu_hash", struct mplex_route_key, struct mplex_route, mplex_routes,
	  MPLEX_ROUTES_MAP_SIZE);
/* Verdict counters per interface: the ingress ifindex selects a counter slot (an array read
 * the verifier inlines; a hash only for ifindexes beyond MPLEX_IFINDEX_DIRECT). */
BPF_ARRAY(mplex_ifslot, __u32, MPLEX_IFINDEX_DIRECT);
BPF_HASH(mplex_ifslot_hi, __u32, __u32, MPLEX_IF_SLOTS);
BPF_PERCPU_ARRAY(mplex_svc_stats, struct mplex_counter,
		 MPLEX_IF_SLOTS *MPLEX_NSERVICES *MPLEX_NVERDICTS);
/* Metadata of the applied generation and the names of the compiled services: read by user
 * space only, bound to the program with BPF_PROG_BIND_MAP so they live as long as it does. */
BPF_ARRAY(mplex_meta, struct mplex_meta, 1);
BPF_ARRAY(mplex_svc_info, struct mplex_svc_info, MPLEX_NSERVICES);

#define MPLEX_NO_SERVICE (-1)
/* What the core decides for a frame; each hook's entry maps it to its own return codes. */
#define MPLEX_ACT_PASS	  0
#define MPLEX_ACT_DROP	  1
#define MPLEX_ACT_REWRITE 2
/* Largest offset into a frame the verifier can bound (MAX_PACKET_OFF minus a tag). */
#define MPLEX_MAX_PKT_OFF (0xFFFF - 2 * MPLEX_TAG_MAX_LEN)

static __always_inline int mplex_match(__u8 proto, __be16 dport)
{
#define MPLEX_CASE(port, index)       \
	case MPLEX_HTONS_CONST(port): \
		return index;
#if MPLEX_HAVE_UDP
	if (proto == MPLEX_PROTO_UDP) {
		switch (dport) {
			MPLEX_UDP_SERVICES(MPLEX_CASE)
		}
	}
#endif
#if MPLEX_HAVE_TCP
	if (proto == MPLEX_PROTO_TCP) {
		switch (dport) {
			MPLEX_TCP_SERVICES(MPLEX_CASE)
		}
	}
#endif
#undef MPLEX_CASE
	return MPLEX_NO_SERVICE;
}

/* Counter slot of the interface a packet arrived on (MPLEX_IF_SLOT_NONE: not in the file). */
static __always_inline __u32 mplex_if_slot(__u32 ifindex)
{
	/* Two call sites on purpose: an if/else would let clang merge them into one call with
	 * two possible maps, which the verifier cannot inline (a real call, ~20 ns here). The
	 * array lookup returns NULL for an ifindex beyond its size. */
	__u32 *slot = mplex_ifslot.lookup(&ifindex);

	if (!slot && ifindex >= MPLEX_IFINDEX_DIRECT)
		slot = mplex_ifslot_hi.lookup(&ifindex);
	return slot ? *slot : MPLEX_IF_SLOT_NONE;
}

struct mplex_where {
	__u32 svc;
	__u32 ifslot;
};

static __always_inline int mplex_count(struct mplex_where *at, __u32 verdict, __u64 bytes,
				       int action)
{
	__u32 row = MPLEX_STATS_ROW(at->ifslot, at->svc, verdict, MPLEX_NSERVICES);
	struct mplex_counter *ctr = mplex_svc_stats.lookup(&row);

	if (ctr) {
		ctr->packets++;
		ctr->bytes += bytes;
	}
	return action;
}

/* L4 header length of a service packet, or 0 when its lengths are inconsistent. */
static __always_inline __u32 mplex_l4_hdr_len(struct mplex_pkt *pkt, void *data_end,
					      __u32 ip_payload)
{
	if (pkt->l4proto == MPLEX_PROTO_UDP) {
		struct mplex_udp *udp = pkt->l4;

		if (ip_payload < MPLEX_UDP_HDR_LEN || (void *)(udp + 1) > data_end)
			return 0;
		if (bpf_ntohs(udp->len) != ip_payload)
			return 0;
		return MPLEX_UDP_HDR_LEN;
	} else {
		struct mplex_tcp *tcp = pkt->l4;
		__u32 doff;

		if (ip_payload < MPLEX_TCP_MIN_HDR_LEN || (void *)(tcp + 1) > data_end)
			return 0;
		doff = tcp->doff_res >> 4;
		if (doff < MPLEX_TCP_MIN_DOFF || doff * 4 > ip_payload)
			return 0;
		return doff * 4;
	}
}

static __always_inline int mplex_in_windows(struct mplex_svc *svc, __u32 len)
{
	int i;

#pragma unroll
	for (i = 0; i < MPLEX_MAX_WINDOWS; i++) {
		if (i >= svc->nwin)
			break;
		if (len >= svc->win[i].min && len <= svc->win[i].max)
			return 1;
	}
	return 0;
}

/* The contract on a service packet (service index idx, parsed into pkt): windows, tag, route,
 * counters. Returns MPLEX_ACT_*; on MPLEX_ACT_REWRITE *port is the new destination port, which
 * the hook's entry writes with its own packet access and checksum update. */
static __always_inline int mplex_service(void *data, void *data_end, __u32 ifindex, __u64 bytes,
					 __u32 idx, struct mplex_pkt *pkt, __be16 *port)
{
	struct mplex_route_key key = {};
	struct mplex_route *route;
	struct mplex_svc *svc;
	struct mplex_where at = {.svc = idx};
	__u32 *active, row, ip_payload, l4_len, plen, off, tlen, i;
	__u8 *tag;

	active = mplex_active.lookup(&idx);
	if (!active)
		return MPLEX_ACT_PASS;
	row = MPLEX_SVC_ROW(idx, *active & 1);
	svc = mplex_svcs.lookup(&row);
	if (!svc || !(svc->flags & MPLEX_SVC_F_VALID))
		return MPLEX_ACT_PASS;
	at.ifslot = mplex_if_slot(ifindex);

	if (pkt->fragment)
		return mplex_count(&at, MPLEX_V_DROP_FRAGMENT, bytes, MPLEX_ACT_DROP);
	if (pkt->ip_len > (__u32)(data_end - pkt->l3) || pkt->hdr_len > pkt->ip_len)
		return mplex_count(&at, MPLEX_V_DROP_MALFORMED, bytes, MPLEX_ACT_DROP);
	ip_payload = pkt->ip_len - pkt->hdr_len;
	l4_len = mplex_l4_hdr_len(pkt, data_end, ip_payload);
	if (!l4_len)
		return mplex_count(&at, MPLEX_V_DROP_MALFORMED, bytes, MPLEX_ACT_DROP);
	plen = ip_payload - l4_len;
	if (!mplex_in_windows(svc, plen))
		return mplex_count(&at, MPLEX_V_DROP_LENGTH, bytes, MPLEX_ACT_DROP);

	/* Validation guarantees tag.offset + tag.length <= every window's min <= plen, so the
	 * tag lies inside the payload; the verifier still wants a bounded offset and a check. */
	tlen = svc->tag_len;
	off = (__u32)(pkt->l4 - data) + l4_len + svc->tag_off;
	if (off > MPLEX_MAX_PKT_OFF)
		return mplex_count(&at, MPLEX_V_DROP_MALFORMED, bytes, MPLEX_ACT_DROP);
	tag = data + off;
	key.svc_slot = MPLEX_ROUTE_PREFIX(idx, svc->slot & 1);
#pragma unroll
	for (i = 0; i < MPLEX_TAG_MAX_LEN; i++) {
		if (i >= tlen)
			break;
		if ((void *)(tag + i + 1) > data_end)
			return mplex_count(&at, MPLEX_V_DROP_MALFORMED, bytes, MPLEX_ACT_DROP);
		key.tag[i] = tag[i];
	}

	route = mplex_routes.lookup(&key);
	if (!route) {
		if (svc->flags & MPLEX_SVC_F_PASS_UNMATCHED)
			return mplex_count(&at, MPLEX_V_PASS_UNMATCHED, bytes, MPLEX_ACT_PASS);
		return mplex_count(&at, MPLEX_V_DROP_UNKNOWN_TAG, bytes, MPLEX_ACT_DROP);
	}
	route->packets++;
	route->bytes += bytes;
	*port = route->port;
	return mplex_count(&at, MPLEX_V_REWRITE, bytes, MPLEX_ACT_REWRITE);
}

/* Parse a frame up to its L4 ports: the index of the service it is for, or MPLEX_NO_SERVICE
 * (the frame then passes untouched). */
static __always_inline int mplex_frame(void *data, void *data_end, struct mplex_pkt *pkt)
{
	struct mplex_ports *ports;
	void *pos = data;
	__be16 proto;
	int idx;

	if (mplex_parse_eth(&pos, data_end, &proto) != MPLEX_OK)
		return MPLEX_NO_SERVICE;
	if (proto == bpf_htons(MPLEX_ETH_P_IPV4)) {
		if (mplex_parse_ipv4(&pos, data_end, pkt) != MPLEX_OK)
			return MPLEX_NO_SERVICE;
	} else if (proto == bpf_htons(MPLEX_ETH_P_IPV6)) {
		if (mplex_parse_ipv6(&pos, data_end, pkt) != MPLEX_OK)
			return MPLEX_NO_SERVICE;
	} else {
		return MPLEX_NO_SERVICE;
	}
	ports = pos;
	if ((void *)(ports + 1) > data_end)
		return MPLEX_NO_SERVICE;
	idx = mplex_match(pkt->l4proto, ports->dest);
	if (idx == MPLEX_NO_SERVICE)
		return MPLEX_NO_SERVICE;
	pkt->l4 = pos;
	return idx;
}

#endif /* MPLEX_CORE_H */
