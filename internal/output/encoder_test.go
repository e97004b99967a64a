package output

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestEncoderWritesWhatAppendEventWrites replays events whose ancestors
// repeat, change a field, or change their command line inside the same
// array (what a caller reusing its slices does): every line must be the
// one AppendEvent writes, never a stale remembered ancestor.
func TestEncoderWritesWhatAppendEventWrites(t *testing.T) {
	base := realisticExec()
	args := base.Ancestry[2].Args // shared with the events below
	steps := []struct {
		name   string
		change func(ev *event.Event)
	}{
		{"the first event", func(*event.Event) {}},
		{"the same ancestors again", func(*event.Event) {}},
		{"an ancestor exited", func(ev *event.Event) { ev.Ancestry[1].Exited = true }},
		{"an ancestor's argument changed in place", func(*event.Event) { args[2] = "cd /srv/other && ./run.sh" }},
		{"an ancestor's argument changed back", func(*event.Event) { args[2] = "cd /srv/app && ./run.sh --port 8080" }},
		{"the parent re-executed", func(ev *event.Event) {
			ev.Parent = &event.ProcessRef{PID: ev.Parent.PID, StartTime: ev.Parent.StartTime, Exe: "/usr/bin/python3", Args: []string{"python3", "app.py"}, Comm: "python3"}
		}},
		{"an ancestor's uid changed", func(ev *event.Event) { ev.Ancestry[3].UID = 0 }},
		{"a pid reused with another start time", func(ev *event.Event) { ev.Ancestry[4].StartTime++ }},
		{"a command line that needs escaping", func(ev *event.Event) { ev.Ancestry[5].Args = []string{"sh", "-c", "echo \"<tab>\t\\u2028\u2028\xff\""} }},
		{"no ancestry", func(ev *event.Event) { ev.Ancestry = nil; ev.Parent = nil }},
	}
	var enc Encoder
	ev := *base
	for _, st := range steps {
		st.change(&ev)
		want, err := AppendEvent(nil, &ev)
		if err != nil {
			t.Fatalf("%s: AppendEvent: %v", st.name, err)
		}
		got, err := enc.AppendEvent([]byte("prefix"), &ev)
		if err != nil {
			t.Fatalf("%s: Encoder.AppendEvent: %v", st.name, err)
		}
		if !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("%s: Encoder wrote\n%s\nwant prefix +\n%s", st.name, got, want)
		}
	}
}

// TestSameRefComparesEveryProcessRefField: a field added to
// event.ProcessRef but not compared by sameRef would make the Encoder
// write a stale ancestor.
func TestSameRefComparesEveryProcessRefField(t *testing.T) {
	typ := reflect.TypeFor[event.ProcessRef]()
	for i := range typ.NumField() {
		var a, b event.ProcessRef
		f := reflect.ValueOf(&b).Elem().Field(i)
		switch f.Kind() {
		case reflect.Int:
			f.SetInt(7)
		case reflect.Uint32, reflect.Uint64:
			f.SetUint(7)
		case reflect.String:
			f.SetString("x")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"x"}))
		default:
			t.Fatalf("ProcessRef.%s has kind %s: teach this test and sameRef about it", typ.Field(i).Name, f.Kind())
		}
		if sameRef(&a, &b) {
			t.Errorf("sameRef ignores ProcessRef.%s: compare it, or the Encoder repeats stale ancestors", typ.Field(i).Name)
		}
	}
}

func TestEncoderDoesNotAllocateForRepeatedAncestors(t *testing.T) {
	ev := realisticExec()
	var enc Encoder
	buf, err := enc.AppendEvent(make([]byte, 0, 8192), ev)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if buf, err = enc.AppendEvent(buf[:0], ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Encoder.AppendEvent allocates %.1f times per event with remembered ancestors, want 0", allocs)
	}
}

func BenchmarkEncoderAppendEvent(b *testing.B) {
	ev := realisticExec()
	var enc Encoder
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = enc.AppendEvent(buf[:0], ev); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}
