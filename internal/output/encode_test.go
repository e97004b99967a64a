package output

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// referenceJSON is what the JSONL writer produced before AppendEvent:
// json.Encoder with SetEscapeHTML(false), without the trailing newline.
func referenceJSON(ev *event.Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// requireSameAsEncodingJSON fails unless AppendEvent and encoding/json agree
// byte for byte, or both refuse the event.
func requireSameAsEncodingJSON(t *testing.T, ev *event.Event) {
	t.Helper()
	want, wantErr := referenceJSON(ev)
	prefix := []byte("prefix")
	got, gotErr := AppendEvent(slices.Clone(prefix), ev)
	switch {
	case wantErr != nil && gotErr != nil:
		if !bytes.Equal(got, prefix) {
			t.Fatalf("AppendEvent failed (%v) but changed dst to %q", gotErr, got)
		}
		return
	case wantErr != nil:
		t.Fatalf("encoding/json refuses the event (%v) but AppendEvent wrote %s", wantErr, got)
	case gotErr != nil:
		t.Fatalf("AppendEvent refuses the event (%v) but encoding/json wrote %s", gotErr, want)
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("AppendEvent did not append to dst: %q", got)
	}
	got = got[len(prefix):]
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("AppendEvent differs from encoding/json at byte %d\n got: %s\nwant: %s\n(got …%q… want …%q…)",
			i, got, want, got[max(0, i-20):min(len(got), i+20)], want[max(0, i-20):min(len(want), i+20)])
	}
}

