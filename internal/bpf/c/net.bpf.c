// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* vigil network events: TCP connect (with its outcome), UDP connect, bind,
 * listen, accept and DNS query names.
 *
 * Only hooks that leave the syscall fast path alone are used:
 *  - tp_btf/inet_sock_set_state: every TCP state change (connect outcome,
 *    listen, accept);
 *  - cgroup sock_addr hooks on the cgroup2 root: connect4/6 (UDP connect),
 *    sendmsg4/6 (remember who sends DNS), post_bind4/6 (bind);
 *  - cgroup_skb/egress on the cgroup2 root: DNS questions (UDP to port 53).
 * Every cgroup program returns 1: vigil observes, it never blocks.
 */
#include "common.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define DNS_PORT 53
#define ECONNABORTED_ 103

/* Body of connect/bind/listen/accept records (after struct rec_hdr).
 * Addresses are in network byte order (4 bytes used for AF_INET), ports in
 * host byte order. Mirrored by netRec in internal/source/ebpf/network. */
struct net_rec {
	struct rec_hdr hdr;
	__u16 family;   /* AF_INET or AF_INET6 */
	__u8 protocol;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 _pad;
	__s32 result;   /* connect: 0 or -errno */
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 repeats;  /* connect/accept: like ones counted, not sent, since the last report */
};

/* DNS question bytes copied: the longest name (255) plus qtype and qclass. */
#define DNS_Q_MAX 260

/* Body of DNS records: the raw question section (wire-format name, qtype,
 * qclass), decoded in user space. */
struct dns_rec {
	struct rec_hdr hdr;
	__u16 family;
	__u16 qlen;     /* bytes valid in q */
	__u16 sport;
	__u16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 q[DNS_Q_MAX];
	__u8 _pad[4];
};

/* Wire sizes, checked against the Go mirrors' constants (netRecSize,
 * dnsRecSize plus the 88-byte header) by the decoder tests. */
_Static_assert(sizeof(struct rec_hdr) == 88, "rec_hdr size is part of the wire format");
_Static_assert(sizeof(struct net_rec) == 88 + 48, "net_rec size is part of the wire format");
_Static_assert(sizeof(struct dns_rec) == 88 + 304, "dns_rec size is part of the wire format");

/* Connecting TCP sockets: the process that called connect(), remembered at
 * CLOSE->SYN_SENT and reported when the handshake's outcome is known (often
 * in softirq, where current is unrelated). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, struct rec_hdr);
} net_connecting SEC(".maps");

/* Listening sockets: the process that called listen(), used to attribute
 * connections accepted (established in softirq) on that port. */
struct listen_key {
	__u32 netns;
	__u16 port;   /* host order */
	__u16 family;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct listen_key);
	__type(value, struct rec_hdr);
} net_listeners SEC(".maps");

/* Per-socket sender of DNS traffic, written in process context by the
 * connect/sendmsg hooks and read by cgroup_skb/egress, which has no current
 * task. self marks the sensor's own sockets. */
struct dns_owner {
	struct rec_hdr hdr;
	__u32 self;
	__u32 _pad;
};
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct dns_owner);
} net_dns_owner SEC(".maps");

/* Repeat suppression (vigil_config.repeat_ms). A process connecting to the
 * same destination again and again (a client without connection pooling, a
 * health check, a retry loop), or a server accepting from the same peer
 * address on the same port, would send one record per connection: the
 * first one in each window is reported, the others only counted, and the
 * count travels in the `repeats` field of the next one reported. The key
 * names the process exactly (tgid, start time, exec generation, euid), so
 * a new program, a new process reusing the pid or a privilege change is
 * always reported afresh; a new destination, peer or port always is too. */
struct repeat_key {
	__u32 tgid;
	__u32 euid;
	__u64 start_time;
	__u64 exec_id;  /* task->self_exec_id: changes on every exec */
	__u8 addr[16];  /* connect: destination; accept: peer */
	__u16 port;     /* connect: destination port; accept: local port */
	__u16 family;
	__u8 type;      /* REC_CONNECT or REC_ACCEPT */
	__u8 protocol;
	__u8 _pad[2];
};
struct repeat_val {
	__u64 last;     /* bpf_ktime_get_boot_ns() of the last one reported */
	__u64 count;    /* counted since then */
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct repeat_key);
	__type(value, struct repeat_val);
} net_repeats SEC(".maps");

