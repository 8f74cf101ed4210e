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
 * applies the decision (its own return codes, packet writes and checksum update). It writes
 * maps only: counters, and the flow table of the reply path.
 */
#ifndef MPLEX_CORE_H
#define MPLEX_CORE_H

/* One program and these maps serve every interface of the network namespace.
 *
 * Row MPLEX_SVC_ROW(i, mplex_active[i]) of mplex_svcs is service i's live row; the other is
 * written by user space before it flips the selector, so a packet sees a whole old or new row. */
BPF_ARRAY(mplex_active, __u32, MPLEX_NSERVICES);
BPF_ARRAY(mplex_svcs, struct mplex_svc, 2 * MPLEX_NSERVICES);
/* Routes: open addressing in a plain array (constants.py "Routes"): array lookups are
 * inlined by the verifier, so the route lookup makes no call. Mmapable: user space changes a
 * route with aligned 8-byte stores, never a copy a packet could see half done. */
BPF_F_TABLE("array", __u32, struct mplex_route_slot, mplex_routes, MPLEX_ROUTE_SLOTS,
	    BPF_F_MMAPABLE);
/* Route counters by the stable counter index of a route slot, summed over the interfaces:
 * a re-targeted route or a table swap keeps the index, so nothing is copied. */
BPF_PERCPU_ARRAY(mplex_route_ctr, struct mplex_counter, MPLEX_ROUTES_MAP_SIZE);
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

#if MPLEX_HAVE_RESTORE
/* Reply path (README "Reply path"): the ingress hook records each rewritten flow of a service
 * with `reply: restore`; the egress TC program (mplex_tc.c) gives a reply of a recorded flow
 * its service port back as source port. An LRU hash: old flows make room for new ones. */
BPF_TABLE("lru_hash", struct mplex_flow_key, struct mplex_flow, mplex_flows, MPLEX_FLOWS_MAP_SIZE);
/* Replies restored, per interface slot (the egress interface) and service. */
BPF_PERCPU_ARRAY(mplex_replies, struct mplex_counter, MPLEX_IF_SLOTS *MPLEX_NSERVICES);
#endif

#define MPLEX_NO_SERVICE (-1)
/* What the core decides for a frame; each hook's entry maps it to its own return codes. */
#define MPLEX_ACT_PASS	  0
#define MPLEX_ACT_DROP	  1
#define MPLEX_ACT_REWRITE 2
/* Largest offset of a tag into a frame (a mask, so the verifier keeps the bound however
 * clang combines the checks): far beyond the linear data of any XDP frame. */
#define MPLEX_MAX_PKT_OFF 0x7FFF

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

/* The tag as a little-endian u64, zero-padded: one masked 8-byte load at the tag, or, for a
 * tag within 8 bytes of the frame's end, the 8 bytes that end with the tag shifted down
 * (headers always precede the tag, so those 8 bytes lie inside the frame). */
static __always_inline int mplex_read_tag(void *data, void *data_end, __u32 off, __u32 tlen,
					  __u64 *out)
{
	__u64 *word;

	if (tlen - 1 >= MPLEX_TAG_MAX_LEN || off < MPLEX_TAG_MAX_LEN || off > MPLEX_MAX_PKT_OFF)
		return MPLEX_NOT_OURS;
	asm volatile("" : "+r"(off)); /* keep the mask below: clang knows it changes nothing */
	off &= MPLEX_MAX_PKT_OFF;
	word = data + off;
	if ((void *)(word + 1) <= data_end) {
		*out = *word & (~0ULL >> (64 - 8 * tlen));
		return MPLEX_OK;
	}
	off = off + tlen - MPLEX_TAG_MAX_LEN; /* >= 1: off >= MPLEX_TAG_MAX_LEN, tlen >= 1 */
	asm volatile("" : "+r"(off));
	off &= MPLEX_MAX_PKT_OFF;
	word = data + off;
	if ((void *)(word + 1) > data_end)
		return MPLEX_NOT_OURS;
	*out = *word >> (64 - 8 * tlen);
	return MPLEX_OK;
}

