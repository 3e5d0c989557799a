// SPDX-License-Identifier: GPL-2.0
/* The packet path of a lab's traffic, stage by stage.
 *
 * A packet is sampled once, at its first stage (netfilter LOCAL_OUT in the
 * sending node; without netfilter links, the egress hook of the lab's
 * devices, else net_dev_queue), by a coin toss before its headers are
 * read: sampled, it gets an id, filed under its skb's address and, when
 * every stage is traced, under its headers (`tracked`). When every packet
 * is traced, the skb's address is a hash map's key (`by_skb`). When
 * packets are sampled, a small array of the packets in flight
 * (`inflight`) holds them, skb, id and headers, and later stages compare
 * the skb they are given with its entries: a few loads in a few cache
 * lines, which is all an unsampled packet costs their programs, and no
 * hash map for a sampled one. The kernel's call into each attached
 * program costs more, which is why a sampled run attaches few stages (Go:
 * Detail). A hit is confirmed by the headers (the kernel reuses skb
 * addresses at once).
 * The receive entry also looks up the headers, to find a sampled packet
 * again in a new skb (veth with XDP copies it): for every packet when
 * every packet is traced, else only right after a sampled packet left a
 * device on the same CPU. Drops of the lab's traffic are reported whether
 * sampled or not. Only packets of the lab's network namespaces
 * (`lab_netns`, filled from Go) are sampled.
 *
 * Events go to a ring buffer per CPU without wakeups (BPF_RB_NO_WAKEUP):
 * the default wakeup costs microseconds per event, so Go polls the buffers
 * every few milliseconds instead. */
#include "types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define NF_ACCEPT 1
#define NF_INET_LOCAL_IN 1
#define NF_INET_LOCAL_OUT 3
#define TCP_FLAG_SYN 0x02
#define AF_PACKET 17

/* Stages, as event.stage; the names live in Go (stages.go). */
enum stage {
	STAGE_NF = 1,          /* a netfilter hook: event.hook */
	STAGE_DEV_QUEUE,       /* tp_btf/net_dev_queue */
	STAGE_START_XMIT,      /* tp_btf/net_dev_start_xmit */
	STAGE_NETIF_RX,        /* tp_btf/netif_rx: into the backlog (veth without NAPI) */
	STAGE_RECEIVE,         /* tp_btf/netif_receive_skb: where taps see it */
	STAGE_TCP_RECEIVE,     /* tp_btf/tcp_probe: TCP takes the segment */
	STAGE_DATA_READY,      /* tp_btf/sk_data_ready */
	STAGE_WAKEUP,          /* tp_btf/sched_waking of the reader: event.value = pid */
	STAGE_COPY,            /* tp_btf/skb_copy_datagram_iovec: event.value = bytes */
	STAGE_DROP,            /* tp_btf/kfree_skb: event.value = reason, event.location */
	STAGE_CONSUME,         /* tp_btf/consume_skb */
	STAGE_SYN,             /* a SYN at LOCAL_OUT, always: its seq is the ISN */
	STAGE_CAPTURE,         /* a packet socket's copy (tcpdump): event.value = bytes */
	STAGE_TC_EGRESS,       /* tcx/egress of a lab device, right before net_dev_queue */
	STAGE_GRO_ENTRY,       /* tp_btf/napi_gro_receive_entry: into a NAPI device's GRO (veth with XDP gives a new skb: found at STAGE_RECEIVE) */
};

/* A packet's identity along its path. The skb address is left out: veth
 * with XDP copies a packet into a new skb. The IPv4 id tells apart
 * packets with equal headers (Linux numbers every DF TCP packet of a
 * socket). For UDP, whose datagrams from an unconnected socket all have
 * IPv4 id 0, seq is a hash of the first bytes of the payload and ack the
 * UDP length. */
struct key {
	__be32 saddr, daddr;
	__u16 sport, dport; /* host order */
	__u32 seq, ack;     /* host order */
	__u16 ipid;
	__u8 proto;
	__u8 flags;         /* TCP flags; not part of the identity (zeroed in the map key) */
};

struct tracked_val {
	__u64 id;
};