/* repeated decides about one connection: 1 when it falls in the window of
 * a like one already reported (it is counted), else 0 with *count set to
 * how many were counted since that report (the window restarts now). */
static __always_inline int repeated(struct repeat_key *k, __u32 *count)
{
	*count = 0;
	struct vigil_config *cfg = get_config();
	if (!cfg || !cfg->repeat_ms)
		return 0;
	__u64 now = bpf_ktime_get_boot_ns();
	struct repeat_val *v = bpf_map_lookup_elem(&net_repeats, k);
	if (v) {
		if (now - v->last < (__u64)cfg->repeat_ms * 1000000) {
			__sync_fetch_and_add(&v->count, 1);
			return 1;
		}
		__u64 c = v->count;
		*count = c > 0xffffffff ? 0xffffffff : (__u32)c;
		v->count = 0;
		v->last = now;
		return 0;
	}
	struct repeat_val nv = {.last = now};
	bpf_map_update_elem(&net_repeats, k, &nv, BPF_ANY);
	return 0;
}

/* Scratch header for building map values off the (small) BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rec_hdr);
} net_scratch SEC(".maps");

static __always_inline struct rec_hdr *scratch_hdr(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&net_scratch, &zero);
}

/* remote_addr copies a socket's remote address (4 bytes for AF_INET). */
static __always_inline void remote_addr(const struct sock *sk, __u8 *addr, __u16 family)
{
	if (family == AF_INET6)
		__builtin_memcpy(addr, &sk->__sk_common.skc_v6_daddr, 16);
	else
		*(__u32 *)addr = sk->__sk_common.skc_daddr;
}

