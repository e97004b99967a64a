// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* File and privilege events from syscall tracepoints (the only hooks that
 * see them on kernels without kprobes/fentry/LSM).
 *
 * Each sys_enter_* program filters cheaply and stashes the syscall's
 * arguments, normalised, in a per-thread hash; one sys_exit program
 * (attached to every matching sys_exit_* tracepoint) reads the strings,
 * resolves relative paths against the cwd or the dirfd, applies the
 * open/sensitive-prefix filter and emits one record carrying the result.
 * The sensor's own threads are skipped. Layout mirrored in
 * internal/source/ebpf/wire.go. */
#include "common.h"
#include "path.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AT_FDCWD -100
#define O_ACCMODE 00000003
#define O_WRONLY 00000001
#define O_RDWR 00000002
#define O_CREAT 00000100
#define O_TRUNC 00001000
#define O_PATH 010000000
#define O_TMPFILE 020000000
#define CLONE_NEW_MASK (0x00000080 | 0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x02000000)

/* Syscall identifiers carried in file_rec.sc (wire format: never renumber). */
enum vigil_sc {
	SC_OPEN = 1,
	SC_CREAT,
	SC_OPENAT,
	SC_OPENAT2,
	SC_CHMOD,
	SC_FCHMOD,
	SC_FCHMODAT,
	SC_FCHMODAT2,
	SC_UNLINK,
	SC_UNLINKAT,
	SC_RENAME,
	SC_RENAMEAT,
	SC_RENAMEAT2,
	SC_MEMFD_CREATE,
	SC_PTRACE,
	SC_INIT_MODULE,
	SC_FINIT_MODULE,
	SC_SETNS,
	SC_UNSHARE,
	SC_MOUNT,
};

/* How each of the three strings is obtained. */
enum { STR_NONE = 0, STR_USER = 1, STR_PATH = 2, STR_FD = 3, STR_KERN = 4 };

#define NSFS_MAGIC 0x6e736673

/* file_rec.rflags */
#define FREC_SENSITIVE 1
#define FREC_TRUNC1 2
#define FREC_TRUNC2 4
#define FREC_TRUNC3 8

struct pending {
	__u16 sc;
	__u16 type;
	__u8 k1, k2, k3, _pad;
	__s64 dfd1;
	__s64 dfd2;
	__u64 p1, p2, p3;
	__u64 flags;
	__u64 arg;
	__u32 target_pid;
	__u32 _pad2;
};

#define STR_CAP 4096
#define FILE_DATA 24832
#define SECTION_MASK 16383

/* Variable-length: s1, s2, s3 back to back in data (no NULs).
 * open/chmod/unlink: s1 = path. rename: s1 = old, s2 = new. memfd: s1 = name.
 * finit_module: s1 = module file, s2 = params; init_module: s2 = params.
 * setns: s1 = namespace type ("net") and target_pid = its inode number when
 * the fd is a namespace file, else s1 = the fd's path. mount: s1 = source, s2 = target, s3 = fstype. */
struct file_rec {
	struct rec_hdr hdr;
	__s64 result;
	__u64 flags;      /* open / renameat2 / memfd / unshare / mount / finit_module flags */
	__u64 arg;        /* mode (open, chmod), ptrace request, setns nstype */
	__u32 target_pid; /* ptrace; setns: namespace inode number */
	__u16 sc;         /* enum vigil_sc */
	__u16 rflags;
	__u16 len1, len2, len3;
	__u16 _pad;
	char data[FILE_DATA];
};

struct lpm_key {
	__u32 prefixlen;
	__u8 data[NAME_LEN];
};

/* Sensitive path prefixes (filled from user space). Read-only opens are
 * emitted only when their absolute path has one of these prefixes. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__type(key, struct lpm_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sensitive SEC(".maps");

/* The first component of every sensitive prefix ("etc" for "/etc/shadow"),
 * NUL-padded: a read-only open whose resolved path starts with another
 * component cannot match, and is dropped before its path is rendered.
 * Used only when vigil_config.top_filter is set (user space clears it when
 * a prefix ends inside its first component, e.g. "/etc"). */
