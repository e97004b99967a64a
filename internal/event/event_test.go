package event

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The JSON field names are the documented schema (docs/events.md): users'
// scripts and `vigil rules test` depend on them.
func TestEventJSONUsesTheDocumentedFieldNames(t *testing.T) {
	ev := Event{
		Kind: KindExec, Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Node: "n1", Source: "ebpf",
		Process: Process{PID: 42, PPID: 1, StartTime: 123, Exe: "/bin/sh", Args: []string{"sh", "-c", "id"},
			Cgroup: "/kubepods/besteffort/podx/abc", ExeUpperLayer: true},
		Parent:    &ProcessRef{PID: 1, Exe: "/sbin/init"},
		Container: &Container{ID: "abc", Runtime: "containerd", PodUID: "x"},
		Network:   &Network{Family: "ipv4", Protocol: "tcp", DstIP: "127.0.0.1", DstPort: 80, ResultOK: true},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"exec"`, `"pid":42`, `"exe":"/bin/sh"`, `"args":["sh","-c","id"]`,
		`"exeUpperLayer":true`, `"container":{"id":"abc","runtime":"containerd","podUID":"x"}`,
		`"dstPort":80`, `"parent":{"pid":1`, `"startTime":123`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Process.Args[2] != "id" || back.Container.ID != "abc" || back.Network.DstPort != 80 {
		t.Fatalf("round trip lost data: %+v", back)
	}
}

func TestKeysAgreeBetweenKernelAndProcPrecision(t *testing.T) {
	// The kernel reports ns; /proc reports 10 ms ticks. Both must give one key.
	kernel := MakeKey(1234, 5_123_456_789)
	proc := MakeKey(1234, 512*TickNS)
	if kernel != proc {
		t.Fatalf("kernel key %v != proc key %v", kernel, proc)
	}
	if MakeKey(1234, 5_123_456_789) == MakeKey(1235, 5_123_456_789) {
		t.Fatal("different pids share a key")
	}
}

func TestEveryKindIsListedOnce(t *testing.T) {
	seen := map[Kind]bool{}
	for _, k := range AllKinds {
		if seen[k] {
			t.Fatalf("%s listed twice", k)
		}
		seen[k] = true
	}
	if len(seen) != 21 {
		t.Fatalf("AllKinds has %d kinds, want 21", len(seen))
	}
}

func TestAnAuditEventUsesTheDocumentedFieldNames(t *testing.T) {
	ev := Event{Kind: KindAudit, Source: "audit-log", Container: &Container{Pod: "api-0", Namespace: "shop"},
		Audit: &Audit{User: "system:serviceaccount:shop:api", ServiceAccountNamespace: "shop", ServiceAccountName: "api",
			Verb: "create", Resource: "selfsubjectaccessreviews", SourceIPs: []string{"10.244.0.17"}, ResponseCode: 201,
			HostPaths: []string{"/"}, RoleRefName: "cluster-admin"}}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"audit"`, `"audit":{"user":"system:serviceaccount:shop:api"`, `"serviceAccountNamespace":"shop"`,
		`"serviceAccountName":"api"`, `"verb":"create"`, `"resource":"selfsubjectaccessreviews"`, `"sourceIPs":["10.244.0.17"]`,
		`"responseCode":201`, `"hostPaths":["/"]`, `"roleRefName":"cluster-admin"`, `"pod":"api-0"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
}