struct event {
	__u64 ts;        /* CLOCK_MONOTONIC */
	__u64 id;        /* the packet's, 0 for a drop of a packet not sampled */
	__u64 location;  /* drops: the code that freed it */
	__be32 saddr, daddr;
	__u16 sport, dport;
	__u32 seq, ack;
	__u32 netns;     /* inode of the namespace, 0 when the stage cannot tell */
	__u32 ifindex;
	__u32 len;
	__u32 value;     /* drop reason, copied bytes, woken pid, or who polled a received packet (enum polled) */
	__u32 cpu;
	__u32 napi_id;
	__u16 ipid;
	__u16 stage;
	__u8 hook;
	__u8 proto;
	__u8 flags;
	__u8 pad;
};

/* A ring buffer per CPU, each CPU's events in its own: with one ring, its
 * lock and positions moved between the CPUs of a round trip with every
 * event. Go sizes them (Go: ringBytes) and puts one at each possible
 * CPU's index. */
struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(values, struct ring);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct key);
	__type(value, struct tracked_val);
	__uint(max_entries, 65536);
} tracked SEC(".maps");

/* A sampled packet under its skb's address, with its headers to confirm a
 * hit by. */
struct by_skb_val {
	struct key k;
	__u64 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct by_skb_val);
	__uint(max_entries, 65536);
} by_skb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 4096);
} lab_netns SEC(".maps");

/* Events the ring buffer had no room for. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} lost SEC(".maps");

/* The last tracked packet received on this CPU (netif_receive_skb, TCP's
 * receive, and LOCAL_IN when netfilter is traced), for sk_data_ready and the wakeup
 * after it, which run on the same CPU in the same softirq and are not
 * given the skb. */
struct pending {
	struct key k;
	__u64 id;
	__u64 ts;
	__u32 netns;
	__u8 woken; /* 0: waits for data_ready; 1: waits for the wakeup */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pending);
	__uint(max_entries, 1);
} last_in SEC(".maps");

/* Set from Go while programs run, read by every program run: in a
 * section (a map) of their own, so that no sampled packet's write shares
 * their cache line (every program on every CPU would then miss it). */
#define CONFIG SEC(".data.config")
volatile __u64 sample_q32 CONFIG = 0; /* sampling rate × 2^32; 0: drops only; 2^32: every packet */
/* Where packets are sampled: the first transmit stage attached. */
enum decide { DECIDE_LOCAL_OUT, DECIDE_TC_EGRESS, DECIDE_DEV_QUEUE };
volatile __u8 decide_at CONFIG = DECIDE_LOCAL_OUT;
/* Stages that find a sampled packet by its headers (the receive entry, a
 * capture's copy) are attached: a sampled packet is filed under its
 * headers, and its transmit noted for the receive. Without them (a sampled
 * run of the landmarks) a sampled packet skips both, some 0.3 µs. */
volatile __u8 by_headers CONFIG = 0;

/* What each CPU counts on its own: a round trip's packets are sampled on
 * both CPUs in turn, and a shared counter's cache line would move between
 * them with every sampled packet. */
struct cpu_counts {
	__u64 ids;   /* packet ids given; an id is the CPU's number << 48 | this */
	__u32 slots; /* in-flight entries written */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct cpu_counts);
	__uint(max_entries, 1);
} counts SEC(".maps");

/* A join through last_in older than this is no join. */
#define PENDING_NS 200000

/* The sampled packets in flight, in a ring written round-robin. A
 * packet's entry is cleared when its skb is consumed or dropped; TCP frees
 * the skbs it has read without a tracepoint, so older entries are simply
 * overwritten. An entry is written skb last and read skb first, and a hit
 * is confirmed by the headers, so a reader racing a writer on another CPU
 * misses a packet rather than misfiling it. Unused when every packet is
 * traced (by_skb is the index then). */
#define INFLIGHT 16
/* A CPU writes entries cpu, cpu + 4, cpu + 8, cpu + 12 (mod 16): on up to
 * four CPUs, each its own, a cache line each. */
#define INFLIGHT_CPUS 4
struct flying {
	__u64 skb;
	__u64 id;
	struct key k;
} __attribute__((aligned(64)));
struct flying inflight[INFLIGHT] SEC(".data.inflight");

/* When a sampled packet last left a device, per CPU: a receive on the same
 * CPU shortly after may hold it in a new skb (veth with XDP). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} last_xmit SEC(".maps");

/* sent notes that a sampled packet left a device on this CPU: at the
 * transmit stages (the egress hook, net_dev_queue), and again at
 * net_dev_start_xmit where it is attached (after a qdisc's wait). */
