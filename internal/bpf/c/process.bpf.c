// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Process lifecycle: exec (with exe path, argv, cwd, cgroup path and drift
 * flags), fork (new thread groups only) and exit (whole thread group gone).
 * Everything is read from the kernel at the event, so short-lived
 * processes are complete. The wire layouts below are mirrored in
 * internal/source/ebpf/wire.go. */
#include "common.h"
#include "path.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ARGV_MAX 4096
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define TMPFS_MAGIC 0x01021994
#define HUGETLBFS_MAGIC 0x958458f6
#define SIGNAL_GROUP_EXIT 0x00000004

/* exec_rec.flags */
#define EXEC_UPPER 1        /* exe on an overlayfs upper layer */
#define EXEC_MEMFD 2        /* exe is a memfd */
#define EXEC_DELETED 4      /* exe had no links left */
#define EXEC_ARGV_TRUNC 8   /* argv longer than argv_max (or unreadable) */
#define EXEC_EXE_TRUNC 16
#define EXEC_CWD_TRUNC 32
#define EXEC_CGROUP_TRUNC 64
#define EXEC_STDIN_INET 128  /* fd 0 is a TCP/UDP (IPv4/IPv6) socket */
#define EXEC_STDOUT_INET 256 /* fd 1 or 2 is a TCP/UDP (IPv4/IPv6) socket */

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define AF_INET 2
#define AF_INET6 10

#define EXEC_DATA 24576
#define SECTION_MASK 16383 /* every section starts below 16 KiB */

/* Variable-length: data holds exe, argv (NUL-separated), cwd and cgroup
 * back to back, with the lengths below; size = 120 + sum of lengths. */
struct exec_rec {
	struct rec_hdr hdr;
	__u64 exe_ino;
	__u32 exe_dev;    /* kernel dev_t (major << 20 | minor) */
	__u32 flags;
	__u16 exe_len;
	__u16 argv_len;
	__u16 cwd_len;
	__u16 cgroup_len;
	__u32 argv_full;  /* argv bytes the process really has */
	__u32 _pad;
	char data[EXEC_DATA];
};

struct fork_rec {
	struct rec_hdr hdr; /* describes the child */
	__u32 parent_pid;
	__u32 _pad;
	__u64 parent_start_time;
};

struct exit_rec {
	struct rec_hdr hdr;
	__u32 exit_code; /* wait status: (code << 8) | 0x80 core | signal */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_rec);
} exec_scratch SEC(".maps");

/* Go reads these to learn the layouts (bpf2go emits the types). */
const struct exec_rec *unused_exec __attribute__((unused));
const struct fork_rec *unused_fork __attribute__((unused));
const struct exit_rec *unused_exit __attribute__((unused));

static __always_inline int name_is_memfd(const unsigned char *name)
{
	char buf[6] = {};
	bpf_probe_read_kernel(buf, sizeof(buf), name);
	return buf[0] == 'm' && buf[1] == 'e' && buf[2] == 'm' && buf[3] == 'f' && buf[4] == 'd' &&
	       buf[5] == ':';
}

/* fd_is_inet reports whether f is an IPv4/IPv6 socket: what a reverse
 * shell's stdio is (unix sockets, e.g. journald's stdout stream, do not
 * count). */
