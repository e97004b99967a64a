/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared by every vigil BPF object: the wire format of records sent to user
 * space, the one ring buffer they travel through, and drop accounting.
 *
 * Every BPF object (process.bpf.c, file.bpf.c, net.bpf.c) includes this file
 * and declares the same `events`, `drops` and `vigil_cfg` maps; user space loads
 * the first object, then hands its maps to the others (MapReplacements), so
 * there is one ring and one drop counter for the whole sensor.
 *
 * The Go mirror of these structs lives in internal/source/ebpf/wire.go and
 * must be kept byte-for-byte identical (the decoder tests check sizes).
 */
#ifndef VIGIL_COMMON_H
#define VIGIL_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/* Record types. Values are part of the wire format: never renumber. */
enum vigil_rec_type {
	REC_EXEC = 1,
	REC_FORK = 2,
	REC_EXIT = 3,
	REC_CONNECT = 10,
	REC_BIND = 11,
	REC_LISTEN = 12,
	REC_ACCEPT = 13,
	REC_DNS = 14,
	REC_OPEN = 20,
	REC_CHMOD = 21,
	REC_UNLINK = 22,
	REC_RENAME = 23,
	REC_MEMFD = 24,
	REC_PTRACE = 25,
	REC_MODULE = 26,
	REC_SETNS = 27,
	REC_UNSHARE = 28,
	REC_MOUNT = 29,
};

#define TASK_COMM_LEN 16

/* Header of every record. For records produced outside process context
 * (e.g. a TCP handshake completing in softirq), the process fields describe
 * the process remembered for that socket, not `current`. */
struct rec_hdr {
	__u32 type;       /* enum vigil_rec_type */
	__u32 size;       /* total record size in bytes, header included */
	__u64 ts;         /* bpf_ktime_get_boot_ns() */
	__u32 pid;        /* tgid */
	__u32 tid;        /* thread id */
	__u64 start_time; /* group leader's start_boottime (ns since boot) */
	__u32 ppid;       /* real_parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 mntns;
	__u32 pidns;
	__u32 netns;
	__u32 _pad;
	__u64 cgroup_id;  /* kernfs node id of the cgroup the sensor attributes by */
	char comm[TASK_COMM_LEN];
};

/* One ring for every record. 4 MiB by default; user space resizes it
 * before load (MaxEntries). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

/* Per-CPU drop counters. Index DROP_RINGBUF counts failed ring
 * reservations/outputs; user space sums over CPUs. Index SEEN counts every
 * record the kernel tried to send, so "seen - delivered" is checkable. */
enum { DROP_RINGBUF = 0, SEEN = 1, DROP_SLOTS = 2 };
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* Runtime configuration written by user space before attaching. */
struct vigil_config {
	__u32 self_tgid;       /* the sensor's own pid: its events are dropped */
	__s32 cgroup_subsys;   /* v1 controller index used for attribution; -1 = cgroup2 (dfl_cgrp) */
	__u32 wakeup_bytes;    /* wake the reader only once this much data is pending */
	__u32 argv_max;        /* argv bytes captured per exec (<= ARGV_MAX) */
	__u32 top_filter;      /* 1: every sensitive prefix has a whole first component, listed
	                        * in file.bpf.c's sensitive_top (read-only opens elsewhere are
	                        * dropped before their path is rendered) */
	__u32 repeat_ms;       /* network repeat window: a process's TCP/UDP connect to the same
	                        * destination, or accept from the same peer on the same port,
	                        * within this many ms of the last one reported is counted, not
	                        * sent (see net.bpf.c); 0 reports every one */
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_config);
} vigil_cfg SEC(".maps");

static __always_inline struct vigil_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&vigil_cfg, &zero);
}

static __always_inline void count_slot(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&drops, &slot);
	if (v)
		*v += 1;
}

/* Batched wake-ups: waking the reader per record costs ~4x in this kind of
 * VM. Wake only when enough data is pending; the reader also polls with a
 * short deadline so a quiet system still delivers promptly. */
static __always_inline __u64 wakeup_flags(void)
{
	struct vigil_config *cfg = get_config();
	__u64 want = cfg && cfg->wakeup_bytes ? cfg->wakeup_bytes : 256 * 1024;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= want)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* submit copies a fully built record (from a per-CPU scratch buffer) into
 * the ring. size must be verifier-bounded by the caller. */
static __always_inline int submit(void *rec, __u64 size)
{
	count_slot(SEEN);
	if (bpf_ringbuf_output(&events, rec, size, wakeup_flags()) != 0) {
		count_slot(DROP_RINGBUF);
		return -1;
	}
	return 0;
}

/* reserve/commit for fixed-size records built in place. */
static __always_inline void *reserve(__u64 size)
{
	count_slot(SEEN);
	void *p = bpf_ringbuf_reserve(&events, size, 0);
	if (!p)
		count_slot(DROP_RINGBUF);
	return p;
}

static __always_inline void commit(void *p)
{
	bpf_ringbuf_submit(p, wakeup_flags());
}

/* Header fillers. fill_hdr takes a BTF task pointer (a tp_btf argument or
 * bpf_get_current_task_btf()) and reads it with direct loads: the verifier
 * turns each into one guarded memory load, where a CO-RE helper read costs a
 * helper call per field (this header was ~20 of them, most of the fork and
 * exit programs' time). fill_hdr_untrusted keeps the helper reads for the
 * cgroup programs, which only have bpf_get_current_task()'s untyped pointer.
 * Both fill the same fields. */

/* css_of picks cset->subsys[idx] with constant indexes: a direct load's
 * offset must be known to the verifier. */
