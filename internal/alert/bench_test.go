package alert

import (
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

func BenchmarkFromMatch(b *testing.B) {
	ev := baseEvent(event.KindExec)
	b.ReportAllocs()
	for b.Loop() {
		FromMatch("r", "n", "d", SeverityHigh, "stable", []string{"Execution"}, []string{"T1496"}, nil, ev)
	}
}

func BenchmarkAggregatorRepeat(b *testing.B) {
	a := NewAggregator(time.Hour, func(*Alert) {})
	ev := baseEvent(event.KindExec)
	ev.Time = time.Now()
	b.ReportAllocs()
	for b.Loop() {
		a.Add(FromMatch("r", "n", "d", SeverityHigh, "stable", nil, nil, nil, ev))
	}
}
