package hubclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ConfigEnv names the environment variable that overrides where the
// signed-in CLI's configuration lives.
const ConfigEnv = "VIGIL_CONFIG"

// DefaultSubscription is the subscription verbs use when neither a flag
// nor the configuration names one.
const DefaultSubscription = "default"

// Config is what `vigil login` (or `vigil up`) saves so that later
// commands reach the hub without flags.
type Config struct {
	// Hub is the hub's base URL, e.g. https://127.0.0.1:8443.
	Hub string `json:"hub"`
	// Token is the bearer token (vgl_...).
	Token string `json:"token"`
	// CAPEM is the CA certificate (PEM) the hub's certificate must be
	// signed by; empty means the system's roots.
	CAPEM string `json:"caPEM,omitempty"`
	// Subscription is the default subscription of the verbs (empty:
	// DefaultSubscription).
	Subscription string `json:"subscription,omitempty"`
}

// ErrNoConfig is returned (wrapped) by Load and LoadConfig when no
// configuration file exists: nobody has logged in yet.
var ErrNoConfig = errors.New("not logged in")

// ConfigPath is where the configuration lives: $VIGIL_CONFIG, else
// ~/.vigil/cli.json.
func ConfigPath() (string, error) {
	if p := strings.TrimSpace(os.Getenv(ConfigEnv)); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the CLI configuration: %w (set %s to a file path)", err, ConfigEnv)
	}
	return filepath.Join(home, ".vigil", "cli.json"), nil
}

// Load reads the configuration from ConfigPath.
func Load() (Config, error) {
	p, err := ConfigPath()
	if err != nil {
		return Config{}, err
	}
	return LoadConfig(p)
}

// Save writes c to ConfigPath (see SaveConfig).
func Save(c Config) error {
	p, err := ConfigPath()
	if err != nil {
		return err
	}
	return SaveConfig(p, c)
}

// LoadConfig reads a configuration file. A missing file is ErrNoConfig
// (wrapped, with the path and what to do).
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("%w: %s does not exist; run `vigil login --hub URL --token TOKEN` (or `vigil up`) first, or pass --hub and --token", ErrNoConfig, path)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read CLI configuration %s: %w", path, err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("CLI configuration %s is not valid: %v; run `vigil login` again to rewrite it", path, err)
	}
	return c, nil
}

// SaveConfig writes c to path: the directory is created 0700 when missing
// and the file is written 0600 through a temporary file and a rename, so a
// reader never sees half a file and the token is never readable by
// others, not even for a moment. `vigil up` calls it to sign the local
// CLI in.
func SaveConfig(path string, c Config) error {
	if c.Hub == "" || c.Token == "" {
		return errors.New("save CLI configuration: hub URL and token are required")
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode CLI configuration: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create CLI configuration directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write CLI configuration %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	// CreateTemp creates 0600 already; make sure regardless of umask.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write CLI configuration %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write CLI configuration %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write CLI configuration %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write CLI configuration %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write CLI configuration %s: %w", path, err)
	}
	return nil
}