/* Home slot of a tag in the route table: a two-multiply hash seeded per route table. */
static __always_inline __u32 mplex_route_home(__u64 tag, __u64 seed)
{
	__u64 x = tag * (seed | 1);

	x ^= x >> MPLEX_ROUTE_HASH_SHIFT;
	x *= MPLEX_ROUTE_HASH_MUL;
	return (__u32)(x >> (64 - MPLEX_ROUTE_BITS));
}

/* Word 1 of the live route slot holding `tag` under `prefix` (port, key, counter index), or
 * 0. At most svc->probes slots from the home slot, stopping at an EMPTY one. Word 1 is read
 * before and after the tag: user space changes a slot's tag only while its key word says
 * TOMBSTONE and gives the new route a fresh counter index, so equal key and counter index in
 * both reads prove the tag read belongs to that route (a re-target changes the port alone). */
static __always_inline __u64 mplex_route_find(struct mplex_svc *svc, __u32 prefix, __u64 tag)
{
	__u32 home = mplex_route_home(tag, svc->seed);
	__u64 want = MPLEX_ROUTE_SLOT_KEY(prefix);
	__u32 probes = svc->probes;
	int i;

#pragma unroll
	for (i = 0; i < MPLEX_ROUTE_PROBES_MAX; i++) {
		__u32 at = home + i;
		struct mplex_route_slot *s;
		__u64 w, w2, key;

		if (i >= probes)
			break;
		s = mplex_routes.lookup(&at);
		if (!s)
			break;
		w = *(volatile __u64 *)&s->port;
		key = (w >> MPLEX_SLOT_KEY_SHIFT) & MPLEX_SLOT_KEY_MASK;
		if (key == MPLEX_ROUTE_KEY_EMPTY)
			break;
		if (key != want || *(volatile __u64 *)&s->tag != tag)
			continue;
		w2 = *(volatile __u64 *)&s->port;
		if ((w2 ^ w) >> MPLEX_SLOT_KEY_SHIFT == 0)
			return w2;
	}
	return 0;
}

#if MPLEX_HAVE_RESTORE
/* The flow key of a packet from src to dst (addresses of pkt's IP header): a request is
 * keyed (client = src, server = dst), its reply (client = dst, server = src). */
static __always_inline int mplex_flow_key(struct mplex_pkt *pkt, void *data_end, int reply,
					  struct mplex_flow_key *key)
{
	__u8 *src, *dst;
	__u32 alen;

	if (pkt->ipv4) {
		struct mplex_ipv4 *ip = pkt->l3;

		if ((void *)(ip + 1) > data_end)
			return MPLEX_NOT_OURS;
		src = (__u8 *)&ip->saddr;
		dst = (__u8 *)&ip->daddr;
		alen = sizeof(ip->saddr);
	} else {
		struct mplex_ipv6 *ip = pkt->l3;

		if ((void *)(ip + 1) > data_end)
			return MPLEX_NOT_OURS;
		src = ip->saddr;
		dst = ip->daddr;
		alen = sizeof(ip->saddr);
	}
	if (alen == sizeof(__be32)) {
		__builtin_memcpy(key->client, reply ? dst : src, sizeof(__be32));
		__builtin_memcpy(key->server, reply ? src : dst, sizeof(__be32));
	} else {
		__builtin_memcpy(key->client, reply ? dst : src, MPLEX_FLOW_ADDR_LEN);
		__builtin_memcpy(key->server, reply ? src : dst, MPLEX_FLOW_ADDR_LEN);
	}
	key->proto = pkt->l4proto;
	key->family = pkt->ipv4 ? MPLEX_FLOW_IPV4 : MPLEX_FLOW_IPV6;
	return MPLEX_OK;
}

/* Record a rewritten request (service idx, its port as the packet still carries it, the new
 * port): a lookup first, so a known flow costs no update (an LRU update allocates). */
static __always_inline void mplex_record(struct mplex_pkt *pkt, void *data_end, __u32 idx,
					 __be16 port)
{
	struct mplex_ports *ports = pkt->l4;
	struct mplex_flow_key key = {};
	struct mplex_flow flow = {};
	struct mplex_flow *have;

	if ((void *)(ports + 1) > data_end)
		return;
	if (mplex_flow_key(pkt, data_end, 0, &key) != MPLEX_OK)
		return;
	key.client_port = ports->source;
	key.backend_port = port;
	have = mplex_flows.lookup(&key);
	if (have && have->svc_port == ports->dest && have->svc == idx)
		return;
	flow.svc_port = ports->dest;
	flow.svc = idx;
	mplex_flows.update(&key, &flow);
}
#endif

