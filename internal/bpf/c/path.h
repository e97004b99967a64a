/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Bounded path builders shared by process.bpf.c and file.bpf.c.
 *
 * write_path() renders a (dentry, vfsmount) pair the way d_path() would, as
 * seen from a root (normally the task's fs->root): it walks d_parent up to
 * the mount root, crosses to the parent mount at mountpoints, and stops at
 * the given root or the global root. Components are collected first (at
 * most PATH_DEPTH + 8 steps; a deeper path keeps its leaf end and is
 * flagged truncated) and then written root-first, so the buffer holds a
 * normal absolute path ("/usr/bin/true") with no NUL.
 *
 * write_kernfs_path() does the same for a cgroup's kernfs node.
 *
 * Every write lands in a per-CPU map value; callers pass a destination
 * whose offset the verifier can bound and reserve PATH_CAP + NAME_LEN bytes
 * after it.
 */
#ifndef VIGIL_PATH_H
#define VIGIL_PATH_H

#include "common.h"

#define PATH_DEPTH 32   /* walk steps (components + mount crossings) = PATH_DEPTH + 8 */
#define NAME_LEN 256    /* NAME_MAX + NUL */
#define PATH_CAP 4096   /* bytes of one rendered path */

/* Result flags of the path builders. */
#define PATHF_TRUNC 1 /* path deeper or longer than the caps: leading part missing */

/* Older kernels (< 6.15) name kernfs_node's parent pointer `parent`. */
struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

/* Pointers collected leaf-first (0 = slot skipped, e.g. a mount crossing).
 * cnt and pos live here rather than in registers on purpose: values read
 * back from a map are unknown to the verifier, so every loop iteration
 * converges to one state instead of forking per path taken. */
#define PATH_SLOTS 64
struct path_scratch {
	__u64 ptrs[PATH_SLOTS]; /* name pointers (const char *) */
	__u64 cnt;
	__u64 pos;
	__u64 d; /* write_path: the dentry and struct mount being walked */
	__u64 m;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_ptrs SEC(".maps");

static __always_inline struct path_scratch *path_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&path_ptrs, &zero);
}

/* clamp returns min(v, max) in a form the verifier can follow (the
 * compiler otherwise compares a zero-extended copy and uses the original). */
static __always_inline __u64 clamp(__u64 v, __u64 max)
{
	asm volatile("if %[v] <= %[m] goto +1\n\t%[v] = %[m]\n" : [v] "+r"(v) : [m] "r"(max));
	return v;
}

/* READ_ONCE-style load: the compiler must reload from memory (so the
 * verifier sees an unknown value) instead of forwarding a stored register. */
#define VOLATILE_READ(x) (*(volatile typeof(x) *)&(x))

/* bpf_rdonly_cast (a kfunc, Linux >= 6.2, that the verifier inlines to
 * nothing) turns a pointer read with a helper into a read-only BTF pointer,
 * so the path walks below can use direct loads instead of one helper call
 * per field. It is declared weak: on older kernels it resolves to 0,
 * KREAD falls back to BPF_CORE_READ and the verifier drops the unused
 * branch (its poisoned call is never reached). */
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id) __ksym __weak;
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) (!!(sym))
#endif
#define RDONLY(type, p) ((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))

/* KREAD(type, p, a, b, ...) reads ((type *)p)->a->b...: direct loads where
 * the kernel has bpf_rdonly_cast, helper reads elsewhere. */
#define KREAD(type, p, ...)                                                       \
	(bpf_ksym_exists(bpf_rdonly_cast) ? RDONLY(type, p)->___arrow(__VA_ARGS__) \
					  : BPF_CORE_READ((type *)(p), __VA_ARGS__))

/* emit_names writes the names ps->ptrs[cnt-1..0] point to root-first into
 * dst as "/a/b/c" ("/" when there are none); returns the length. */
static __always_inline __u64 emit_names(char *dst, struct path_scratch *ps, __u32 *flags)
{
	ps->pos = 0;
	for (__u32 j = 0; j < PATH_SLOTS; j++) {
		__u64 cnt = VOLATILE_READ(ps->cnt);
		if (j >= cnt)
			break;
		__u64 name = ps->ptrs[(cnt - 1 - j) & (PATH_SLOTS - 1)];
		if (!name)
			continue;
		__u64 pos = VOLATILE_READ(ps->pos) & (PATH_CAP - 1);
		if (pos > PATH_CAP - NAME_LEN - 1) {
			*flags |= PATHF_TRUNC;
			break;
		}
		dst[pos] = '/';
		long r = bpf_probe_read_kernel_str(dst + pos + 1, NAME_LEN, (const void *)name);
		ps->pos = pos + (r > 1 ? r : 1);
	}
	if (VOLATILE_READ(ps->pos) == 0) {
		dst[0] = '/';
		ps->pos = 1;
	}
	/* Re-read from the map: one verifier state whatever path led here. */
	return VOLATILE_READ(ps->pos) & (PATH_CAP - 1);
}

