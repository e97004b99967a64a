package sqlstore

import (
	"testing"
	"testing/fstest"
)

func TestMigrationsLoadInVersionOrder(t *testing.T) {
	fsys := fstest.MapFS{
		"0010_later.sql":   {Data: []byte("B")},
		"0002_second.sql":  {Data: []byte("A")},
		"README.md":        {Data: []byte("not a migration")},
		"0001_initial.sql": {Data: []byte("0")},
	}
	ms, err := LoadMigrations(fsys)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name)
	}
	if len(ms) != 3 || ms[0].Version != 1 || ms[1].Version != 2 || ms[2].Version != 10 || got[2] != "later" || ms[1].SQL != "A" {
		t.Fatalf("migrations %+v, want versions 1, 2, 10 named initial, second, later", ms)
	}
	if v, err := NewestVersion(fsys); err != nil || v != 10 {
		t.Fatalf("newest version %d, %v; want 10", v, err)
	}
}

func TestBadlyNamedOrDuplicateMigrationsAreRejected(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"no version":        {"initial.sql": {}},
		"version zero":      {"0000_zero.sql": {}},
		"not a number":      {"v1_initial.sql": {}},
		"duplicate version": {"0001_a.sql": {}, "01_b.sql": {}},
	} {
		if _, err := LoadMigrations(fsys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewestVersion(fstest.MapFS{}); err == nil {
		t.Errorf("no migrations: accepted")
	}
}
