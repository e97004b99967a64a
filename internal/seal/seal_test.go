package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestSealedSettingsOpenToTheSameValues(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cases := []map[string]string{
		{"hubToken": "vgl_secret", "proxyPassword": "p@ss w0rd\n\"quoted\""},
		{},
		{"unicode": "ключ 🔑"},
	}
	for _, in := range cases {
		blob, err := s.Seal(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range in {
			if v != "" && bytes.Contains(blob, []byte(v)) {
				t.Fatalf("sealed blob contains the plaintext %q", v)
			}
		}
		out, err := s.Open(blob)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(in) {
			t.Fatalf("opened %v, sealed %v", out, in)
		}
		for k, v := range in {
			if out[k] != v {
				t.Fatalf("%s: opened %q, sealed %q", k, out[k], v)
			}
		}
	}
	// A nil map seals as empty.
	blob, err := s.Seal(nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.Open(blob); err != nil || m == nil || len(m) != 0 {
		t.Fatalf("nil map: %v, %v", m, err)
	}
}

func TestSealingTwiceGivesDifferentCiphertexts(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Seal(map[string]string{"k": "v"})
	b, _ := s.Seal(map[string]string{"k": "v"})
	if bytes.Equal(a, b) {
		t.Fatal("the same settings sealed twice gave identical blobs (nonce reuse)")
	}
	if a[0] != Version {
		t.Fatalf("version byte %d", a[0])
	}
}

func TestTheKeyFileIsCreatedPrivateAndReusedByTheNextStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o, want 600", fi.Mode().Perm())
	}
	blob, err := first.Seal(map[string]string{"token": "t"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if second.KeyID() != first.KeyID() {
		t.Fatalf("restart changed the key: %s -> %s", first.KeyID(), second.KeyID())
	}
	m, err := second.Open(blob)
	if err != nil || m["token"] != "t" {
		t.Fatalf("restarted sealer: %v, %v", m, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want only the key file", len(entries))
	}
}

func TestProcessesStartingTogetherAgreeOnOneKey(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := New(dir)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = s.KeyID()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("sealers started together use different keys: %v", ids)
		}
	}
}

func TestOpeningFailsClearly(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good, err := s.Seal(map[string]string{"token": "secret"})
	if err != nil {
		t.Fatal(err)
	}
	fromOther, err := other.Seal(map[string]string{"token": "secret"})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	cases := []struct {
		name    string
		blob    []byte
		want    error
		mention string
	}{
		{"sealed with another key", fromOther, ErrWrongKey, other.KeyID()},
		{"ciphertext altered", flip(len(good) - 1), ErrCorrupt, "altered"},
		{"nonce altered", flip(6), ErrCorrupt, "altered"},
		{"key id altered", flip(2), ErrWrongKey, "seal.key"},
		{"unknown version", append([]byte{9}, good[1:]...), ErrCorrupt, "version 9"},
		{"truncated", good[:20], ErrCorrupt, "too short"},
		{"empty", nil, ErrCorrupt, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Open(tc.blob)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("err = %q, want it to mention %q", err, tc.mention)
			}
		})
	}
}

func TestADamagedKeyFileIsReportedNotReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KeyFileName)
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(dir)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want it to name %s", err, path)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "not a key\n" {
		t.Fatal("the damaged key file was overwritten")
	}
}

func TestNewFromKeyNeeds32Bytes(t *testing.T) {
	if _, err := NewFromKey(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
	if _, err := NewFromKey(make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
}