static __always_inline void sent(void)
{
	__u32 z = 0;
	__u64 *last;

	if (!by_headers)
		return;
	last = bpf_map_lookup_elem(&last_xmit, &z);
	if (last)
		*last = bpf_ktime_get_ns();
}

struct iph_min {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct tcph_min {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff;
	__u8 flags;
};

/* Bytes of a UDP payload its key hashes. */
#define PAYLOAD_HASHED 32

struct udph_min {
	__be16 source;
	__be16 dest;
	__be16 len;
};

/* parse fills k from the IPv4 and TCP or UDP headers at l3, a kernel
 * pointer; 0 on success. */
static __always_inline int parse(const unsigned char *l3, struct key *k)
{
	struct iph_min ip;
	__u32 ihl;

	if (!l3 || bpf_probe_read_kernel(&ip, sizeof(ip), l3))
		return -1;
	if ((ip.ver_ihl >> 4) != 4)
		return -1;
	ihl = (ip.ver_ihl & 0x0f) * 4;
	if (ihl < 20)
		return -1;
	k->saddr = ip.saddr;
	k->daddr = ip.daddr;
	k->ipid = bpf_ntohs(ip.id);
	k->proto = ip.protocol;
	if (ip.protocol == IPPROTO_TCP) {
		struct tcph_min th;

		if (bpf_probe_read_kernel(&th, sizeof(th), l3 + ihl))
			return -1;
		k->sport = bpf_ntohs(th.source);
		k->dport = bpf_ntohs(th.dest);
		k->seq = bpf_ntohl(th.seq);
		k->ack = bpf_ntohl(th.ack_seq);
		k->flags = th.flags;
		return 0;
	}
	if (ip.protocol == IPPROTO_UDP) {
		struct udph_min uh;
		__u8 payload[PAYLOAD_HASHED] = {};
		__u32 n, h = 2166136261u; /* FNV-1a */

		if (bpf_probe_read_kernel(&uh, sizeof(uh), l3 + ihl))
			return -1;
		k->sport = bpf_ntohs(uh.source);
		k->dport = bpf_ntohs(uh.dest);
		k->ack = bpf_ntohs(uh.len);
		n = k->ack > 8 ? k->ack - 8 : 0;
		if (n > PAYLOAD_HASHED)
			n = PAYLOAD_HASHED;
		if (n && bpf_probe_read_kernel(payload, sizeof(payload), l3 + ihl + 8))
			return -1;
#pragma unroll
		for (int i = 0; i < PAYLOAD_HASHED; i++) {
			if (i < n)
				h = (h ^ payload[i]) * 16777619u;
		}
		k->seq = h;
		return 0;
	}
	return -1;
}

/* The IPv4 header as the IP layer set it (transmit, and past ip_rcv). */
static __always_inline const unsigned char *l3_set(struct sk_buff *skb)
{
	return skb->head + skb->network_header;
}

/* The kernel's pointers are read directly (tp_btf and netfilter programs
 * are given typed pointers; the verifier turns each read into a load that
 * cannot fault): a load, where bpf_probe_read_kernel is a helper call.
 * Pointers the verifier takes for RCU-protected or possibly NULL (struct
 * net, an skb's socket and device) are checked before use. */
static __always_inline __u32 inum(struct net *net)
{
	return net ? net->ns.inum : 0;
}

static __always_inline __u32 netns_of_sk(struct sock *sk)
{
	return sk ? inum(sk->__sk_common.skc_net.net) : 0;
}

static __always_inline __u32 netns_of_dev(struct net_device *dev)
{
	return dev ? inum(dev->nd_net.net) : 0;
}

static __always_inline __u32 ifindex_of(struct net_device *dev)
{
	return dev ? dev->ifindex : 0;
}

/* The namespace of a packet on a device stage; a socket's for one that
 * has none yet (skb->dev shares a union with the socket queue's links
 * once TCP holds the skb, so socket stages use the socket). */
static __always_inline __u32 netns_of(struct sk_buff *skb)
{
	__u32 ino = netns_of_dev(skb->dev);

	if (!ino)
		ino = netns_of_sk(skb->sk);
	return ino;
}

static __always_inline int in_lab(__u32 ino)
{
	return ino && bpf_map_lookup_elem(&lab_netns, &ino) != 0;
}

static __always_inline int same(struct key *a, struct key *b)
{
	return a->saddr == b->saddr && a->daddr == b->daddr && a->sport == b->sport && a->dport == b->dport &&
	       a->seq == b->seq && a->ack == b->ack && a->ipid == b->ipid && a->proto == b->proto;
}

static __always_inline int every_packet(void)
{
	return sample_q32 > 0xffffffffULL;
}

/* slot is the entry of the in-flight array that holds skb, or -1. */
static __always_inline int slot(struct sk_buff *skb)
{
	__u64 addr = (__u64)skb;

#pragma unroll
	for (int i = 0; i < INFLIGHT; i++) {
		if (inflight[i].skb == addr)
			return i;
	}
	return -1;
}

/* in_flight reports whether skb may hold a sampled packet. */
static __always_inline int in_flight(struct sk_buff *skb)
{
	return every_packet() || slot(skb) >= 0;
}

static __always_inline void forget(struct sk_buff *skb)
{
	__u64 addr = (__u64)skb;

	if (every_packet()) {
		bpf_map_delete_elem(&by_skb, &addr);
		return;
	}
#pragma unroll
	for (int i = 0; i < INFLIGHT; i++) {
		if (inflight[i].skb == addr)
			inflight[i].skb = 0;
	}
}

/* remember files a sampled packet under its skb's address. */
static __always_inline void remember(struct sk_buff *skb, struct key *k, __u64 id)
{
	__u64 addr = (__u64)skb;
	struct cpu_counts *c;
	struct flying *f;
	__u32 z = 0;

	if (every_packet()) {
		struct by_skb_val v = {.k = *k, .id = id};

		v.k.flags = 0;
		bpf_map_update_elem(&by_skb, &addr, &v, BPF_ANY);
		return;
	}
	/* An entry left by an earlier packet in the same skb (TCP frees
	 * without a tracepoint, and the address comes back) would be found
	 * first. */
	forget(skb);
	c = bpf_map_lookup_elem(&counts, &z);
	if (!c)
		return;
	f = &inflight[(bpf_get_smp_processor_id() + INFLIGHT_CPUS * c->slots++) % INFLIGHT];
	f->skb = 0;
	f->id = id;
	f->k = *k;
	f->k.flags = 0;
	/* BPF has no fence; the JIT keeps stores in order, and x86 keeps
	 * them so for other CPUs (elsewhere the headers still confirm). */
	asm volatile("" ::: "memory");
	f->skb = addr;
}

/* find is the id of the sampled packet skb holds, 0 when it holds none,
 * with its headers (read from l3) in k. An unsampled packet costs a look
 * at the in-flight array, or one lookup when every packet is traced; a
 * stale entry (a reused address) is dropped. */
static __always_inline __u64 find(struct sk_buff *skb, const unsigned char *l3, struct key *k)
{
	__u64 addr = (__u64)skb, id;
	struct key want;

	if (every_packet()) {
		struct by_skb_val *v = bpf_map_lookup_elem(&by_skb, &addr);

		if (!v)
			return 0;
		want = v->k;
		id = v->id;
	} else {
		int i = slot(skb);

		if (i < 0 || i >= INFLIGHT)
			return 0;
		want = inflight[i].k;
		id = inflight[i].id;
	}
	if (parse(l3, k) || !same(k, &want)) {
		forget(skb);
		return 0;
	}
	return id;
}

/* lookup is the id of the sampled packet with headers k, else 0. */
static __always_inline __u64 lookup(struct key *k)
{
	struct key mk = *k;
	struct tracked_val *v;

	mk.flags = 0;
	v = bpf_map_lookup_elem(&tracked, &mk);
	return v ? v->id : 0;
}

/* coin tosses for a packet at its first stage, before anything of it is
 * read. */
static __always_inline int coin(void)
{
	return (__u64)bpf_get_prandom_u32() < sample_q32;
}

/* sample gives a packet of the lab that won the toss its id, under its
 * headers and its skb; 0 when its headers cannot be read. */
static __always_inline __u64 sample(struct sk_buff *skb, const unsigned char *l3, struct key *k)
{
	struct cpu_counts *c;
	struct tracked_val v;
	struct key mk;
	__u32 z = 0;

	c = bpf_map_lookup_elem(&counts, &z);
	if (!c || parse(l3, k))
		return 0;
	v.id = (__u64)bpf_get_smp_processor_id() << 48 | ++c->ids;
	if (by_headers) {
		mk = *k;
		mk.flags = 0;
		bpf_map_update_elem(&tracked, &mk, &v, BPF_ANY);
	}
	remember(skb, k, v.id);
	return v.id;
}

static __always_inline void emit(struct key *k, __u64 id, __u16 stage, __u8 hook, __u32 ino,
				 __u32 ifindex, __u32 len, __u32 value, __u64 location, __u32 napi_id)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&events, &cpu);
	struct event *e = ring ? bpf_ringbuf_reserve(ring, sizeof(*e), 0) : 0;

	if (!e) {
		__u32 z = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &z);

		if (n)
			*n += 1;
		return;
	}
	e->ts = bpf_ktime_get_ns();
	e->id = id;
	e->location = location;
	e->saddr = k->saddr;
	e->daddr = k->daddr;
	e->sport = k->sport;
	e->dport = k->dport;
	e->seq = k->seq;
	e->ack = k->ack;
	e->netns = ino;
	e->ifindex = ifindex;
	e->len = len;
	e->value = value;
	e->cpu = cpu;
	e->napi_id = napi_id;
	e->ipid = k->ipid;
	e->stage = stage;
	e->hook = hook;
	e->proto = k->proto;
	e->flags = k->flags;
	e->pad = 0;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

