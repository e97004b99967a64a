package ebpf

import (
	"errors"
	"fmt"
	"os"
	"testing"

	cebpf "github.com/cilium/ebpf"
)

func TestDumpVerifier(t *testing.T) {
	spec, err := cebpf.LoadCollectionSpec(os.Getenv("OBJ"))
	if err != nil {
		t.Fatal(err)
	}
	for name, ps := range spec.Programs {
		if os.Getenv("PROG") != "" && name != os.Getenv("PROG") {
			continue
		}
		one := spec.Copy()
		for n := range one.Programs {
			if n != name {
				delete(one.Programs, n)
			}
		}
		_ = ps
		coll, err := cebpf.NewCollectionWithOptions(one, cebpf.CollectionOptions{Programs: cebpf.ProgramOptions{LogLevel: cebpf.LogLevelInstruction | cebpf.LogLevelStats, LogSizeStart: 1 << 29}})
		var verr *cebpf.VerifierError
		if errors.As(err, &verr) {
			os.WriteFile("/tmp/x/verifier-"+name+".log", []byte(fmt.Sprintf("%+v", verr)), 0o644)
			t.Errorf("%s: see /tmp/x/verifier-%s.log", name, name)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		p := coll.Programs[name]
		info, _ := p.Info()
		vi, _ := info.VerifiedInstructions()
		fmt.Printf("%s: verified insns %d\n", name, vi)
		coll.Close()
	}
}
