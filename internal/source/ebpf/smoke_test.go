package ebpf

import (
	"os/exec"
	"testing"
	"fmt"
	"github.com/vigil-sec/vigil/internal/event"
)

func TestSmoke(t *testing.T) {
	c := startSource(t, Config{FileEvents: true})
	exec.Command("/bin/sh", "-c", "echo hi > /tmp/smoke-x; true smoke-marker; exit 3").Run()
	ev := c.waitFor(t, "exec", func(e *event.Event) bool { return e.Kind == event.KindExec && hasArg(e, "smoke-marker") })
	fmt.Printf("%+v\n", ev.Process)
	settle()
	c.mu.Lock()
	for _, e := range c.events { if e.Process.Comm == "sh" { fmt.Printf("%s %+v %+v %+v %+v\n", e.Kind, e.Process.PID, e.File, e.Exit, e.Syscall) } }
	c.mu.Unlock()
	fmt.Printf("%+v\n", c.src.Stats())
}
