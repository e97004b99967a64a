package cli

import "github.com/vigil-sec/vigil/internal/sensorcmd"

// parseSize accepts a byte count with an optional binary suffix
// (K/KiB, M/MiB, G/GiB): "4MiB", "512k", "4194304".
func parseSize(s string) (int, error) { return sensorcmd.ParseSize(s) }
