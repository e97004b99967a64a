package sensor

import (
	ebpfsrc "github.com/vigil-sec/vigil/internal/source/ebpf"
	procsrc "github.com/vigil-sec/vigil/internal/source/proc"
)

type ebpfAdapter struct{ *ebpfsrc.Source }

func (a ebpfAdapter) counters() counters {
	st := a.Stats()
	return counters{Seen: st.KernelSeen, Dropped: st.KernelDropped, Delivered: st.Delivered, RingPending: st.RingPending}
}

type procAdapter struct{ *procsrc.Source }

func (a procAdapter) counters() counters {
	st := a.Stats()
	return counters{Seen: st.Received + st.Dropped, Dropped: st.Dropped, Delivered: st.Delivered}
}
