/* The kernel types the packet-path programs read, only the fields they
 * read. preserve_access_index makes every access a CO-RE relocation:
 * offsets come from the running kernel's BTF at load time, so field order
 * and the rest of each struct do not matter here, and the objects need no
 * vmlinux.h. */
#pragma once

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common { unsigned int inum; };
struct net { struct ns_common ns; };
typedef struct { struct net *net; } possible_net_t;

struct net_device {
	int ifindex;
	possible_net_t nd_net;
};

struct sock_common {
	possible_net_t skc_net;
	__u16 skc_num; /* the local port, host order */
	unsigned short skc_family;
};
struct sock { struct sock_common __sk_common; };

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	__be16 protocol;
	__u16 network_header;
	unsigned int napi_id;
	unsigned char *head;
	unsigned char *data;
};

struct task_struct { int pid; };

struct nf_hook_state {
	__u8 hook;
	struct net *net;
};

struct bpf_nf_ctx {
	const struct nf_hook_state *state;
	struct sk_buff *skb;
};

#pragma clang attribute pop

/* A tc program's context; bpf_cast_to_kern_ctx gives its sk_buff. */
struct __sk_buff;

/* Passed through only: the names of its values come from the kernel's BTF
 * in Go, since they change between kernels. */
enum skb_drop_reason { SKB_DROP_REASON_NOT_SPECIFIED = 2 };

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_ARRAY_OF_MAPS 12
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_ANY 0
#define BPF_RB_NO_WAKEUP 1