#define TOP_LEN 32
struct top_key {
	char name[TOP_LEN];
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct top_key);
	__type(value, __u8);
} sensitive_top SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending);
} pending_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_rec);
} file_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lpm_key);
} lpm_scratch SEC(".maps");

const struct file_rec *unused_file_rec __attribute__((unused));
const struct pending *unused_pending __attribute__((unused));
const struct top_key *unused_top_key __attribute__((unused));

static __always_inline int stash(struct pending *p)
{
	if (is_self())
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&pending_calls, &id, p, BPF_ANY);
	return 0;
}

#define ARG(i) (ctx->args[i])
/* fds are ints: callers may pass them zero-extended (AT_FDCWD as 0xffffff9c). */
#define FD(i) ((long)(int)ctx->args[i])

static __always_inline int open_common(struct trace_event_raw_sys_enter *ctx, __u16 sc, long dfd,
				       __u64 path, __u64 flags, __u64 mode)
{
	if (flags & O_PATH)
		return 0;
	struct pending p = {.sc = sc, .type = REC_OPEN, .k1 = STR_PATH, .dfd1 = dfd, .p1 = path,
			    .flags = flags, .arg = mode};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_open")
int enter_open(struct trace_event_raw_sys_enter *ctx)
{
	return open_common(ctx, SC_OPEN, AT_FDCWD, ARG(0), ARG(1), ARG(2));
}

SEC("tracepoint/syscalls/sys_enter_creat")
int enter_creat(struct trace_event_raw_sys_enter *ctx)
{
	return open_common(ctx, SC_CREAT, AT_FDCWD, ARG(0), O_CREAT | O_WRONLY | O_TRUNC, ARG(1));
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return open_common(ctx, SC_OPENAT, FD(0), ARG(1), ARG(2), ARG(3));
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how how = {};
	bpf_probe_read_user(&how, sizeof(how), (void *)ARG(2));
	return open_common(ctx, SC_OPENAT2, FD(0), ARG(1), how.flags, how.mode);
}

static __always_inline int chmod_common(__u16 sc, __u8 kind, long dfd, __u64 path, __u64 mode, __u64 flags)
{
	if (!(mode & 0111))
		return 0;
	struct pending p = {.sc = sc, .type = REC_CHMOD, .k1 = kind, .dfd1 = dfd, .p1 = path,
			    .arg = mode, .flags = flags};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_chmod")
int enter_chmod(struct trace_event_raw_sys_enter *ctx)
{
	return chmod_common(SC_CHMOD, STR_PATH, AT_FDCWD, ARG(0), ARG(1), 0);
}

SEC("tracepoint/syscalls/sys_enter_fchmod")
int enter_fchmod(struct trace_event_raw_sys_enter *ctx)
{
	return chmod_common(SC_FCHMOD, STR_FD, FD(0), 0, ARG(1), 0);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int enter_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
	return chmod_common(SC_FCHMODAT, STR_PATH, FD(0), ARG(1), ARG(2), 0);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int enter_fchmodat2(struct trace_event_raw_sys_enter *ctx)
{
	return chmod_common(SC_FCHMODAT2, STR_PATH, FD(0), ARG(1), ARG(2), ARG(3));
}

static __always_inline int unlink_common(__u16 sc, long dfd, __u64 path, __u64 flags)
{
	struct pending p = {.sc = sc, .type = REC_UNLINK, .k1 = STR_PATH, .dfd1 = dfd, .p1 = path, .flags = flags};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_unlink")
int enter_unlink(struct trace_event_raw_sys_enter *ctx)
{
	return unlink_common(SC_UNLINK, AT_FDCWD, ARG(0), 0);
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int enter_unlinkat(struct trace_event_raw_sys_enter *ctx)
{
	return unlink_common(SC_UNLINKAT, FD(0), ARG(1), ARG(2));
}

static __always_inline int rename_common(__u16 sc, long odfd, __u64 old, long ndfd, __u64 new, __u64 flags)
{
	struct pending p = {.sc = sc, .type = REC_RENAME, .k1 = STR_PATH, .k2 = STR_PATH, .dfd1 = odfd,
			    .p1 = old, .dfd2 = ndfd, .p2 = new, .flags = flags};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int enter_rename(struct trace_event_raw_sys_enter *ctx)
{
	return rename_common(SC_RENAME, AT_FDCWD, ARG(0), AT_FDCWD, ARG(1), 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat")
int enter_renameat(struct trace_event_raw_sys_enter *ctx)
{
	return rename_common(SC_RENAMEAT, FD(0), ARG(1), FD(2), ARG(3), 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int enter_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	return rename_common(SC_RENAMEAT2, FD(0), ARG(1), FD(2), ARG(3), ARG(4));
}

SEC("tracepoint/syscalls/sys_enter_memfd_create")
int enter_memfd_create(struct trace_event_raw_sys_enter *ctx)
{
	struct pending p = {.sc = SC_MEMFD_CREATE, .type = REC_MEMFD, .k1 = STR_USER, .p1 = ARG(0), .flags = ARG(1)};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int enter_ptrace(struct trace_event_raw_sys_enter *ctx)
{
	long req = FD(0);
	/* PTRACE_POKETEXT, POKEDATA, POKEUSER, ATTACH, SEIZE */
	if (req != 4 && req != 5 && req != 6 && req != 16 && req != 0x4206)
		return 0;
	struct pending p = {.sc = SC_PTRACE, .type = REC_PTRACE, .arg = req, .target_pid = ARG(1)};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_init_module")
int enter_init_module(struct trace_event_raw_sys_enter *ctx)
{
	struct pending p = {.sc = SC_INIT_MODULE, .type = REC_MODULE, .k2 = STR_USER, .p2 = ARG(2)};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_finit_module")
int enter_finit_module(struct trace_event_raw_sys_enter *ctx)
{
	struct pending p = {.sc = SC_FINIT_MODULE, .type = REC_MODULE, .k1 = STR_FD, .dfd1 = FD(0),
			    .k2 = STR_USER, .p2 = ARG(1), .flags = ARG(2)};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_setns")
int enter_setns(struct trace_event_raw_sys_enter *ctx)
{
	struct pending p = {.sc = SC_SETNS, .type = REC_SETNS, .k1 = STR_FD, .dfd1 = FD(0), .arg = ARG(1)};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_unshare")
int enter_unshare(struct trace_event_raw_sys_enter *ctx)
{
	if (!(ARG(0) & CLONE_NEW_MASK))
		return 0;
	struct pending p = {.sc = SC_UNSHARE, .type = REC_UNSHARE, .flags = ARG(0)};
	return stash(&p);
}

SEC("tracepoint/syscalls/sys_enter_mount")
int enter_mount(struct trace_event_raw_sys_enter *ctx)
{
	struct pending p = {.sc = SC_MOUNT, .type = REC_MOUNT, .k1 = STR_USER, .p1 = ARG(0), .k2 = STR_PATH,
			    .dfd2 = AT_FDCWD, .p2 = ARG(1), .k3 = STR_USER, .p3 = ARG(2), .flags = ARG(3)};
	return stash(&p);
}

/* write_str renders one string into dst (at most STR_CAP bytes, no NUL) and
 * returns its length. dst must have 2*STR_CAP + NAME_LEN bytes after it. */
static __always_inline __u64 write_str(char *dst, __u8 kind, long dfd, __u64 ptr, __u32 *trunc)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct path root;
	__u32 pf = 0;
	__u64 pos = 0;
	long r;

	if (kind == STR_KERN) {
		if (!ptr)
			return 0;
		r = bpf_probe_read_kernel_str(dst, NAME_LEN, (void *)ptr);
		return r > 1 ? clamp(r - 1, NAME_LEN) : 0;
	}
	if (kind == STR_USER) {
		if (!ptr)
			return 0;
		r = bpf_probe_read_user_str(dst, STR_CAP, (void *)ptr);
		if (r <= 1)
			return 0;
		if (r == STR_CAP)
			*trunc = 1;
		return clamp(r - 1, STR_CAP);
	}
	struct fs_struct *fs = task->fs;
	root.dentry = fs->root.dentry;
	root.mnt = fs->root.mnt;
	if (kind == STR_FD) {
		struct file *f = fd_file(task, dfd);
		if (!f)
			return 0;
		pos = write_file_path(dst, f, &root, &pf);
		if (pf)
			*trunc = 1;
		return clamp(pos, STR_CAP);
	}
	if (kind != STR_PATH || !ptr)
		return 0;
	char first = 0;
	bpf_probe_read_user(&first, 1, (void *)ptr);
	if (first != '/') {
		/* Relative: prefix the directory it is relative to. */
		if (dfd == AT_FDCWD) {
			struct dentry *d = fs->pwd.dentry;
			struct vfsmount *m = fs->pwd.mnt;
			pos = write_path(dst, d, m, &root, &pf);
		} else {
			struct file *f = fd_file(task, dfd);
			if (f)
				pos = write_file_path(dst, f, &root, &pf);
		}
		if (pf)
			*trunc = 1;
		pos = clamp(pos, STR_CAP - 2);
		if (pos > 1) { /* not "/" */
			dst[pos] = '/';
			pos++;
		} else {
			dst[0] = '/';
			pos = 1;
		}
	}
	pos = clamp(pos, STR_CAP - 1);
	__u64 room = clamp(STR_CAP - pos, STR_CAP);
	r = bpf_probe_read_user_str(dst + pos, room, (void *)ptr);
	if (r > 1) {
		if ((__u64)r == room)
			*trunc = 1;
		pos += clamp(r - 1, STR_CAP);
	}
	return clamp(pos, STR_CAP);
}

static __always_inline int is_sensitive(char *path, __u32 len)
{
	__u32 zero = 0;
	struct lpm_key *k = bpf_map_lookup_elem(&lpm_scratch, &zero);
	if (!k)
		return 0;
	bpf_probe_read_kernel(k->data, NAME_LEN, path);
	k->prefixlen = clamp(len, NAME_LEN) * 8;
	return bpf_map_lookup_elem(&sensitive, k) != NULL;
}

/* top_candidate reports whether the walked path's first component (the
 * root-most name in ps) is one of the sensitive prefixes' first components.
 * A path with no component ("/") is a candidate. */
static __always_inline int top_candidate(struct path_scratch *ps)
{
	__u64 cnt = VOLATILE_READ(ps->cnt);
	__u64 name = 0;
	for (__u32 j = 1; j <= 8; j++) {
		if (j > cnt)
			break;
		name = ps->ptrs[(cnt - j) & (PATH_SLOTS - 1)];
		if (name)
			break;
	}
	if (!name)
		return 1;
	struct top_key k = {};
	bpf_probe_read_kernel_str(k.name, sizeof(k.name), (const void *)name);
	return bpf_map_lookup_elem(&sensitive_top, &k) != NULL;
}

#define NOT_SENSITIVE ((__u64)-1)

/* readonly_open_path renders the file a read-only open returned (fd) into
 * dst like write_str(STR_FD) does, or returns NOT_SENSITIVE when its first
 * component rules out every sensitive prefix (checked before rendering). */
static __always_inline __u64 readonly_open_path(char *dst, long fd, __u32 *trunc)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct vigil_config *cfg = get_config();
	struct path_scratch *ps = path_scratch();
	struct file *f = fd_file(task, fd);
	if (!f || !ps)
		return 0;
	struct fs_struct *fs = task->fs;
	struct path root;
	root.dentry = fs->root.dentry;
	root.mnt = fs->root.mnt;
	struct dentry *d = KREAD(struct file, f, f_path.dentry);
	struct vfsmount *m = KREAD(struct file, f, f_path.mnt);
	if (!d || !m)
		return 0;
	__u32 pf = 0;
	walk_path(ps, d, m, &root, &pf);
	if (cfg && cfg->top_filter && !(pf & PATHF_TRUNC) && !top_candidate(ps))
		return NOT_SENSITIVE;
	__u64 n = emit_names(dst, ps, &pf);
	if (pf)
		*trunc = 1;
	return clamp(n, STR_CAP);
}

/* finish_file builds and sends the record of a syscall that returned ret,
 * from its arguments as stashed at entry (p). */
static __always_inline int finish_file(long ret, struct pending p)
{
	__u32 zero = 0;
	struct file_rec *r = bpf_map_lookup_elem(&file_scratch, &zero);
	if (!r)
		return 0;
	__u16 rflags = 0;
	__u8 k1 = p.k1;
	long dfd1 = p.dfd1;

	int check_sensitive = 0;
	if (p.type == REC_OPEN) {
		int write = (p.flags & O_ACCMODE) != 0 || (p.flags & (O_CREAT | O_TRUNC | O_TMPFILE));
		check_sensitive = !write;
		/* A successful open names the file it really opened (symlinks and
		 * ".." resolved): render the new descriptor. */
		if (ret >= 0) {
			k1 = STR_FD;
			dfd1 = ret;
		}
	}
	if (p.type == REC_SETNS) {
		/* A namespace file has no path (the kernel names it "net:[inum]"
		 * through d_dname): send its type name and inode number. */
		struct file *f = fd_file(bpf_get_current_task_btf(), dfd1);
		if (f && BPF_CORE_READ(f, f_inode, i_sb, s_magic) == NSFS_MAGIC) {
			struct ns_common *ns = BPF_CORE_READ(f, f_inode, i_private);
			p.target_pid = BPF_CORE_READ(ns, inum);
			p.p1 = (__u64)BPF_CORE_READ(ns, ops, name);
			k1 = STR_KERN;
		}
	}

	__u64 off = 0, n;
	__u32 t = 0;
	if (check_sensitive && k1 == STR_FD) {
		n = readonly_open_path(r->data, dfd1, &t);
		if (n == NOT_SENSITIVE)
			return 0;
	} else {
		n = write_str(r->data, k1, dfd1, p.p1, &t);
	}
	if (t)
		rflags |= FREC_TRUNC1;
	if (check_sensitive) {
		if (!is_sensitive(r->data, n))
			return 0;
		rflags |= FREC_SENSITIVE;
	}
	r->len1 = n;
	off = VOLATILE_READ(r->len1);

	t = 0;
	n = write_str(r->data + clamp(off, SECTION_MASK), p.k2, p.dfd2, p.p2, &t);
	if (t)
		rflags |= FREC_TRUNC2;
	r->len2 = n;
	off += VOLATILE_READ(r->len2);

	t = 0;
	n = write_str(r->data + clamp(off, SECTION_MASK), p.k3, 0, p.p3, &t);
	if (t)
		rflags |= FREC_TRUNC3;
	r->len3 = n;
	off += VOLATILE_READ(r->len3);

	r->result = ret;
	r->flags = p.flags;
	r->arg = p.arg;
	r->target_pid = p.target_pid;
	r->sc = p.sc;
	r->rflags = rflags;
	r->_pad = 0;
	__u64 size = clamp(offsetof(struct file_rec, data) + (__u64)off, sizeof(*r));
	fill_hdr(&r->hdr, p.type, size, bpf_get_current_task_btf());
	submit(r, size);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit")
int exit_file(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending *pp = bpf_map_lookup_elem(&pending_calls, &id);
	if (!pp)
		return 0;
	struct pending p = *pp;
	bpf_map_delete_elem(&pending_calls, &id);
	return finish_file(ctx->ret, p);
}

/* exit_openat replaces the enter_openat + exit_file pair for openat(2), the
 * most frequent file syscall, on x86-64: at sys_exit the thread's saved
 * user registers still hold the syscall's arguments (only the return value
 * register was written), so nothing needs stashing at entry: no sys_enter
 * program and no pending_calls update, lookup and delete per open. The
 * strings are read at exit either way. Elsewhere user space keeps the
 * enter/exit pair and never attaches this program. */
SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
#if defined(__TARGET_ARCH_x86)
	if (is_self())
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return 0;
	/* openat(int dfd, const char *path, int flags, umode_t mode):
	 * di, si, dx, r10 (the syscall ABI; r10 stands in for rcx). */
	__u64 flags = regs->dx; /* raw, as sys_enter_openat's args[] carry them */
	if (flags & O_PATH)
		return 0;
	struct pending p = {.sc = SC_OPENAT, .type = REC_OPEN, .k1 = STR_PATH, .dfd1 = (long)(int)regs->di,
			    .p1 = regs->si, .flags = flags, .arg = regs->r10};
	return finish_file(ctx->ret, p);
#else
	return 0;
#endif
}
