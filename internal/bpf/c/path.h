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
	__u64 ptrs[PATH_SLOTS]; /* kernel pointers */
	__u64 cnt;
	__u64 pos;
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

static __always_inline struct mount *real_mount(struct vfsmount *vfsmnt)
{
	return (struct mount *)((char *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
}

#define NAME_DENTRY 0
#define NAME_KERNFS 1

/* emit_names writes the names of ps->ptrs[cnt-1..0] root-first into dst as
 * "/a/b/c" ("/" when there are none); returns the length. */
static __always_inline __u64 emit_names(char *dst, struct path_scratch *ps, int kind, __u32 *flags)
{
	ps->pos = 0;
	for (__u32 j = 0; j < PATH_SLOTS; j++) {
		__u64 cnt = VOLATILE_READ(ps->cnt);
		if (j >= cnt)
			break;
		__u64 p = ps->ptrs[(cnt - 1 - j) & (PATH_SLOTS - 1)];
		if (!p)
			continue;
		__u64 pos = VOLATILE_READ(ps->pos) & (PATH_CAP - 1);
		if (pos > PATH_CAP - NAME_LEN - 1) {
			*flags |= PATHF_TRUNC;
			break;
		}
		const char *name;
		if (kind == NAME_KERNFS)
			name = BPF_CORE_READ((struct kernfs_node *)p, name);
		else
			name = (const char *)BPF_CORE_READ((struct dentry *)p, d_name.name);
		dst[pos] = '/';
		long r = bpf_probe_read_kernel_str(dst + pos + 1, NAME_LEN, name);
		ps->pos = pos + (r > 1 ? r : 1);
	}
	if (VOLATILE_READ(ps->pos) == 0) {
		dst[0] = '/';
		ps->pos = 1;
	}
	/* Re-read from the map: one verifier state whatever path led here. */
	return VOLATILE_READ(ps->pos) & (PATH_CAP - 1);
}

/* write_path renders path {dentry, vfsmnt} relative to root into dst. */
static __always_inline __u64 write_path(char *dst, struct dentry *dentry, struct vfsmount *vfsmnt,
					struct path *root, __u32 *flags)
{
	struct path_scratch *ps = path_scratch();
	if (!ps || !dentry || !vfsmnt)
		return 0;
	struct dentry *root_d = BPF_CORE_READ(root, dentry);
	struct vfsmount *root_m = BPF_CORE_READ(root, mnt);
	struct mount *mnt = real_mount(vfsmnt);
	int i;

	/* Each iteration records a component or crosses a mount (slot 0). */
	ps->cnt = 0;
	for (i = 0; i < PATH_DEPTH + 8; i++) {
		ps->ptrs[i & (PATH_SLOTS - 1)] = 0;
		if (dentry == root_d && vfsmnt == root_m)
			break;
		struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
		if (dentry == mnt_root || dentry == parent) {
			if (dentry != mnt_root) {
				/* A pseudo file (memfd, pipe, ...): its own name. */
				if (i == 0) {
					ps->ptrs[0] = (__u64)dentry;
					i = 1;
				}
				break;
			}
			struct mount *mp = BPF_CORE_READ(mnt, mnt_parent);
			if (mp == mnt) {
				/* The global root, or a detached mount. A file that is
				 * itself the root of a detached mount (runc's read-only
				 * bind mount of its own binary, lazily unmounted) would
				 * render as "/": name it by its path within its file
				 * system instead (/usr/sbin/runc). */
				if (i == 0 && dentry != parent) {
					ps->ptrs[0] = (__u64)dentry;
					dentry = parent;
					continue;
				}
				break; /* global root */
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mp;
			vfsmnt = (struct vfsmount *)((char *)mp + bpf_core_field_offset(struct mount, mnt));
			continue;
		}
		ps->ptrs[i & (PATH_SLOTS - 1)] = (__u64)dentry;
		dentry = parent;
	}
	if (i >= PATH_DEPTH + 8)
		*flags |= PATHF_TRUNC;
	ps->cnt = i;
	return emit_names(dst, ps, NAME_DENTRY, flags);
}

static __always_inline __u64 write_file_path(char *dst, struct file *f, struct path *root, __u32 *flags)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *m = BPF_CORE_READ(f, f_path.mnt);
	return write_path(dst, d, m, root, flags);
}

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(((struct kernfs_node___old *)0)->parent))
		return BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
	return BPF_CORE_READ(kn, __parent);
}

/* write_kernfs_path renders a cgroup's kernfs node as "/a/b" ("/" for the
 * hierarchy root). */
static __always_inline __u64 write_kernfs_path(char *dst, struct kernfs_node *kn, __u32 *flags)
{
	struct path_scratch *ps = path_scratch();
	if (!ps || !kn)
		return 0;
	int i;
	for (i = 0; i < PATH_DEPTH; i++) {
		struct kernfs_node *parent = kn_parent(kn);
		if (!parent)
			break;
		ps->ptrs[i & (PATH_SLOTS - 1)] = (__u64)kn;
		kn = parent;
	}
	if (i >= PATH_DEPTH)
		*flags |= PATHF_TRUNC;
	ps->cnt = i;
	return emit_names(dst, ps, NAME_KERNFS, flags);
}

/* task_attr_cgroup returns the cgroup task_cgroup_id() attributes by. */
static __always_inline struct cgroup *task_attr_cgroup(struct task_struct *task, struct vigil_config *cfg)
{
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	if (cfg && cfg->cgroup_subsys >= 0 && cfg->cgroup_subsys < 12) {
		struct cgroup_subsys_state *css = NULL;
		__u32 idx = (__u32)cfg->cgroup_subsys & 15;
		bpf_core_read(&css, sizeof(css), &cset->subsys[idx]);
		if (!css)
			return NULL;
		return BPF_CORE_READ(css, cgroup);
	}
	return BPF_CORE_READ(cset, dfl_cgrp);
}

/* fd_file returns task's open file for fd, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	if (fd < 0)
		return NULL;
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned long)fd >= max)
		return NULL;
	struct file **arr = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_core_read(&f, sizeof(f), &arr[fd]);
	return f;
}

#endif /* VIGIL_PATH_H */