static __always_inline void emit_skb(struct key *k, __u64 id, __u16 stage, struct sk_buff *skb, __u32 ino)
{
	emit(k, id, stage, 0, ino, ifindex_of(skb->dev), skb->len, 0, 0, 0);
}

/* A SYN's sequence number is the ISN that stream offsets count from:
 * every SYN the lab sends is reported, sampled or not. Only small packets
 * are read for it (a SYN with its options is 60 bytes, 74 with the
 * Ethernet header net_dev_queue counts). */
#define SYN_MAX 80

static __always_inline void syn(const unsigned char *l3, __u32 ino)
{
	struct key k = {};

	if (parse(l3, &k))
		return;
	if (k.proto == IPPROTO_TCP && (k.flags & TCP_FLAG_SYN))
		emit(&k, 0, STAGE_SYN, NF_INET_LOCAL_OUT, ino, 0, 0, 0, 0, 0);
}

/* expect_data_ready notes, for this CPU, a sampled packet on its way to a
 * socket: the receive entry notes it, and TCP's receive and LOCAL_IN (when
 * netfilter is traced) again; sk_data_ready and the reader's wakeup follow in the same
 * softirq. */
static __always_inline void expect_data_ready(struct key *k, __u64 id, __u32 ino)
{
	__u32 z = 0;
	struct pending *p = bpf_map_lookup_elem(&last_in, &z);

	if (p) {
		p->k = *k;
		p->id = id;
		p->ts = bpf_ktime_get_ns();
		p->netns = ino;
		p->woken = 0;
	}
}