/* The contract on a service packet (service index idx, parsed into pkt): windows, tag, route,
 * counters. Returns MPLEX_ACT_*; on MPLEX_ACT_REWRITE *port is the new destination port, which
 * the hook's entry writes with its own packet access and checksum update. */
static __always_inline int mplex_service(void *data, void *data_end, __u32 ifindex, __u64 bytes,
					 __u32 idx, struct mplex_pkt *pkt, __be16 *port)
{
	struct mplex_counter *ctr;
	struct mplex_svc *svc;
	struct mplex_where at = {.svc = idx};
	__u32 *active, row, ip_payload, l4_len, plen, off, tlen, ctr_index;
	__u64 tagword, word;

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
	if (mplex_read_tag(data, data_end, off, tlen, &tagword) != MPLEX_OK)
		return mplex_count(&at, MPLEX_V_DROP_MALFORMED, bytes, MPLEX_ACT_DROP);

	word = mplex_route_find(svc, MPLEX_ROUTE_PREFIX(idx, svc->slot & 1), tagword);
	if (!word) {
		if (svc->flags & MPLEX_SVC_F_PASS_UNMATCHED)
			return mplex_count(&at, MPLEX_V_PASS_UNMATCHED, bytes, MPLEX_ACT_PASS);
		return mplex_count(&at, MPLEX_V_DROP_UNKNOWN_TAG, bytes, MPLEX_ACT_DROP);
	}
	ctr_index = (__u32)(word >> MPLEX_SLOT_CTR_SHIFT);
	ctr = mplex_route_ctr.lookup(&ctr_index);
	if (ctr) {
		ctr->packets++;
		ctr->bytes += bytes;
	}
	*port = (__be16)(word & MPLEX_SLOT_PORT_MASK);
#if MPLEX_HAVE_RESTORE
	if (svc->flags & MPLEX_SVC_F_RESTORE)
		mplex_record(pkt, data_end, idx, *port);
#endif
	return mplex_count(&at, MPLEX_V_REWRITE, bytes, MPLEX_ACT_REWRITE);
}

/* Parse a frame up to its L4 ports (pkt->l4 set): MPLEX_OK, or MPLEX_NOT_OURS for a frame
 * the packet contract leaves alone. */
static __always_inline int mplex_parse_frame(void *data, void *data_end, struct mplex_pkt *pkt)
{
	void *pos = data;
	__be16 proto;

	if (mplex_parse_eth(&pos, data_end, &proto) != MPLEX_OK)
		return MPLEX_NOT_OURS;
	if (proto == bpf_htons(MPLEX_ETH_P_IPV4)) {
		if (mplex_parse_ipv4(&pos, data_end, pkt) != MPLEX_OK)
			return MPLEX_NOT_OURS;
	} else if (proto == bpf_htons(MPLEX_ETH_P_IPV6)) {
		if (mplex_parse_ipv6(&pos, data_end, pkt) != MPLEX_OK)
			return MPLEX_NOT_OURS;
	} else {
		return MPLEX_NOT_OURS;
	}
	if (pos + sizeof(struct mplex_ports) > data_end)
		return MPLEX_NOT_OURS;
	pkt->l4 = pos;
	return MPLEX_OK;
}

/* The index of the service a frame is for, or MPLEX_NO_SERVICE (it then passes untouched). */
static __always_inline int mplex_frame(void *data, void *data_end, struct mplex_pkt *pkt)
{
	struct mplex_ports *ports;

	if (mplex_parse_frame(data, data_end, pkt) != MPLEX_OK)
		return MPLEX_NO_SERVICE;
	ports = pkt->l4;
	if ((void *)(ports + 1) > data_end)
		return MPLEX_NO_SERVICE;
	return mplex_match(pkt->l4proto, ports->dest);
}

#endif /* MPLEX_CORE_H */
