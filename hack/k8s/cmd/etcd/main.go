// Command etcd is etcd's server (the version Kubernetes v1.35.4 is built
// against), for vigil's test cluster (hack/cluster). `go install` of etcd's
// own main module does not work, so this calls etcdmain directly.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
