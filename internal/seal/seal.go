// Package seal encrypts extension protected settings at rest. The store
// only ever sees the sealed blob; the hub opens it when it hands the
// settings to the agent that applies the extension.
//
// Ciphertext format (version 1):
//
//	byte 0       version (1)
//	bytes 1..4   key id: the first 4 bytes of SHA-256(key)
//	bytes 5..16  nonce (12 random bytes)
//	bytes 17..   AES-256-GCM ciphertext + 16-byte tag of the JSON object
//
// The version byte and key id are authenticated as additional data, so a
// blob cannot be re-labelled. The key is 32 random bytes kept base64 in a
// key file (0600) in the hub's data directory, created on first use.
// Losing the key file makes every sealed setting unreadable: back it up
// together with the database.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeyFileName is the key file's name inside the data directory.
const KeyFileName = "seal.key"

// Version is the ciphertext format version written by Seal.
const Version byte = 1

const (
	keySize   = 32
	keyIDSize = 4
	nonceSize = 12
	headerLen = 1 + keyIDSize + nonceSize
)

// Errors callers can branch on (wrapped; errors.Is works).
var (
	// ErrWrongKey: the blob was sealed with another key.
	ErrWrongKey = errors.New("sealed with a different key")
	// ErrCorrupt: the blob is truncated, altered or of an unknown version.
	ErrCorrupt = errors.New("sealed data is corrupt")
)

// Sealer seals and opens protected settings with one key. It is safe for
// concurrent use.
type Sealer struct {
	keyID [keyIDSize]byte
	aead  cipher.AEAD
}

// New returns a Sealer using the key file in dir, creating the directory
// (0700) and a new random key file (0600) when there is none. Two
// processes starting at once on the same directory end up with the same
// key (the file is created without replacing an existing one).
func New(dir string) (*Sealer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create seal key directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, KeyFileName)
	key, err := readKeyFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := createKeyFile(path); err != nil {
			return nil, err
		}
		key, err = readKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	return NewFromKey(key)
}

// NewFromKey returns a Sealer using a 32-byte key.
func NewFromKey(key []byte) (*Sealer, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("seal key is %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	s := &Sealer{aead: aead}
	sum := sha256.Sum256(key)
	copy(s.keyID[:], sum[:keyIDSize])
	return s, nil
}

// KeyID is the hex id of the key (for logs and error messages; it reveals
// nothing usable about the key).
func (s *Sealer) KeyID() string { return hex.EncodeToString(s.keyID[:]) }

// Seal encrypts settings. A nil map seals as an empty one.
func (s *Sealer) Seal(settings map[string]string) ([]byte, error) {
	if settings == nil {
		settings = map[string]string{}
	}
	plain, err := json.Marshal(settings)
	if err != nil {
		return nil, fmt.Errorf("seal protected settings: %w", err)
	}
	out := make([]byte, headerLen, headerLen+len(plain)+s.aead.Overhead())
	out[0] = Version
	copy(out[1:], s.keyID[:])
	if _, err := rand.Read(out[1+keyIDSize : headerLen]); err != nil {
		return nil, fmt.Errorf("seal protected settings: nonce: %w", err)
	}
	nonce := out[1+keyIDSize : headerLen]
	return s.aead.Seal(out, nonce, plain, out[:1+keyIDSize]), nil
}

// Open decrypts a blob made by Seal. It fails with ErrWrongKey when the
// blob was sealed with another key and ErrCorrupt when it was altered or
// truncated.
func (s *Sealer) Open(blob []byte) (map[string]string, error) {
	if len(blob) == 0 {
		return nil, fmt.Errorf("open protected settings: empty blob: %w", ErrCorrupt)
	}
	if blob[0] != Version {
		return nil, fmt.Errorf("open protected settings: unknown format version %d (this hub reads version %d; was it written by a newer vigil?): %w", blob[0], Version, ErrCorrupt)
	}
	if len(blob) < headerLen+s.aead.Overhead() {
		return nil, fmt.Errorf("open protected settings: %d bytes is too short to be sealed data: %w", len(blob), ErrCorrupt)
	}
	if id := blob[1 : 1+keyIDSize]; !bytes.Equal(id, s.keyID[:]) {
		return nil, fmt.Errorf("open protected settings: they were sealed with key %x but this hub's key is %s; restore the %s that sealed them, or set the protected settings again: %w",
			id, s.KeyID(), KeyFileName, ErrWrongKey)
	}
	nonce := blob[1+keyIDSize : headerLen]
	plain, err := s.aead.Open(nil, nonce, blob[headerLen:], blob[:1+keyIDSize])
	if err != nil {
		return nil, fmt.Errorf("open protected settings: authentication failed, the data was altered or truncated (set the protected settings again): %w", ErrCorrupt)
	}
	var m map[string]string
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, fmt.Errorf("open protected settings: decode: %v: %w", err, ErrCorrupt)
	}
	if m == nil {
		m = map[string]string{}
	}
	return m, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seal key %s: %w", path, err)
	}
	key, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(key) != keySize {
		return nil, fmt.Errorf("seal key %s is not %d base64-encoded bytes: restore it from a backup (a new key cannot open settings sealed with the old one)", path, keySize)
	}
	return key, nil
}

// createKeyFile writes a new key without ever replacing an existing file:
// the key goes to a temporary file that is then hard-linked into place.
func createKeyFile(path string) error {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate seal key: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+KeyFileName+".tmp*")
	if err != nil {
		return fmt.Errorf("create seal key %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create seal key %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create seal key %s: %w", path, err)
	}
	return nil
}