SEC("netfilter")
int nf_hook(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	const struct nf_hook_state *st = ctx->state;
	__u8 hook = st->hook;
	const unsigned char *l3 = skb->data;
	struct key k = {};
	__u32 ino = 0;
	__u64 id;

	if (hook == NF_INET_LOCAL_OUT) {
		ino = inum(st->net);
		if (!in_lab(ino))
			return NF_ACCEPT;
		if (skb->len <= SYN_MAX)
			syn(l3, ino);
		if (decide_at != DECIDE_LOCAL_OUT)
			id = find(skb, l3, &k);
		else
			id = coin() ? sample(skb, l3, &k) : 0;
	} else {
		id = find(skb, l3, &k);
	}
	if (!id)
		return NF_ACCEPT;
	if (!ino)
		ino = inum(st->net);
	emit(&k, id, STAGE_NF, hook, ino, 0, skb->len, 0, 0, 0);
	if (hook == NF_INET_LOCAL_IN)
		expect_data_ready(&k, id, ino);
	return NF_ACCEPT;
}

/* transmit is a stage on a device's way out: where packets are decided,
 * a packet of the lab is sampled (and a SYN noted), else a sampled packet
 * is found. An unsampled packet that cannot be a SYN costs a read of its
 * length and a coin toss where packets are decided, a look at the
 * in-flight array elsewhere. */