static __always_inline struct cgroup_subsys_state *css_of(struct css_set *cset, __u32 idx)
{
	switch (idx) {
	case 0: return cset->subsys[0];
	case 1: return cset->subsys[1];
	case 2: return cset->subsys[2];
	case 3: return cset->subsys[3];
	case 4: return cset->subsys[4];
	case 5: return cset->subsys[5];
	case 6: return cset->subsys[6];
	case 7: return cset->subsys[7];
	case 8: return cset->subsys[8];
	case 9: return cset->subsys[9];
	case 10: return cset->subsys[10];
	case 11: return cset->subsys[11];
	}
	return NULL;
}

/* task_attr_cgroup returns the cgroup vigil attributes by: the configured
 * cgroup v1 controller's cgroup (hybrid hosts, where the v2 id is the root
 * for every process) or the default (v2) hierarchy. task is a BTF pointer. */
static __always_inline struct cgroup *task_attr_cgroup(struct task_struct *task, struct vigil_config *cfg)
{
	struct css_set *cset = task->cgroups;
	if (cfg && cfg->cgroup_subsys >= 0 && cfg->cgroup_subsys < 12) {
		struct cgroup_subsys_state *css = css_of(cset, (__u32)cfg->cgroup_subsys);
		if (!css)
			return NULL;
		return css->cgroup;
	}
	return cset->dfl_cgrp;
}

/* task_pidns_btf: the inode of the task's own pid namespace
 * (pid->numbers[pid->level].ns), direct loads for the usual levels. */
static __always_inline __u32 task_pidns_btf(struct task_struct *task)
{
	struct pid *pid = task->thread_pid;
	unsigned int level = pid->level;
	struct pid_namespace *ns;
	if (level == 0) {
		ns = pid->numbers[0].ns;
	} else if (level == 1) {
		ns = pid->numbers[1].ns;
	} else {
		struct upid up = {};
		bpf_core_read(&up, sizeof(up), &pid->numbers[level & 31]);
		return BPF_CORE_READ(up.ns, ns.inum);
	}
	return ns->ns.inum;
}

/* fill_hdr describes `task`, a BTF pointer. */
static __always_inline void fill_hdr(struct rec_hdr *h, __u32 type, __u32 size, struct task_struct *task)
{
	struct vigil_config *cfg = get_config();
	h->type = type;
	h->size = size;
	h->ts = bpf_ktime_get_boot_ns();
	h->pid = task->tgid;
	h->tid = task->pid;
	h->start_time = task->group_leader->start_boottime;
	h->ppid = task->real_parent->tgid;
	const struct cred *cred = task->cred;
	h->uid = cred->uid.val;
	h->gid = cred->gid.val;
	h->euid = cred->euid.val;
	struct nsproxy *nsp = task->nsproxy;
	h->mntns = nsp->mnt_ns->ns.inum;
	h->netns = nsp->net_ns->ns.inum;
	h->pidns = task_pidns_btf(task);
	h->_pad = 0;
	struct cgroup *cg = task_attr_cgroup(task, cfg);
	h->cgroup_id = cg ? cg->kn->id : 0;
	/* comm is NUL-terminated and zero-padded by the kernel: two loads. */
	const __u64 *comm = (const __u64 *)task->comm;
	__u64 *dst = (__u64 *)h->comm;
	dst[0] = comm[0];
	dst[1] = comm[1];
}

/* task_cgroup_id_untrusted is task_attr_cgroup(...)->kn->id through helper
 * reads. */
static __always_inline __u64 task_cgroup_id_untrusted(struct task_struct *task, struct vigil_config *cfg)
{
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup *cg = NULL;
	if (cfg && cfg->cgroup_subsys >= 0 && cfg->cgroup_subsys < 12) {
		struct cgroup_subsys_state *css = NULL;
		__u32 idx = (__u32)cfg->cgroup_subsys & 15;
		bpf_core_read(&css, sizeof(css), &cset->subsys[idx]);
		if (css)
			cg = BPF_CORE_READ(css, cgroup);
	} else {
		cg = BPF_CORE_READ(cset, dfl_cgrp);
	}
	if (!cg)
		return 0;
	return BPF_CORE_READ(cg, kn, id);
}

static __always_inline __u32 task_pidns_untrusted(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid up = {};
	bpf_core_read(&up, sizeof(up), &pid->numbers[level & 31]);
	return BPF_CORE_READ(up.ns, ns.inum);
}

/* fill_hdr_untrusted describes `task`, an untyped pointer
 * (bpf_get_current_task()). */
static __always_inline void fill_hdr_untrusted(struct rec_hdr *h, __u32 type, __u32 size, struct task_struct *task)
{
	struct vigil_config *cfg = get_config();
	h->type = type;
	h->size = size;
	h->ts = bpf_ktime_get_boot_ns();
	h->pid = BPF_CORE_READ(task, tgid);
	h->tid = BPF_CORE_READ(task, pid);
	h->start_time = BPF_CORE_READ(task, group_leader, start_boottime);
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = BPF_CORE_READ(task, cred, uid.val);
	h->gid = BPF_CORE_READ(task, cred, gid.val);
	h->euid = BPF_CORE_READ(task, cred, euid.val);
	h->mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	h->netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	h->pidns = task_pidns_untrusted(task);
	h->_pad = 0;
	h->cgroup_id = task_cgroup_id_untrusted(task, cfg);
	BPF_CORE_READ_STR_INTO(&h->comm, task, comm);
}

/* is_self reports whether the current task belongs to the sensor. */
static __always_inline int is_self(void)
{
	struct vigil_config *cfg = get_config();
	return cfg && cfg->self_tgid && (bpf_get_current_pid_tgid() >> 32) == cfg->self_tgid;
}

#endif /* VIGIL_COMMON_H */