/* sock_addrs copies a socket's local and remote address and ports. */
static __always_inline void sock_addrs(const struct sock *sk, struct net_rec *r, __u16 family)
{
	__builtin_memset(r->saddr, 0, sizeof(r->saddr));
	__builtin_memset(r->daddr, 0, sizeof(r->daddr));
	/* sk is a trusted BTF pointer (tp_btf argument): direct, CO-RE
	 * relocated loads, no helper calls. */
	if (family == AF_INET6) {
		__builtin_memcpy(r->saddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
	} else {
		*(__u32 *)r->saddr = sk->__sk_common.skc_rcv_saddr;
	}
	remote_addr(sk, r->daddr, family);
	r->sport = sk->__sk_common.skc_num;
	r->dport = bpf_ntohs(sk->__sk_common.skc_dport);
}

/* emit_sock sends a record about sk on behalf of the remembered process. */
static __always_inline void emit_sock(const struct sock *sk, __u32 type, const struct rec_hdr *who,
				      __u16 family, __s32 result, __u32 repeats)
{
	struct net_rec *r = reserve(sizeof(*r));
	if (!r)
		return;
	__builtin_memcpy(&r->hdr, who, sizeof(r->hdr));
	r->hdr.type = type;
	r->hdr.size = sizeof(*r);
	r->hdr.ts = bpf_ktime_get_boot_ns();
	r->family = family;
	r->protocol = IPPROTO_TCP_;
	r->_pad = 0;
	r->result = result;
	r->repeats = repeats;
	r->hdr._pad = 0;
	sock_addrs(sk, r, family);
	commit(r);
}

static __always_inline void listen_key_of(const struct sock *sk, struct listen_key *k, __u16 family)
{
	k->netns = sk->__sk_common.skc_net.net->ns.inum;
	k->port = sk->__sk_common.skc_num;
	k->family = family;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(vigil_inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	/* Cheapest checks first: this runs on every TCP state change, about
	 * ten per connection, and six of those ten are decided by the two
	 * states alone, before any load from the socket. */
	if (!((oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) || oldstate == TCP_SYN_SENT ||
	      newstate == TCP_LISTEN || (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) ||
	      (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)))
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP_)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u64 key = (__u64)sk;

	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		/* connect(): process context. The destination is set, the
		 * source port not yet. */
		if (is_self())
			return 0;
		struct task_struct *task = bpf_get_current_task_btf();
		struct repeat_key rk = {
			.tgid = task->tgid,
			.euid = task->cred->euid.val,
			.start_time = task->group_leader->start_boottime,
			.exec_id = task->self_exec_id,
			.port = bpf_ntohs(sk->__sk_common.skc_dport),
			.family = family,
			.type = REC_CONNECT,
			.protocol = IPPROTO_TCP_,
		};
		remote_addr(sk, rk.addr, family);
		__u32 repeats;
		if (repeated(&rk, &repeats))
			return 0;
		struct rec_hdr *h = scratch_hdr();
		if (!h)
			return 0;
		fill_hdr(h, REC_CONNECT, sizeof(struct net_rec), task);
		h->_pad = repeats; /* carried to the outcome's record */
		bpf_map_update_elem(&net_connecting, &key, h, BPF_ANY);
		return 0;
	}
	if (oldstate == TCP_SYN_SENT) {
		struct rec_hdr *who = bpf_map_lookup_elem(&net_connecting, &key);
		if (!who)
			return 0;
		__s32 result = 0;
		if (newstate != TCP_ESTABLISHED) {
			int err = sk->sk_err;
			/* sk_err 0: closed by its owner (or failed locally)
			 * before the handshake completed. */
			result = err ? -err : -ECONNABORTED_;
		}
		emit_sock(sk, REC_CONNECT, who, family, result, who->_pad);
		bpf_map_delete_elem(&net_connecting, &key);
		return 0;
	}
	if (newstate == TCP_LISTEN) {
		/* listen(): process context. */
		if (is_self())
			return 0;
		struct rec_hdr *h = scratch_hdr();
		if (!h)
			return 0;
		fill_hdr(h, REC_LISTEN, sizeof(struct net_rec), bpf_get_current_task_btf());
		struct listen_key k = {};
		listen_key_of(sk, &k, family);
		bpf_map_update_elem(&net_listeners, &k, h, BPF_ANY);
		emit_sock(sk, REC_LISTEN, h, family, 0, 0);
		return 0;
	}
	if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
		struct listen_key k = {};
		listen_key_of(sk, &k, family);
		bpf_map_delete_elem(&net_listeners, &k);
		return 0;
	}
	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		/* A child socket of a listener completed the handshake
		 * (softirq): attribute it to the listener's process. */
		struct listen_key k = {};
		listen_key_of(sk, &k, family);
		struct rec_hdr *who = bpf_map_lookup_elem(&net_listeners, &k);
		if (!who)
			return 0;
		/* The listener's identity as of listen(): the exec generation
		 * is not known here and stays 0. */
		struct repeat_key rk = {
			.tgid = who->pid,
			.euid = who->euid,
			.start_time = who->start_time,
			.port = k.port,
			.family = family,
			.type = REC_ACCEPT,
			.protocol = IPPROTO_TCP_,
		};
		remote_addr(sk, rk.addr, family);
		__u32 repeats;
		if (repeated(&rk, &repeats))
			return 0;
		emit_sock(sk, REC_ACCEPT, who, family, 0, repeats);
		return 0;
	}
	return 0;
}

static __always_inline void fill_current(struct rec_hdr *h, __u32 type, __u32 size)
{
	fill_hdr_untrusted(h, type, size, (struct task_struct *)bpf_get_current_task());
}

/* remember_dns_sender records the current process as the owner of a UDP
 * socket that talks to port 53, for cgroup_skb/egress to attribute. */