static __always_inline void transmit(struct sk_buff *skb, __u16 stage, int decide)
{
	struct key k = {};
	__u64 id;

	if (decide) {
		int small = skb->len <= SYN_MAX, won = coin();
		__u32 ino;

		if (!small && !won)
			return;
		ino = netns_of(skb);
		if (!in_lab(ino))
			return;
		if (small)
			syn(l3_set(skb), ino);
		if (!won)
			return;
		id = sample(skb, l3_set(skb), &k);
	} else {
		if (!in_flight(skb))
			return;
		id = find(skb, l3_set(skb), &k);
	}
	if (id) {
		emit_skb(&k, id, stage, skb, netns_of(skb));
		sent();
	}
}

/* Gives a tc program the skb behind its context (Linux 6.2). */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

#define TCX_NEXT -1

/* The egress hook of the lab's devices (tcx, Linux 6.6), where a run
 * without netfilter links samples: attached to the lab's devices alone,
 * it costs the host's other packets nothing, and a lab packet less than a
 * tracepoint's program (docs/packet-path.md, "What it costs"). It passes
 * every packet on. */
SEC("tcx/egress")
int tc_egress(struct __sk_buff *ctx)
{
	transmit(bpf_cast_to_kern_ctx(ctx), STAGE_TC_EGRESS, decide_at == DECIDE_TC_EGRESS);
	return TCX_NEXT;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(dev_queue, struct sk_buff *skb)
{
	transmit(skb, STAGE_DEV_QUEUE, decide_at == DECIDE_DEV_QUEUE);
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(start_xmit, struct sk_buff *skb, struct net_device *dev)
{
	struct key k = {};
	__u64 id;

	if (!in_flight(skb))
		return 0;
	id = find(skb, l3_set(skb), &k);
	if (id) {
		emit(&k, id, STAGE_START_XMIT, 0, netns_of_dev(dev), ifindex_of(dev), skb->len, 0, 0, 0);
		sent();
	}
	return 0;
}

/* copied_since_xmit reports whether a receive may hold a sampled packet in
 * a new skb: always when every packet is traced, else when a sampled
 * packet left a device on this CPU within XMIT_NS and has not been
 * received yet (veth's NAPI runs where the sender queued to it, at once). */
#define XMIT_NS 20000

static __always_inline int copied_since_xmit(void)
{
	__u32 z = 0;
	__u64 *last;

	if (every_packet())
		return 1;
	last = bpf_map_lookup_elem(&last_xmit, &z);
	return last && *last && bpf_ktime_get_ns() - *last < XMIT_NS;
}

/* received notes that the sampled packet that last left a device on this
 * CPU has been received. */
static __always_inline void received(void)
{
	__u32 z = 0;
	__u64 *last = bpf_map_lookup_elem(&last_xmit, &z);

	if (last)
		*last = 0;
}

/* Who took a received packet from its device's queue: the receive
 * softirq (net_rx_action: a device's NAPI poll, or the backlog), or a
 * thread busy polling (SO_BUSY_POLL, epoll's busy poll: __napi_busy_loop,
 * which runs the device's poll with bottom halves disabled, in the
 * thread's own context). */
enum polled { POLLED_UNKNOWN, POLLED_SOFTIRQ, POLLED_BUSY };

/* Whether this CPU runs the receive softirq now: set and cleared by the
 * softirq_entry and softirq_exit programs, which run once per softirq, not
 * per packet. (The current stack pointer cannot tell: since Linux 6.14
 * tracing programs may run on a private stack.) */
#define NET_RX_SOFTIRQ 3
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 1);
} in_net_rx SEC(".maps");