static __always_inline int fd_is_inet(struct file *f_in)
{
	if (!f_in)
		return 0;
	umode_t mode = KREAD(struct file, f_in, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return 0;
	void *sock = KREAD(struct file, f_in, private_data);
	unsigned short family = KREAD(struct socket, sock, sk, __sk_common.skc_family);
	return family == AF_INET || family == AF_INET6;
}

static __always_inline __u32 stdio_flags(struct task_struct *task)
{
	__u32 flags = 0;
	if (fd_is_inet(fd_file(task, 0)))
		flags |= EXEC_STDIN_INET;
	if (fd_is_inet(fd_file(task, 1)) || fd_is_inet(fd_file(task, 2)))
		flags |= EXEC_STDOUT_INET;
	return flags;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(vigil_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct exec_rec *r = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!r)
		return 0;
	struct vigil_config *cfg = get_config();
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 pf = 0;

	/* Executable: identity and drift flags. */
	/* bprm and task are BTF pointers: direct loads, no helper calls. */
	struct file *file = bprm->file;
	struct inode *inode = file->f_inode;
	struct super_block *sb = inode->i_sb;
	unsigned long magic = sb->s_magic;
	unsigned int nlink = inode->__i_nlink;
	__u32 flags = 0;
	r->exe_ino = inode->i_ino;
	r->exe_dev = sb->s_dev;
	if (magic == OVERLAYFS_SUPER_MAGIC) {
		/* struct ovl_inode { ...; struct inode vfs_inode; struct dentry *__upperdentry; } */
		struct dentry *upper = NULL;
		bpf_probe_read_kernel(&upper, sizeof(upper), (char *)inode + bpf_core_type_size(struct inode));
		if (upper)
			flags |= EXEC_UPPER;
	}
	if (nlink == 0) {
		const unsigned char *name = file->f_path.dentry->d_name.name;
		if ((magic == TMPFS_MAGIC || magic == HUGETLBFS_MAGIC) && name_is_memfd(name))
			flags |= EXEC_MEMFD;
		else
			flags |= EXEC_DELETED;
	}

	struct fs_struct *fs = task->fs;
	struct path root;
	root.dentry = fs->root.dentry;
	root.mnt = fs->root.mnt;

	/* exe */
	__u64 off = 0;
	__u64 n = write_file_path(r->data, file, &root, &pf);
	if (pf)
		flags |= EXEC_EXE_TRUNC;
	n = clamp(n, PATH_CAP);
	r->exe_len = n;
	off = VOLATILE_READ(r->exe_len);

	/* argv */
	struct mm_struct *mm = task->mm;
	unsigned long as = mm->arg_start;
	unsigned long ae = mm->arg_end;
	__u64 full = ae > as ? ae - as : 0;
	__u64 max = cfg && cfg->argv_max ? cfg->argv_max : ARGV_MAX;
	if (max > ARGV_MAX)
		max = ARGV_MAX;
	__u64 len = full;
	if (len > max) {
		len = max;
		flags |= EXEC_ARGV_TRUNC;
	}
	len = clamp(len, ARGV_MAX);
	r->argv_full = full > 0xffffffff ? 0xffffffff : full;
	char *dst = r->data + clamp(off, SECTION_MASK);
	if (len > 0 && bpf_probe_read_user(dst, len, (void *)as) != 0) {
		len = 0;
		flags |= EXEC_ARGV_TRUNC;
	}
	r->argv_len = len;
	off += VOLATILE_READ(r->argv_len);

	/* cwd */
	pf = 0;
	dst = r->data + clamp(off, SECTION_MASK);
	struct dentry *pwd_d = fs->pwd.dentry;
	struct vfsmount *pwd_m = fs->pwd.mnt;
	n = write_path(dst, pwd_d, pwd_m, &root, &pf);
	if (pf)
		flags |= EXEC_CWD_TRUNC;
	n = clamp(n, PATH_CAP);
	r->cwd_len = n;
	off += VOLATILE_READ(r->cwd_len);

	/* cgroup path of the attributed cgroup */
	pf = 0;
	dst = r->data + clamp(off, SECTION_MASK);
	struct cgroup *cg = task_attr_cgroup(task, cfg);
	n = 0;
	if (cg)
		n = write_kernfs_path(dst, cg->kn, &pf);
	if (pf)
		flags |= EXEC_CGROUP_TRUNC;
	n = clamp(n, PATH_CAP);
	r->cgroup_len = n;
	off += VOLATILE_READ(r->cgroup_len);

	r->flags = flags | stdio_flags(task);
	r->_pad = 0;
	__u64 size = clamp(offsetof(struct exec_rec, data) + (__u64)off, sizeof(*r));
	fill_hdr(&r->hdr, REC_EXEC, size, task);
	submit(r, size);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(vigil_fork, struct task_struct *parent, struct task_struct *child)
{
	/* Threads share the creator's tgid: only new thread groups count. */
	if (child->pid != child->tgid)
		return 0;
	struct fork_rec *r = reserve(sizeof(*r));
	if (!r)
		return 0;
	fill_hdr(&r->hdr, REC_FORK, sizeof(*r), child);
	r->parent_pid = parent->tgid;
	r->_pad = 0;
	r->parent_start_time = parent->group_leader->start_boottime;
	commit(r);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(vigil_exit, struct task_struct *p)
{
	struct signal_struct *sig = p->signal;
	/* do_exit() decrements signal->live before this tracepoint: zero
	 * means this was the last thread of the group. */
	if (sig->live.counter != 0)
		return 0;
	__u32 code;
	if (sig->flags & SIGNAL_GROUP_EXIT)
		code = sig->group_exit_code;
	else
		code = p->exit_code;
	struct exit_rec *r = reserve(sizeof(*r));
	if (!r)
		return 0;
	fill_hdr(&r->hdr, REC_EXIT, sizeof(*r), p);
	r->exit_code = code;
	r->_pad = 0;
	commit(r);
	return 0;
}
