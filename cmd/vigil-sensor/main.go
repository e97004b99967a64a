// Command vigil-sensor is vigil's node sensor alone: `vigil-sensor [flags]`
// is `vigil sensor [flags]`, without the hub, the CLI verbs and the
// control plane, so that it links no Kubernetes client libraries and stays
// small in memory. The sensor DaemonSet runs it.
package main

import (
	"os"

	"github.com/vigil-sec/vigil/internal/sensorcmd"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() { os.Exit(sensorcmd.Main(version, os.Args[1:], os.Stdout, os.Stderr)) }
