/* SPDX-License-Identifier: GPL-2.0 */
/* mplex XDP entry: the packet contract of mplex_core.h with XDP's packet access (direct
 * writes, incremental checksum update of RFC 1624). */
#include <uapi/linux/bpf.h>

#include "mplex_config.h"
#include "mplex_common.h"
#include "mplex_parse.h"
#include "mplex_core.h"

/* The L4 header was bounds-checked by mplex_l4_hdr_len; the verifier cannot correlate the
 * two protocol branches, so each write path checks again (never fails at run time). */
static __always_inline void mplex_xdp_rewrite(struct mplex_pkt *pkt, void *data_end, __be16 port)
{
	if (pkt->l4proto == MPLEX_PROTO_UDP) {
		struct mplex_udp *udp = pkt->l4;
		__u16 check;

		if ((void *)(udp + 1) > data_end)
			return;
		check = udp->check;

		/* An IPv4 UDP checksum of 0 means "none" and stays 0; IPv6 has no such case. */
		if (!(pkt->ipv4 && check == 0)) {
			check = mplex_csum_replace(check, udp->dest, port);
			udp->check = check ? check : 0xFFFF;
		}
		udp->dest = port;
	} else {
		struct mplex_tcp *tcp = pkt->l4;

		if ((void *)(tcp + 1) > data_end)
			return;
		tcp->check = mplex_csum_replace(tcp->check, tcp->dest, port);
		tcp->dest = port;
	}
}

int mplex_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct mplex_pkt pkt = {};
	__be16 port = 0;
	int idx;

	idx = mplex_frame(data, data_end, &pkt);
	if (idx == MPLEX_NO_SERVICE)
		return XDP_PASS;
	switch (mplex_service(data, data_end, ctx->ingress_ifindex, data_end - data, idx, &pkt,
			      &port)) {
	case MPLEX_ACT_DROP:
		return XDP_DROP;
	case MPLEX_ACT_REWRITE:
		mplex_xdp_rewrite(&pkt, data_end, port);
		return XDP_PASS;
	default:
		return XDP_PASS;
	}
}
