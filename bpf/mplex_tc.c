/* SPDX-License-Identifier: GPL-2.0 */
/* mplex TC entries: the packet contract of mplex_core.h as a TC ingress program (hook: tc),
 * and the reply path's egress program. A TC program sees the skb as the stack has it, so
 * the checksum is updated with bpf_l4_csum_replace, which handles every ip_summed state: a
 * CHECKSUM_PARTIAL skb (sent by a local socket with checksum offload) keeps its partial sum
 * of the pseudo-header, which the ports are not part of; other skbs get the incremental
 * update. */
#include <uapi/linux/bpf.h>

#include "mplex_config.h"
#include "mplex_common.h"
#include "mplex_parse.h"
#include "mplex_core.h"

/* Verdicts: the next program or filter of the hook decides what a passed frame does (tcx:
 * TCX_NEXT; cls_bpf direct-action: the next filter), as XDP_PASS hands a frame on. */
#define MPLEX_TC_NEXT MPLEX_TC_ACT_UNSPEC
#define MPLEX_TC_DROP MPLEX_TC_ACT_SHOT

#define MPLEX_PORT_DEST	  1
#define MPLEX_PORT_SOURCE 0

/* Frames with headers outside the linear part of the skb are linearised first (rare: GRO,
 * some drivers); the contract reads the whole L4 payload. */
static __always_inline void mplex_tc_linear(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if ((__u32)(data_end - data) < skb->len)
		bpf_skb_pull_data(skb, skb->len);
}

/* Set one port of the L4 header at l4_off to `port` (the one at port_off, now `old`), the
 * checksum at csum_off with it. The helper invalidates packet pointers: the port is written
 * through fresh ones (a direct write; the verifier unclones a cloned skb first), which costs
 * no second helper call (bpf_skb_store_bytes). */
static __always_inline void mplex_tc_port(struct __sk_buff *skb, __u32 l4_off, __u32 port_off,
					  __u32 csum_off, __be16 old, __be16 port, __u64 flags)
{
	void *data, *data_end;
	__be16 *at;
	__u32 off;

	bpf_l4_csum_replace(skb, l4_off + csum_off, old, port, flags | sizeof(port));
	off = l4_off + port_off;
	if (off > MPLEX_MAX_PKT_OFF)
		return;
	asm volatile("" : "+r"(off)); /* keep the mask: the verifier needs the bound here */
	off &= MPLEX_MAX_PKT_OFF;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	at = data + off;
	if ((void *)(at + 1) > data_end)
		return;
	*at = port;
}

/* Rewrite the destination (dest = MPLEX_PORT_DEST) or source port of a parsed frame. */
static __always_inline void mplex_tc_rewrite(struct __sk_buff *skb, struct mplex_pkt *pkt,
					     void *data, void *data_end, __be16 port, int dest)
{
	__u32 l4_off = pkt->l4 - data;

	if (pkt->l4proto == MPLEX_PROTO_UDP) {
		struct mplex_udp *udp = pkt->l4;
		__u64 flags = 0;

		if ((void *)(udp + 1) > data_end)
			return;
		/* An IPv4 UDP checksum of 0 means "none" and stays 0; a computed 0 is sent as
		 * 0xFFFF (BPF_F_MARK_MANGLED_0); an IPv6 UDP checksum is always updated. */
		if (pkt->ipv4 || udp->check)
			flags = BPF_F_MARK_MANGLED_0;
		if (dest)
			mplex_tc_port(skb, l4_off, __builtin_offsetof(struct mplex_udp, dest),
				      __builtin_offsetof(struct mplex_udp, check), udp->dest, port,
				      flags);
		else
			mplex_tc_port(skb, l4_off, __builtin_offsetof(struct mplex_udp, source),
				      __builtin_offsetof(struct mplex_udp, check), udp->source,
				      port, flags);
	} else if (pkt->l4proto == MPLEX_PROTO_TCP) {
		struct mplex_tcp *tcp = pkt->l4;

		if ((void *)(tcp + 1) > data_end)
			return;
		if (dest)
			mplex_tc_port(skb, l4_off, __builtin_offsetof(struct mplex_tcp, dest),
				      __builtin_offsetof(struct mplex_tcp, check), tcp->dest, port,
				      0);
		else
			mplex_tc_port(skb, l4_off, __builtin_offsetof(struct mplex_tcp, source),
				      __builtin_offsetof(struct mplex_tcp, check), tcp->source,
				      port, 0);
	}
}

#if MPLEX_HAVE_TC_INGRESS
int mplex_tc_in(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct mplex_pkt pkt = {};
	__be16 port = 0;
	int idx;

	mplex_tc_linear(skb);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	idx = mplex_frame(data, data_end, &pkt);
	if (idx == MPLEX_NO_SERVICE)
		return MPLEX_TC_NEXT;
	switch (mplex_service(data, data_end, skb->ifindex, skb->len, idx, &pkt, &port)) {
	case MPLEX_ACT_DROP:
		return MPLEX_TC_DROP;
	case MPLEX_ACT_REWRITE:
		mplex_tc_rewrite(skb, &pkt, data, data_end, port, MPLEX_PORT_DEST);
		return MPLEX_TC_NEXT;
	default:
		return MPLEX_TC_NEXT;
	}
}
#endif

#if MPLEX_HAVE_RESTORE
/* Egress: a reply of a recorded flow (from backend port to the client) leaves with the
 * service port as its source port. Anything else passes untouched. Only UDP flows are
 * recorded (validation refuses `reply: restore` on a tcp service: its handshake is dropped),
 * so other segments leave without a lookup. */
int mplex_tc_out(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct mplex_flow_key key = {};
	struct mplex_pkt pkt = {};
	struct mplex_counter *ctr;
	struct mplex_ports *ports;
	struct mplex_flow *flow;
	__u32 svc, row;
	__be16 port;

	if (mplex_parse_frame(data, data_end, &pkt) != MPLEX_OK)
		return MPLEX_TC_NEXT;
	if (pkt.l4proto != MPLEX_PROTO_UDP)
		return MPLEX_TC_NEXT;
	ports = pkt.l4;
	if ((void *)(ports + 1) > data_end)
		return MPLEX_TC_NEXT;
	if (mplex_flow_key(&pkt, data_end, 1, &key) != MPLEX_OK)
		return MPLEX_TC_NEXT;
	key.client_port = ports->dest;
	key.backend_port = ports->source;
	flow = mplex_flows.lookup(&key);
	if (!flow)
		return MPLEX_TC_NEXT;
	svc = flow->svc;
	port = flow->svc_port;
	if (svc >= MPLEX_NSERVICES)
		return MPLEX_TC_NEXT;
	row = mplex_if_slot(skb->ifindex) * MPLEX_NSERVICES + svc;
	ctr = mplex_replies.lookup(&row);
	if (ctr) {
		ctr->packets++;
		ctr->bytes += skb->len;
	}
	mplex_tc_rewrite(skb, &pkt, data, data_end, port, MPLEX_PORT_SOURCE);
	return MPLEX_TC_NEXT;
}
#endif
