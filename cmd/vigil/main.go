// Command vigil is the single binary of the vigil runtime threat-detection
// platform: node sensor today, hub, agent and CLI verbs as they land.
package main

import (
	"os"

	"github.com/vigil-sec/vigil/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
