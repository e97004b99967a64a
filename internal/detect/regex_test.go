package detect

import (
	"regexp"
	"testing"
)

func TestFastRegexpAgreesWithRegexp(t *testing.T) {
	patterns := []string{
		`^/(tmp|var/tmp|dev/shm|run/shm)/`,
		`^(nc|ncat|netcat|nc\.traditional|nc\.openbsd)$`,
		`^(python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node)$`,
		`(^| )(-o|--url)[ =][A-Za-z0-9.-]+:[0-9]{2,5}( |$)`,
		`(^|[ ;|&(/])(ba|da|z|k|a)?sh -i`,
		`/\.(bash|zsh)_?history$|/\.lesshst$`,
		`(?i)stratum[0-9]?\+(tcp|ssl)://`,
		`a?b?c?`,
		`x{2,}y`,
		`(ab|cd)(ef|gh)?ij`,
	}
	inputs := []string{"", "/tmp/x", "/usr/tmp/x", "/var/tmp/", "nc", "ncat", "nc.openbsd", "ncx", "python3.11", "perl", "pythonx",
		"xmrig -o pool.x:3333", "xmrig --url=a:1", "bash -i", "/bin/sh -i", "x;sh -i", "/root/.bash_history", "/root/.zshhistory",
		"STRATUM+TCP://x", "stratum2+ssl://", "abc", "xxy", "xy", "abij", "cdghij", "abefi", "zz"}
	for _, p := range patterns {
		f, err := compileFastRegexp(p)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(p)
		for _, in := range inputs {
			if got, want := f.MatchString(in), re.MatchString(in); got != want {
				t.Errorf("pattern %q on %q: fast %v, regexp %v (prefilter %q)", p, in, got, want, f.need)
			}
		}
	}
}