static __always_inline int net_rx(unsigned int vec, __u8 on)
{
	__u32 z = 0;
	__u8 *flag;

	if (vec != NET_RX_SOFTIRQ)
		return 0;
	flag = bpf_map_lookup_elem(&in_net_rx, &z);
	if (flag)
		*flag = on;
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(softirq_entry, unsigned int vec)
{
	return net_rx(vec, 1);
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(softirq_exit, unsigned int vec)
{
	return net_rx(vec, 0);
}

/* Outside the receive softirq, the code on the stack tells a busy poll:
 * Go sets the ranges of the busy-poll loop and of net_rx_action from
 * /proc/kallsyms before the programs attach (0: unknown). */
volatile __u64 softirq_lo CONFIG = 0;
volatile __u64 softirq_hi CONFIG = 0;
volatile __u64 busy_lo CONFIG = 0;
volatile __u64 busy_hi CONFIG = 0;

/* Deep enough for netif_receive_skb under GRO under the device's poll
 * under the busy-poll loop: 12 frames found every busy-polled packet of
 * the tests on 6.18; 24 leave room (walks are rare: only receptions
 * outside the softirq). */
#define POLL_FRAMES 24
struct frames {
	__u64 ip[POLL_FRAMES];
};

/* Too large for the programs' 512-byte stack beside the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct frames);
	__uint(max_entries, 1);
} stack_scratch SEC(".maps");

static __always_inline __u32 polled_by(void *ctx)
{
	__u32 z = 0;
	__u8 *flag = bpf_map_lookup_elem(&in_net_rx, &z);
	struct frames *f;
	long n;

	if (flag && *flag)
		return POLLED_SOFTIRQ;
	if (!busy_hi)
		return POLLED_UNKNOWN;
	f = bpf_map_lookup_elem(&stack_scratch, &z);
	if (!f)
		return POLLED_UNKNOWN;
	n = bpf_get_stack(ctx, f->ip, sizeof(f->ip), 0);
	for (int i = 0; i < POLL_FRAMES; i++) {
		__u64 ip = f->ip[i];

		if (i * 8 >= n) /* n < 0: no stack */
			break;
		if (ip >= busy_lo && ip < busy_hi)
			return POLLED_BUSY;
		if (ip >= softirq_lo && ip < softirq_hi)
			return POLLED_SOFTIRQ;
	}
	return POLLED_UNKNOWN;
}

/* On receive entry the IP header is at data: eth_type_trans pulled the
 * Ethernet header, and network_header is set only after this tracepoint.
 * netif_receive_skb also finds a sampled packet by its headers when its
 * skb is new (veth with XDP copies the packet). */
static __always_inline int rx_entry(void *ctx, struct sk_buff *skb, __u16 stage)
{
	const unsigned char *l3;
	struct key k = {};
	__u64 id = 0;
	int flying = in_flight(skb);

	if (!flying && (stage != STAGE_RECEIVE || !copied_since_xmit()))
		return 0;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	l3 = skb->data;
	if (flying)
		id = find(skb, l3, &k);
	if (!id && stage == STAGE_RECEIVE && copied_since_xmit() && !parse(l3, &k)) {
		id = lookup(&k);
		if (id)
			remember(skb, &k, id);
	}
	if (id) {
		__u32 napi = 0, ino = netns_of(skb);

		if (bpf_core_field_exists(skb->napi_id))
			napi = skb->napi_id;
		emit(&k, id, stage, 0, ino, ifindex_of(skb->dev), skb->len,
		     stage == STAGE_RECEIVE ? polled_by(ctx) : 0, 0, napi);
		if (stage == STAGE_RECEIVE) {
			received();
			expect_data_ready(&k, id, ino);
		}
	}
	return 0;
}

SEC("tp_btf/netif_rx")
int BPF_PROG(netif_rx, struct sk_buff *skb)
{
	return rx_entry(ctx, skb, STAGE_NETIF_RX);
}

/* A NAPI device's poll hands the packet to GRO: the crossing where a
 * device has NAPI, as netif_rx is where it has none. */
