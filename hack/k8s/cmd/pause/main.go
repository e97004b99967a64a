// Command pause is the pod sandbox process of vigil's test cluster: a tiny
// static program that sleeps until SIGTERM or SIGINT and reaps the zombies it
// inherits as a pod's PID 1. hack/cluster packs it into the locally built
// image vigil.local/pause, because no registry is reachable to pull one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		default:
			os.Exit(0)
		}
	}
}
