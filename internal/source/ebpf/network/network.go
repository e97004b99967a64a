// Package network attaches vigil's network BPF programs
// (internal/bpf/c/net.bpf.c) and decodes their records into events: TCP
// connect with its outcome, UDP connect, bind, listen, accept and DNS
// query names.
//
// The programs use only hooks that keep syscalls on their fast path: the
// BTF tracepoint sock:inet_sock_set_state (TCP state changes) and cgroup
// hooks on the cgroup2 root (connect4/6, sendmsg4/6, post_bind4/6 and
// cgroup_skb/egress). Every cgroup program allows the operation: vigil
// observes, it never blocks.
package network

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/vigil-sec/vigil/internal/bpf"
)

// cgroupPrograms are attached to the cgroup2 root, in this order.
var cgroupPrograms = []string{
	bpf.NetProgVigilPostBind4,
	bpf.NetProgVigilPostBind6,
	bpf.NetProgVigilConnect4,
	bpf.NetProgVigilConnect6,
	bpf.NetProgVigilSendmsg4,
	bpf.NetProgVigilSendmsg6,
	bpf.NetProgVigilDnsEgress,
}

// attachment owns the loaded network objects and their links.
type attachment struct {
	objs  *bpf.NetObjects
	links []link.Link
}

// Close detaches every program and frees the network object's own maps
// (the shared maps belong to the caller).
func (a *attachment) Close() error {
	var errs []error
	for i := len(a.links) - 1; i >= 0; i-- {
		if err := a.links[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach network program: %w", err))
		}
	}
	a.links = nil
	if a.objs != nil {
		if err := a.objs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close network BPF objects: %w", err))
		}
		a.objs = nil
	}
	return errors.Join(errs...)
}

// Attach loads the network programs against the shared maps (one ring for the whole sensor) and
// attaches them; cgroup2Path is the cgroup2 mount (/sys/fs/cgroup/unified on this hybrid host,
// /sys/fs/cgroup on pure-v2 hosts). The returned Closer detaches and frees everything.
//
// With an empty cgroup2Path only the TCP state tracepoint is attached
// (connect over TCP, listen, accept); bind, UDP connect and DNS are then
// missing, which is logged.
func Attach(m bpf.SharedMaps, cgroup2Path string, log *slog.Logger) (io.Closer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m.Events == nil || m.Drops == nil || m.Config == nil {
		return nil, errors.New("attach network programs: shared maps (events, drops, vigil_cfg) must all be set; load the first BPF object before the network one")
	}
	spec, err := bpf.LoadNet()
	if err != nil {
		return nil, fmt.Errorf("read embedded network BPF object: %w", err)
	}
	objs := &bpf.NetObjects{}
	if err := spec.LoadAndAssign(objs, m.Options(spec)); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load network BPF programs (verifier rejected them; kernel needs BTF, tp_btf and cgroup sock_addr support): %+v", ve)
		}
		return nil, fmt.Errorf("load network BPF programs (kernel needs BTF, tp_btf and cgroup sock_addr support): %w", err)
	}
	a := &attachment{objs: objs}

	tp, err := link.AttachTracing(link.TracingOptions{Program: objs.VigilInetSockSetState})
	if err != nil {
		_ = a.Close()
		return nil, fmt.Errorf("attach tp_btf/inet_sock_set_state (TCP connect/listen/accept): %w", err)
	}
	a.links = append(a.links, tp)

	if cgroup2Path == "" {
		log.Warn("no cgroup2 mount given: bind, UDP connect and DNS events are not observed")
		return a, nil
	}
	progs := map[string]*ebpf.Program{
		bpf.NetProgVigilPostBind4: objs.VigilPostBind4,
		bpf.NetProgVigilPostBind6: objs.VigilPostBind6,
		bpf.NetProgVigilConnect4:  objs.VigilConnect4,
		bpf.NetProgVigilConnect6:  objs.VigilConnect6,
		bpf.NetProgVigilSendmsg4:  objs.VigilSendmsg4,
		bpf.NetProgVigilSendmsg6:  objs.VigilSendmsg6,
		bpf.NetProgVigilDnsEgress: objs.VigilDnsEgress,
	}
	for _, name := range cgroupPrograms {
		l, err := link.AttachCgroup(link.CgroupOptions{
			Path:    cgroup2Path,
			Attach:  spec.Programs[name].AttachType,
			Program: progs[name],
		})
		if err != nil {
			_ = a.Close()
			return nil, fmt.Errorf("attach %s to cgroup2 root %s (is it a cgroup2 mount?): %w", name, cgroup2Path, err)
		}
		a.links = append(a.links, l)
	}
	log.Debug("network programs attached", "cgroup2", cgroup2Path, "links", len(a.links))
	return a, nil
}