SEC("tp_btf/napi_gro_receive_entry")
int BPF_PROG(gro_entry, struct sk_buff *skb)
{
	return rx_entry(ctx, skb, STAGE_GRO_ENTRY);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(receive, struct sk_buff *skb)
{
	return rx_entry(ctx, skb, STAGE_RECEIVE);
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_receive, struct sock *sk, struct sk_buff *skb)
{
	struct key k = {};
	__u64 id;

	if (!in_flight(skb))
		return 0;
	id = find(skb, l3_set(skb), &k);
	if (id) {
		__u32 ino = netns_of_sk(sk);

		emit(&k, id, STAGE_TCP_RECEIVE, 0, ino, 0, skb->len, 0, 0, 0);
		expect_data_ready(&k, id, ino);
	}
	return 0;
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(data_ready, struct sock *sk)
{
	__u32 z = 0;
	struct pending *p = bpf_map_lookup_elem(&last_in, &z);
	__u64 now;

	if (!p || !p->id || p->woken)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - p->ts > PENDING_NS)
		return 0;
	/* The packet's own socket: its namespace and local port. */
	if (netns_of_sk(sk) != p->netns || sk->__sk_common.skc_num != p->k.dport)
		return 0;
	emit(&p->k, p->id, STAGE_DATA_READY, 0, p->netns, 0, 0, 0, 0, 0);
	p->woken = 1;
	p->ts = now;
	return 0;
}

/* The reader's wakeup, on the waker's side: sched_waking runs in
 * try_to_wake_up on the CPU of the softirq that made the data ready, while
 * sched_wakeup runs on the woken task's CPU (through an IPI when that is
 * another CPU), where this CPU's note of the packet is not. The first
 * waking within WAKE_NS of sk_data_ready is its reader's; a reader that
 * was not asleep is woken by nobody, and a later, unrelated waking is
 * not taken for it. */
#define WAKE_NS 20000

SEC("tp_btf/sched_waking")
int BPF_PROG(wakeup, struct task_struct *t)
{
	__u32 z = 0;
	struct pending *p = bpf_map_lookup_elem(&last_in, &z);

	if (!p || !p->id || !p->woken || bpf_ktime_get_ns() - p->ts > WAKE_NS)
		return 0;
	emit(&p->k, p->id, STAGE_WAKEUP, 0, p->netns, 0, 0, t->pid, 0, 0);
	p->id = 0;
	return 0;
}

/* A copy into a reader's buffer: the application's, or a packet
 * socket's (a capture such as tcpdump reads a clone of the packet, with
 * the same headers, which the headers find). */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(copy, struct sk_buff *skb, int len)
{
	struct sock *sk;
	__u16 family;
	struct key k = {};
	__u64 id;

	/* Every copy when every packet is traced (a capture's clone is
	 * another skb, found by its headers); only the sampled skbs' copies
	 * otherwise, so captures are traced only with every packet. */
	if (!in_flight(skb))
		return 0;
	sk = skb->sk;
	family = sk ? sk->__sk_common.skc_family : 0;
	if (family == AF_PACKET) {
		if (parse(l3_set(skb), &k))
			return 0;
		id = lookup(&k);
	} else {
		id = find(skb, l3_set(skb), &k);
	}
	if (id)
		emit(&k, id, family == AF_PACKET ? STAGE_CAPTURE : STAGE_COPY, 0, netns_of_sk(sk), 0, skb->len, (__u32)len, 0, 0);
	return 0;
}

/* A drop: every drop of the lab's traffic, sampled or not. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	const unsigned char *l3 = l3_set(skb);
	__u32 ino = netns_of(skb);
	struct key k = {};
	__u64 id = find(skb, l3, &k);

	if (!id) {
		if (!in_lab(ino) || parse(l3, &k))
			return 0;
		id = lookup(&k);
	}
	emit(&k, id, STAGE_DROP, 0, ino, ifindex_of(skb->dev), skb->len, (__u32)reason, (__u64)location, 0);
	if (id) {
		__u32 z = 0;
		struct pending *p = bpf_map_lookup_elem(&last_in, &z);

		/* A dropped packet wakes nobody, and its skb is free. */
		if (p && p->id == id)
			p->id = 0;
		forget(skb);
	}
	return 0;
}

/* A packet freed after use. Not TCP's (a segment's clone and the
 * original in the retransmit queue share their headers, and the original
 * is freed when acknowledged), nor a capture's clone. Only the skb's
 * entry goes: the headers' entry stays for clones still on their way (the
 * LRU map forgets old packets). */
SEC("tp_btf/consume_skb")
int BPF_PROG(consume, struct sk_buff *skb)
{
	struct sock *sk;
	struct key k = {};
	__u64 id;

	if (!in_flight(skb))
		return 0;
	sk = skb->sk;
	if (sk && sk->__sk_common.skc_family == AF_PACKET)
		return 0;
	id = find(skb, l3_set(skb), &k);
	if (!id || k.proto == IPPROTO_TCP)
		return 0;
	emit_skb(&k, id, STAGE_CONSUME, skb, netns_of(skb));
	forget(skb);
	return 0;
}

/* Referenced so that its BTF is emitted and bpf2go -type event finds it. */
const struct event *unused_event __attribute__((unused));