static __always_inline void remember_dns_sender(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_UDP_ || ctx->user_port != bpf_htons(DNS_PORT))
		return;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return;
	struct dns_owner *o = bpf_sk_storage_get(&net_dns_owner, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return;
	if (is_self()) {
		o->self = 1;
		return;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	/* Refresh only when another thread/process sends on the socket. */
	if (o->hdr.pid == (__u32)(pid_tgid >> 32) && o->hdr.tid == (__u32)pid_tgid && o->hdr.type)
		return;
	o->self = 0;
	fill_current(&o->hdr, REC_DNS, sizeof(struct dns_rec));
}

/* udp_connect reports connect(2) on a UDP socket. */
static __always_inline void udp_connect(struct bpf_sock_addr *ctx, __u16 family)
{
	if (ctx->protocol != IPPROTO_UDP_ || is_self())
		return;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct repeat_key rk = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.euid = BPF_CORE_READ(task, cred, euid.val),
		.start_time = BPF_CORE_READ(task, group_leader, start_boottime),
		.exec_id = BPF_CORE_READ(task, self_exec_id),
		.port = bpf_ntohs((__u16)ctx->user_port),
		.family = family,
		.type = REC_CONNECT,
		.protocol = IPPROTO_UDP_,
	};
	if (family == AF_INET6) {
		__u32 *a = (__u32 *)rk.addr;
		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
	} else {
		*(__u32 *)rk.addr = ctx->user_ip4;
	}
	__u32 repeats;
	if (repeated(&rk, &repeats))
		return;
	struct net_rec *r = reserve(sizeof(*r));
	if (!r)
		return;
	fill_current(&r->hdr, REC_CONNECT, sizeof(*r));
	r->family = family;
	r->protocol = IPPROTO_UDP_;
	r->_pad = 0;
	r->result = 0;
	r->repeats = repeats;
	__builtin_memset(r->saddr, 0, sizeof(r->saddr));
	__builtin_memset(r->daddr, 0, sizeof(r->daddr));
	if (family == AF_INET6) {
		__u32 *d = (__u32 *)r->daddr;
		d[0] = ctx->user_ip6[0];
		d[1] = ctx->user_ip6[1];
		d[2] = ctx->user_ip6[2];
		d[3] = ctx->user_ip6[3];
	} else {
		*(__u32 *)r->daddr = ctx->user_ip4;
	}
	r->sport = 0; /* not yet bound (autobind happens after this hook) */
	r->dport = bpf_ntohs((__u16)ctx->user_port);
	commit(r);
}

SEC("cgroup/connect4")
int vigil_connect4(struct bpf_sock_addr *ctx)
{
	udp_connect(ctx, AF_INET);
	remember_dns_sender(ctx);
	return 1;
}

SEC("cgroup/connect6")
int vigil_connect6(struct bpf_sock_addr *ctx)
{
	udp_connect(ctx, AF_INET6);
	remember_dns_sender(ctx);
	return 1;
}

SEC("cgroup/sendmsg4")
int vigil_sendmsg4(struct bpf_sock_addr *ctx)
{
	remember_dns_sender(ctx);
	return 1;
}

SEC("cgroup/sendmsg6")
int vigil_sendmsg6(struct bpf_sock_addr *ctx)
{
	remember_dns_sender(ctx);
	return 1;
}

/* post_bind runs after the port is allocated, in the binding process. */
static __always_inline void post_bind(struct bpf_sock *sk, __u16 family)
{
	if ((sk->protocol != IPPROTO_TCP_ && sk->protocol != IPPROTO_UDP_) || is_self())
		return;
	struct net_rec *r = reserve(sizeof(*r));
	if (!r)
		return;
	fill_current(&r->hdr, REC_BIND, sizeof(*r));
	r->family = family;
	r->protocol = sk->protocol;
	r->_pad = 0;
	r->result = 0;
	r->repeats = 0;
	__builtin_memset(r->saddr, 0, sizeof(r->saddr));
	__builtin_memset(r->daddr, 0, sizeof(r->daddr));
	if (family == AF_INET6) {
		__u32 *s = (__u32 *)r->saddr;
		s[0] = sk->src_ip6[0];
		s[1] = sk->src_ip6[1];
		s[2] = sk->src_ip6[2];
		s[3] = sk->src_ip6[3];
	} else {
		*(__u32 *)r->saddr = sk->src_ip4;
	}
	r->sport = (__u16)sk->src_port; /* host order */
	r->dport = 0;
	commit(r);
}

SEC("cgroup/post_bind4")
int vigil_post_bind4(struct bpf_sock *sk)
{
	post_bind(sk, AF_INET);
	return 1;
}

SEC("cgroup/post_bind6")
int vigil_post_bind6(struct bpf_sock *sk)
{
	post_bind(sk, AF_INET6);
	return 1;
}

/* Packet layouts (network byte order). */
struct ip4h {
	__u8 vihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag;
	__u8 ttl;
	__u8 proto;
	__u16 csum;
	__u32 saddr;
	__u32 daddr;
};
struct ip6h {
	__u32 vtcfl;
	__u16 plen;
	__u8 nexthdr;
	__u8 hlim;
	__u8 saddr[16];
	__u8 daddr[16];
};
struct udph {
	__u16 sport;
	__u16 dport;
	__u16 len;
	__u16 csum;
};
struct dnsh {
	__u16 id;
	__u16 flags;
	__u16 qdcount;
	__u16 ancount;
	__u16 nscount;
	__u16 arcount;
};