/* walk_path collects the name pointers of path {dentry, vfsmnt} relative to
 * root, leaf-first, into ps->ptrs[0..ps->cnt) (0 = a mount crossing);
 * write_path then renders them root-first into dst with emit_names. Each
 * field is read with KREAD. The walk's position (ps->d,
 * ps->m) is kept in the map, not in registers, for the reason given at
 * struct path_scratch: typed pointers kept in registers across iterations
 * multiply the verifier's states (over its 1M-instruction limit). */
static __always_inline void walk_path(struct path_scratch *ps, struct dentry *dentry, struct vfsmount *vfsmnt,
				      struct path *root, __u32 *flags)
{
	__u64 root_d = (__u64)root->dentry;
	__u64 root_m = (__u64)root->mnt;
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
	int i;

	ps->d = (__u64)dentry;
	ps->m = (__u64)vfsmnt - mnt_off; /* the struct mount holding vfsmnt */
	/* Each iteration records a component or crosses a mount (slot 0). */
	ps->cnt = 0;
	for (i = 0; i < PATH_DEPTH + 8; i++) {
		ps->ptrs[i & (PATH_SLOTS - 1)] = 0;
		__u64 d = VOLATILE_READ(ps->d);
		__u64 m = VOLATILE_READ(ps->m);
		if (d == root_d && m + mnt_off == root_m)
			break;
		__u64 mnt_root = (__u64)KREAD(struct mount, m, mnt.mnt_root);
		__u64 parent = (__u64)KREAD(struct dentry, d, d_parent);
		if (d == mnt_root || d == parent) {
			if (d != mnt_root) {
				/* A pseudo file (memfd, pipe, ...): its own name. */
				if (i == 0) {
					ps->ptrs[0] = (__u64)KREAD(struct dentry, d, d_name.name);
					i = 1;
				}
				break;
			}
			__u64 mp = (__u64)KREAD(struct mount, m, mnt_parent);
			if (mp == m) {
				/* The global root, or a detached mount. A file that is
				 * itself the root of a detached mount (runc's read-only
				 * bind mount of its own binary, lazily unmounted) would
				 * render as "/": name it by its path within its file
				 * system instead (/usr/sbin/runc). */
				if (i == 0 && d != parent) {
					ps->ptrs[0] = (__u64)KREAD(struct dentry, d, d_name.name);
					ps->d = parent;
					continue;
				}
				break; /* global root */
			}
			ps->d = (__u64)KREAD(struct mount, m, mnt_mountpoint);
			ps->m = mp;
			continue;
		}
		ps->ptrs[i & (PATH_SLOTS - 1)] = (__u64)KREAD(struct dentry, d, d_name.name);
		ps->d = parent;
	}
	if (i >= PATH_DEPTH + 8)
		*flags |= PATHF_TRUNC;
	ps->cnt = i;
}

static __always_inline __u64 write_path(char *dst, struct dentry *dentry, struct vfsmount *vfsmnt,
					struct path *root, __u32 *flags)
{
	struct path_scratch *ps = path_scratch();
	if (!ps || !dentry || !vfsmnt)
		return 0;
	walk_path(ps, dentry, vfsmnt, root, flags);
	return emit_names(dst, ps, flags);
}

static __always_inline __u64 write_file_path(char *dst, struct file *f, struct path *root, __u32 *flags)
{
	return write_path(dst, KREAD(struct file, f, f_path.dentry), KREAD(struct file, f, f_path.mnt), root, flags);
}

static __always_inline __u64 kn_parent(__u64 kn)
{
	/* The old layout through a helper only: a direct load would be
	 * hoisted above the existence check and fail to relocate on new
	 * kernels. */
	if (bpf_core_field_exists(((struct kernfs_node___old *)0)->parent))
		return (__u64)BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
	return (__u64)KREAD(struct kernfs_node, kn, __parent);
}

/* write_kernfs_path renders a cgroup's kernfs node as "/a/b" ("/" for the
 * hierarchy root). */
static __always_inline __u64 write_kernfs_path(char *dst, struct kernfs_node *kn, __u32 *flags)
{
	struct path_scratch *ps = path_scratch();
	if (!ps || !kn)
		return 0;
	ps->d = (__u64)kn;
	int i;
	for (i = 0; i < PATH_DEPTH; i++) {
		__u64 k = VOLATILE_READ(ps->d);
		__u64 parent = kn_parent(k);
		if (!parent)
			break;
		ps->ptrs[i & (PATH_SLOTS - 1)] = (__u64)KREAD(struct kernfs_node, k, name);
		ps->d = parent;
	}
	if (i >= PATH_DEPTH)
		*flags |= PATHF_TRUNC;
	ps->cnt = i;
	return emit_names(dst, ps, flags);
}

/* fd_file returns task's (a BTF pointer) open file for fd, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	if (fd < 0)
		return NULL;
	struct fdtable *fdt = task->files->fdt;
	unsigned int max = fdt->max_fds;
	if ((unsigned long)fd >= max)
		return NULL;
	struct file **arr = fdt->fd;
	struct file *f = NULL;
	bpf_core_read(&f, sizeof(f), &arr[fd]);
	return f;
}

#endif /* VIGIL_PATH_H */