// trickyStrings exercise every branch of encoding/json's string escaping.
var trickyStrings = []string{
	"",
	"plain",
	`say "hi"`,
	`C:\back\slash\`,
	"\x00\x01\x07\x1b\x1f",
	"\b\f\n\r\t",
	"control bytes after a plain run: \x00 \x1f \x7f \t",
	`quotes after a plain run: "x" and \\y\\`,
	"del \x7f",
	"bad utf8 \xff\xfe end",
	"truncated rune \xe2\x82",
	"surrogate \xed\xa0\x80",
	"beyond max rune \xf4\x90\x80\x80",
	"line\u2028para\u2029",
	"emoji 🦀👩‍💻",
	"<a&b>",
	"ünïcödé 日本語",
	"\ufffd literal replacement char",
	strings.Repeat("long/path/", 50),
}

func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	ts := time.Date(2026, 11, 25, 19, 48, 49, 123456789, time.UTC)
	cases := []struct {
		name string
		ev   *event.Event
	}{
		{"an empty event keeps its always-present keys", &event.Event{}},
		{"a realistic exec event matches", realisticExec()},
		{"a zero time is year one", &event.Event{Kind: event.KindExit, Time: time.Time{}}},
		{"whole seconds have no fraction", &event.Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}},
		{"trailing zero nanoseconds are trimmed", &event.Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 500000000, time.UTC)}},
		{"a positive zone offset is kept", &event.Event{Time: ts.In(time.FixedZone("IST", 5*3600+30*60))}},
		{"a negative zone offset is kept", &event.Event{Time: ts.In(time.FixedZone("X", -(9*3600 + 45*60)))}},
		{"a sub-minute zone offset is truncated like encoding/json", &event.Event{Time: ts.In(time.FixedZone("S", -30))}},
		{"the local zone is formatted", &event.Event{Time: ts.Local()}},
		{"a time with a monotonic reading is formatted by wall clock", &event.Event{Time: time.Now()}},
		{"year 9999 is the last encodable year", &event.Event{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
		{"year 10000 is refused like encoding/json refuses it", &event.Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"a negative year is refused like encoding/json refuses it", &event.Event{Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"a zone offset of a day is refused like encoding/json refuses it", &event.Event{Time: ts.In(time.FixedZone("D", 24*3600))}},
		{"nil args are omitted", &event.Event{Process: event.Process{Args: nil}}},
		{"empty args are omitted", &event.Event{Process: event.Process{Args: []string{}}}},
		{"one empty arg is kept", &event.Event{Process: event.Process{Args: []string{""}}}},
		{"empty ancestry is omitted", &event.Event{Ancestry: []event.ProcessRef{}}},
		{"a zero ancestor keeps pid and uid", &event.Event{Ancestry: []event.ProcessRef{{}}}},
		{"empty missing kinds are omitted", &event.Event{Health: &event.Health{Missing: []event.Kind{}}}},
		{"missing kinds are listed", &event.Event{Health: &event.Health{Status: "degraded", Missing: []event.Kind{event.KindDNS, event.KindPtrace}}}},
		{"every detail pointer set to a zero struct is encoded", &event.Event{
			Parent: &event.ProcessRef{}, Container: &event.Container{}, Network: &event.Network{}, File: &event.File{},
			Exit: &event.Exit{}, Fork: &event.Fork{}, Syscall: &event.Syscall{}, Health: &event.Health{}, Audit: &event.Audit{},
		}},
		{"a realistic audit event matches", &event.Event{Kind: event.KindAudit, Time: ts, Node: "cp-1", Source: "audit-log",
			Container: &event.Container{Pod: "api-6b7c8d9e0-p4q5r", Namespace: "shop", PodUID: "9e8d7c6b"},
			Audit: &event.Audit{AuditID: "0f3c1d1e", Stage: "ResponseComplete", Level: "Request", User: "system:serviceaccount:shop:api",
				Groups: []string{"system:serviceaccounts", "system:authenticated"}, ServiceAccountNamespace: "shop", ServiceAccountName: "api",
				Verb: "create", Resource: "pods", Namespace: "default", Name: "evil", RequestURI: "/api/v1/namespaces/default/pods?x=<&>",
				SourceIPs: []string{"10.244.0.17"}, UserAgent: "curl/8.5.0", ResponseCode: 201, Decision: "allow", Reason: `RBAC: allowed by "x"`,
				ObjectKind: "Pod", Privileged: true, HostPID: true, HostPaths: []string{"/"}, Images: []string{"busybox:1"},
				Capabilities: []string{"SYS_ADMIN"}}}},
		{"a host container is host:true only", &event.Event{Container: &event.Container{Host: true}}},
		{"a container without host starts with its id", &event.Event{Container: &event.Container{ID: "abc", Pod: "web"}}},
		{"extreme integers are exact", &event.Event{
			Process: event.Process{PID: math.MinInt, TID: math.MaxInt, PPID: -1, StartTime: math.MaxUint64, UID: math.MaxUint32, GID: 0, EUID: 1, CgroupID: math.MaxUint64, ExeDev: math.MaxUint32},
			Network: &event.Network{SrcPort: math.MaxUint16, Result: -111},
			Syscall: &event.Syscall{Request: math.MinInt64, Flags: math.MaxUint64, TargetPID: -5},
			Health:  &event.Health{Drops: math.MaxUint64},
		}},
	}
	for i, s := range trickyStrings {
		cases = append(cases, struct {
			name string
			ev   *event.Event
		}{
			name: "tricky string " + string(rune('a'+i)) + " is escaped like encoding/json",
			ev: &event.Event{
				Kind: event.Kind(s), Node: s, Source: s,
				Process:   event.Process{Comm: s, Exe: s, Args: []string{s, s}, Cwd: s, User: s, Cgroup: s},
				Parent:    &event.ProcessRef{Exe: s, Comm: s, Args: []string{s}},
				Container: &event.Container{ID: s, Image: s, Namespace: s, Workload: s, Labels: map[string]string{s: s, "b": s, "a": ""}},
				Network:   &event.Network{Family: s, DNSQuery: s},
				File:      &event.File{Path: s, NewPath: s},
				Syscall:   &event.Syscall{Name: s, Args: s, Name2: s, Namespace: s},
				Health:    &event.Health{Status: s, Message: s, Missing: []event.Kind{event.Kind(s)}, Mode: s},
				Audit:     &event.Audit{User: s, Groups: []string{s}, Verb: s, UserAgent: s, HostPaths: []string{s, s}, Subjects: []string{s}},
			},
		})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { requireSameAsEncodingJSON(t, c.ev) })
	}
}

func TestRandomEventsMatchEncodingJSON(t *testing.T) {
	for seed := range uint64(2000) {
		f := &filler{t: t, r: rand.New(rand.NewPCG(seed, 1)), strs: trickyStrings, full: seed%10 == 0}
		var ev event.Event
		f.fill(reflect.ValueOf(&ev).Elem(), "event")
		requireSameAsEncodingJSON(t, &ev)
	}
}

func FuzzAppendEventMatchesEncodingJSON(f *testing.F) {
	for i, s := range trickyStrings {
		f.Add(uint64(i), s, trickyStrings[(i+1)%len(trickyStrings)], i%3 == 0)
	}
	f.Fuzz(func(t *testing.T, seed uint64, s1, s2 string, full bool) {
		pool := append([]string{s1, s2, s1 + s2}, trickyStrings...)
		fl := &filler{t: t, r: rand.New(rand.NewPCG(seed, 2)), strs: pool, favour: 3, full: full}
		var ev event.Event
		fl.fill(reflect.ValueOf(&ev).Elem(), "event")
		requireSameAsEncodingJSON(t, &ev)
		// The Encoder writes the same, encoding the ancestors and then
		// copying them from its cache.
		want, wantErr := AppendEvent(nil, &ev)
		var enc Encoder
		for pass := range 2 {
			got, err := enc.AppendEvent(nil, &ev)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("Encoder pass %d wrote %s (%v), AppendEvent %s (%v)", pass, got, err, want, wantErr)
			}
		}
	})
}

// TestAppendEventCoversEveryField fails when event.go gains a field that
// AppendEvent does not write: it fills every field reachable from
// event.Event with a non-zero value by reflection and compares the JSON keys
// AppendEvent writes with the keys the struct tags declare.
func TestAppendEventCoversEveryField(t *testing.T) {
	declared := map[string]bool{}
	declaredKeys(t, reflect.TypeFor[event.Event](), "", declared)

	fl := &filler{t: t, r: rand.New(rand.NewPCG(42, 42)), strs: trickyStrings, full: true}
	var ev event.Event
	fl.fill(reflect.ValueOf(&ev).Elem(), "event")

	ref, err := referenceJSON(&ev)
	if err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	if missing := keyDiff(declared, jsonKeys(t, ref)); len(missing) > 0 {
		t.Fatalf("the test filler left fields empty, so this test would miss them: %v", missing)
	}
	got, err := AppendEvent(nil, &ev)
	if err != nil {
		t.Fatalf("AppendEvent: %v", err)
	}
	gotKeys := jsonKeys(t, got)
	if missing := keyDiff(declared, gotKeys); len(missing) > 0 {
		t.Errorf("AppendEvent does not write %v: add them to internal/output/encode.go in event.go's field order", missing)
	}
	if extra := keyDiff(gotKeys, declared); len(extra) > 0 {
		t.Errorf("AppendEvent writes keys event.go does not declare: %v", extra)
	}
	requireSameAsEncodingJSON(t, &ev)
}

func TestAppendEventDoesNotAllocate(t *testing.T) {
	ev := realisticExec()
	buf := make([]byte, 0, 8192)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendEvent(buf[:0], ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("AppendEvent allocates %.1f times per event into a large enough buffer, want 0", allocs)
	}
}

func TestJSONLWritesWhatEncodingJSONWrote(t *testing.T) {
	var buf bytes.Buffer
	j := NewJSONL(&buf)
	evs := []*event.Event{realisticExec(), {Kind: event.KindExit, Exit: &event.Exit{Code: 1}}, {}}
	var want []byte
	for _, ev := range evs {
		if err := j.Write(ev); err != nil {
			t.Fatal(err)
		}
		line, err := referenceJSON(ev)
		if err != nil {
			t.Fatal(err)
		}
		want = append(append(want, line...), '\n')
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("JSONL output changed:\n got: %s\nwant: %s", buf.Bytes(), want)
	}
}

func TestAnUnencodableTimeIsReportedWithTheEventKind(t *testing.T) {
	dst := []byte("keep")
	out, err := AppendEvent(dst, &event.Event{Kind: event.KindExec, Time: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err == nil || !strings.Contains(err.Error(), "exec") || !strings.Contains(err.Error(), "year") {
		t.Fatalf("err = %v, want the kind and the year problem", err)
	}
	if string(out) != "keep" {
		t.Fatalf("dst = %q after an error, want it unchanged", out)
	}
}

// realisticExec is a typical exec event: 8 ancestors with 4 args each, a
// container, and a network detail (to exercise one more nested object).
func realisticExec() *event.Event {
	anc := make([]event.ProcessRef, 8)
	for i := range anc {
		anc[i] = event.ProcessRef{
			PID: 4000 - i*100, StartTime: 123456789000 + uint64(i), Exe: "/usr/bin/bash",
			Args: []string{"/bin/bash", "-c", "cd /srv/app && ./run.sh --port 8080", "--login"},
			Comm: "bash", UID: 1000,
		}
	}
	return &event.Event{
		Kind:   event.KindExec,
		Time:   time.Date(2026, 11, 25, 19, 48, 49, 123456789, time.UTC),
		Node:   "node-1.example.internal",
		Source: "ebpf",
		Process: event.Process{
			PID: 4242, PPID: 4000, StartTime: 987654321000, UID: 1000, GID: 1000, EUID: 1000,
			User: "app", Comm: "curl", Exe: "/usr/bin/curl",
			Args: []string{"curl", "-sS", "-o", "/tmp/x", "https://example.com/install.sh?token=<a&b>"},
			Cwd:  "/srv/app", Cgroup: "/kubepods/burstable/pod1234/0123456789abcdef",
			CgroupID: 12345, MntNS: 4026532000, PidNS: 4026532001, NetNS: 4026532002,
			ExeInode: 654321, ExeDev: 2049,
		},
		Parent:   &anc[0],
		Ancestry: anc,
		Container: &event.Container{
			ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Runtime: "containerd",
			PodUID: "4f1c2d3e-aaaa-bbbb-cccc-0123456789ab", QOS: "burstable", Name: "app",
			Image: "registry.example.com/team/app:1.2.3", Pod: "app-7d9f8c6b5-x2x4z", Namespace: "prod",
			Workload: "Deployment/app", Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5"},
		},
		Network: &event.Network{Family: "ipv4", Protocol: "tcp", SrcIP: "10.0.0.5", SrcPort: 43210, DstIP: "93.184.216.34", DstPort: 443},
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	ev := realisticExec()
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendEvent(buf[:0], ev); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodingJSON(b *testing.B) {
	ev := realisticExec()
	enc := json.NewEncoder(io.Discard)
	enc.SetEscapeHTML(false)
	b.ReportAllocs()
	for b.Loop() {
		if err := enc.Encode(ev); err != nil {
			b.Fatal(err)
		}
	}
	ref, _ := referenceJSON(ev)
	b.SetBytes(int64(len(ref)))
}

func BenchmarkJSONLWrite(b *testing.B) {
	ev := realisticExec()
	j := NewJSONL(io.Discard)
	defer j.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := j.Write(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// filler populates a value by reflection. With full set, every field is
// non-zero, every pointer set and every slice non-empty; otherwise each is
// randomly zero, nil, empty or populated. Field kinds it does not know fail
// the test: AppendEvent would not know them either.
type filler struct {
	t      testing.TB
	r      *rand.Rand
	strs   []string
	favour int // the first favour strings are drawn half of the time (fuzz inputs)
	full   bool
}

var timeType = reflect.TypeFor[time.Time]()

func (f *filler) fill(v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(f.time()))
			return
		}
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			f.fill(v.Field(i), path+"."+sf.Name)
		}
	case reflect.Pointer:
		if !f.full && f.r.IntN(2) == 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		f.fill(v.Elem(), path)
	case reflect.Slice:
		n := 1 + f.r.IntN(3)
		if !f.full {
			switch f.r.IntN(4) {
			case 0:
				return // nil
			case 1:
				n = 0 // empty, not nil
			}
		}
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			f.fill(v.Index(i), path+"[]")
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			f.t.Fatalf("%s is a %s, which neither this test nor AppendEvent handles: extend both", path, v.Type())
		}
		n := f.r.IntN(4)
		if f.full && n == 0 {
			n = 2
		}
		if n == 0 && f.r.IntN(2) == 0 {
			v.SetZero() // nil
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), n)
		for range n {
			m.SetMapIndex(reflect.ValueOf(f.str()), reflect.ValueOf(f.str()))
		}
		v.Set(m)
	case reflect.String:
		v.SetString(f.str())
	case reflect.Bool:
		v.SetBool(f.full || f.r.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := v.Type().Bits()
		lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
		choices := []int64{0, 1, -1, lo, hi, f.r.Int64() >> (64 - bits)}
		x := choices[f.r.IntN(len(choices))]
		if f.full && x == 0 {
			x = 7
		}
		v.SetInt(x)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := v.Type().Bits()
		hi := uint64(math.MaxUint64) >> (64 - bits)
		choices := []uint64{0, 1, hi, f.r.Uint64() >> (64 - bits)}
		x := choices[f.r.IntN(len(choices))]
		if f.full && x == 0 {
			x = 7
		}
		v.SetUint(x)
	default:
		f.t.Fatalf("%s has kind %s, which neither this test nor AppendEvent handles: extend both", path, v.Kind())
	}
}

func (f *filler) str() string {
	if f.favour > 0 && f.r.IntN(2) == 0 {
		if s := f.strs[f.r.IntN(f.favour)]; s != "" || !f.full {
			return s
		}
	}
	for {
		s := f.strs[f.r.IntN(len(f.strs))]
		if s != "" || !f.full {
			return s
		}
	}
}

func (f *filler) time() time.Time {
	sec := f.r.Int64N(253402300800) // years 1970..9999
	nsec := []int64{0, 500000000, 123000000, 100, int64(f.r.IntN(1e9))}[f.r.IntN(5)]
	t := time.Unix(sec, nsec).UTC()
	switch f.r.IntN(6) {
	case 0:
		t = t.In(time.FixedZone("F", f.r.IntN(2*86399)-86399)) // any offset under a day, seconds included
	case 1:
		t = t.Local()
	case 2:
		if !f.full {
			t = time.Time{}
		}
	case 3:
		if !f.full { // out of RFC 3339's range: both encoders must refuse
			t = []time.Time{
				time.Date(10000+f.r.IntN(1000), 1, 1, 0, 0, 0, 0, time.UTC),
				time.Date(-1-f.r.IntN(1000), 1, 1, 0, 0, 0, 0, time.UTC),
				t.In(time.FixedZone("D", 86400+f.r.IntN(86400))),
			}[f.r.IntN(3)]
		}
	}
	return t
}

// declaredKeys collects the JSON key paths the struct tags of t declare,
// e.g. "process.args" and "ancestry.exe" (slices do not add a level).
func declaredKeys(tb testing.TB, t reflect.Type, prefix string, into map[string]bool) {
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		if sf.Anonymous {
			tb.Fatalf("embedded field %s.%s: AppendEvent does not flatten embedded structs; extend it", t.Name(), sf.Name)
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		key := prefix + name
		into[key] = true
		ft := sf.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != timeType {
			declaredKeys(tb, ft, key+".", into)
		}
	}
}

// jsonKeys collects the key paths present in a JSON document, in the same
// form as declaredKeys.
func jsonKeys(t *testing.T, doc []byte) map[string]bool {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	keys := map[string]bool{}
	var walk func(v any, prefix string)
	walk = func(v any, prefix string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				keys[prefix+k] = true
				if prefix+k != "container.labels" { // a map's keys are data, not fields
					walk(e, prefix+k+".")
				}
			}
		case []any:
			for _, e := range v {
				walk(e, prefix)
			}
		}
	}
	walk(v, "")
	return keys
}

// keyDiff lists the keys of a that b lacks, sorted.
func keyDiff(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