/* DNS: UDP datagrams to port 53 leaving any socket. cgroup_skb sees the
 * packet from the network header on. */
SEC("cgroup_skb/egress")
int vigil_dns_egress(struct __sk_buff *skb)
{
	__u32 off = 0;
	__u16 family;
	__u8 saddr[16] = {}, daddr[16] = {};

	/* This runs for every packet any socket sends (a loopback TCP
	 * connection is ~6): rule out non-UDP packets with a direct look at the
	 * linear header before any helper call. A header not in the linear
	 * part takes the bpf_skb_load_bytes path below. */
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (skb->protocol == bpf_htons(ETH_P_IP_)) {
		struct ip4h *h4 = data;
		if ((void *)(h4 + 1) <= data_end && h4->proto != IPPROTO_UDP_)
			return 1;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6_)) {
		struct ip6h *h6 = data;
		if ((void *)(h6 + 1) <= data_end && h6->nexthdr != IPPROTO_UDP_)
			return 1;
	} else {
		return 1;
	}

	if (skb->protocol == bpf_htons(ETH_P_IP_)) {
		struct ip4h ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.proto != IPPROTO_UDP_ || (ip.frag & bpf_htons(0x3fff)))
			return 1;
		off = (ip.vihl & 0xf) * 4;
		if (off < sizeof(ip))
			return 1;
		family = AF_INET;
		*(__u32 *)saddr = ip.saddr;
		*(__u32 *)daddr = ip.daddr;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6_)) {
		struct ip6h ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.nexthdr != IPPROTO_UDP_) /* extension headers: not parsed */
			return 1;
		off = sizeof(ip);
		family = AF_INET6;
		__builtin_memcpy(saddr, ip.saddr, 16);
		__builtin_memcpy(daddr, ip.daddr, 16);
	} else {
		return 1;
	}

	struct udph udp;
	if (bpf_skb_load_bytes(skb, off, &udp, sizeof(udp)))
		return 1;
	if (udp.dport != bpf_htons(DNS_PORT))
		return 1;
	off += sizeof(udp);
	struct dnsh dh;
	if (bpf_skb_load_bytes(skb, off, &dh, sizeof(dh)))
		return 1;
	/* A query (QR=0, opcode QUERY) with at least one question. */
	if ((dh.flags & bpf_htons(0xf800)) || dh.qdcount == 0)
		return 1;
	off += sizeof(dh);

	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	struct dns_owner *o = bpf_sk_storage_get(&net_dns_owner, sk, 0, 0);
	/* No owner: the socket's sender was never seen (e.g. connected before
	 * the sensor started); the query cannot be attributed. */
	if (!o || o->self || !o->hdr.type)
		return 1;

	if (off >= skb->len)
		return 1;
	__u64 n = skb->len - off;
	if (n > DNS_Q_MAX)
		n = DNS_Q_MAX;
	/* Keep the verifier's view of n in [1, DNS_Q_MAX]. */
	asm volatile("%[n] &= 0x1ff" : [n] "+r"(n));
	if (n < 1 || n > DNS_Q_MAX)
		return 1;

	struct dns_rec *r = reserve(sizeof(*r));
	if (!r)
		return 1;
	__builtin_memcpy(&r->hdr, &o->hdr, sizeof(r->hdr));
	r->hdr.type = REC_DNS;
	r->hdr.size = sizeof(*r);
	r->hdr.ts = bpf_ktime_get_boot_ns();
	r->family = family;
	r->sport = bpf_ntohs(udp.sport);
	r->dport = DNS_PORT;
	__builtin_memset(r->_pad, 0, sizeof(r->_pad));
	__builtin_memcpy(r->saddr, saddr, 16);
	__builtin_memcpy(r->daddr, daddr, 16);
	if (bpf_skb_load_bytes(skb, off, r->q, n)) {
		r->qlen = 0;
	} else {
		r->qlen = n;
	}
	commit(r);
	return 1;
}
