package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/pki"
	"github.com/vigil-sec/vigil/internal/store"
)

// Syslog transports.
const (
	NetworkUDP = "udp"
	NetworkTCP = "tcp"
	NetworkTLS = "tls"
)

// SDID is the structured-data id of vigil's parameters. 32473 is the
// private enterprise number reserved for documentation (RFC 5612).
const SDID = "vigil@32473"

const (
	defaultSyslogTimeout = 5 * time.Second
	defaultFacility      = 16 // local0
	// maxUDPMessage bounds a datagram; longer messages lose the end of
	// their free-text part (never the header or structured data).
	maxUDPMessage = 8192
)

var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "audit": 13,
	"console": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// SyslogConfig configures a syslog output.
type SyslogConfig struct {
	Network  string // udp (default), tcp or tls
	Address  string // host:port
	Facility int    // 0..23 (default 16, local0)
	Hostname string // HOSTNAME field (default: this host's name)
	// Timeout for connecting and for one write (default 5s).
	Timeout time.Duration
	// TLS for network tls (nil: system roots, server name from Address).
	TLS *tls.Config
}

// Syslog sends RFC 5424 messages: one per datagram over UDP, octet-counted
// frames (RFC 6587) over TCP and TLS. A broken connection is re-dialled
// on the next message (and once within the same message).
type Syslog struct {
	name string
	cfg  SyslogConfig
	log  *slog.Logger

	mu   sync.Mutex
	conn net.Conn
}

// NewSyslog returns a syslog notifier. It does not connect until the first
// alert.
func NewSyslog(name string, cfg SyslogConfig, log *slog.Logger) (*Syslog, error) {
	switch cfg.Network {
	case "":
		cfg.Network = NetworkUDP
	case NetworkUDP, NetworkTCP, NetworkTLS:
	default:
		return nil, &ConfigError{Output: name, Setting: "network", Problem: fmt.Sprintf("%q is not a syslog transport: use udp, tcp or tls", cfg.Network)}
	}
	host, port, err := net.SplitHostPort(cfg.Address)
	if err != nil || host == "" || port == "" {
		return nil, &ConfigError{Output: name, Setting: "address", Problem: fmt.Sprintf("%q is not host:port: give the receiver's address, e.g. siem.example.com:514 (6514 for tls)", cfg.Address)}
	}
	if cfg.Facility < 0 || cfg.Facility > 23 {
		return nil, &ConfigError{Output: name, Setting: "facility", Problem: fmt.Sprintf("%d is out of range 0..23", cfg.Facility)}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultSyslogTimeout
	}
	if cfg.Network == NetworkTLS {
		if cfg.TLS == nil {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		} else {
			cfg.TLS = cfg.TLS.Clone()
		}
		if cfg.TLS.ServerName == "" {
			cfg.TLS.ServerName = host
		}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Syslog{name: name, cfg: cfg, log: log.With("output", name)}, nil
}

func newSyslogFromConfig(name string, m map[string]string, opts Options) (Notifier, error) {
	s := newSettings(name, m)
	cfg := SyslogConfig{Hostname: opts.Hostname, Facility: defaultFacility}
	cfg.Address = s.str("address", "")
	if cfg.Address == "" {
		return nil, s.errorf("address", "missing: set it to the receiver's host:port, e.g. siem.example.com:514 (6514 for tls)")
	}
	cfg.Network = strings.ToLower(s.str("network", NetworkUDP))
	if f := strings.ToLower(s.str("facility", "")); f != "" {
		n, ok := facilities[f]
		if !ok {
			v, err := strconv.Atoi(f)
			if err != nil || v < 0 || v > 23 {
				return nil, s.errorf("facility", "%q is not a syslog facility: use a name such as local0..local7, auth, authpriv, daemon, or a number 0..23", f)
			}
			n = v
		}
		cfg.Facility = n
	}
	cfg.Hostname = s.str("hostname", cfg.Hostname)
	var err error
	if cfg.Timeout, err = s.duration("timeout", defaultSyslogTimeout, 100*time.Millisecond, time.Minute); err != nil {
		return nil, err
	}
	ca, err := s.readFile("caFile")
	if err != nil {
		return nil, err
	}
	if ca != nil {
		if cfg.Network != NetworkTLS {
			return nil, s.errorf("caFile", "only used with network tls (network is %s)", cfg.Network)
		}
		if cfg.TLS, err = pki.ClientTLS(ca); err != nil {
			return nil, s.errorf("caFile", "%v", err)
		}
	}
	if err := s.unknown("address", "network", "facility", "hostname", "timeout", "caFile"); err != nil {
		return nil, err
	}
	return NewSyslog(name, cfg, opts.Logger)
}

// Name implements Notifier.
func (s *Syslog) Name() string { return s.name }

// Close closes the connection (a later Notify reconnects).
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// Notify sends one message.
func (s *Syslog) Notify(ctx context.Context, a store.Alert) error {
	msg := FormatRFC5424(a, s.cfg.Facility, s.cfg.Hostname)
	var frame []byte
	if s.cfg.Network == NetworkUDP {
		frame = []byte(truncateMessage(msg, maxUDPMessage))
	} else {
		frame = []byte(strconv.Itoa(len(msg)) + " " + msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("syslog %q: alert %s not sent: %w", s.name, a.ID, err)
		}
		if s.conn != nil && s.cfg.Network != NetworkUDP && !peerStillThere(s.conn) {
			s.log.Info("syslog receiver closed the connection, reconnecting", "address", s.cfg.Address)
			s.conn.Close()
			s.conn = nil
		}
		if s.conn == nil {
			c, err := s.dial(ctx)
			if err != nil {
				return fmt.Errorf("syslog %q: alert %s not sent: %w", s.name, a.ID, err)
			}
			s.conn = c
		}
		deadline := time.Now().Add(s.cfg.Timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		s.conn.SetWriteDeadline(deadline)
		_, err := s.conn.Write(frame)
		if err == nil {
			return nil
		}
		lastErr = err
		s.log.Warn("syslog write failed, reconnecting", "address", s.cfg.Address, "err", err)
		s.conn.Close()
		s.conn = nil
	}
	return fmt.Errorf("syslog %q: alert %s not sent to %s over %s: %w", s.name, a.ID, s.cfg.Address, s.cfg.Network, lastErr)
}

func (s *Syslog) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var (
		c   net.Conn
		err error
	)
	switch s.cfg.Network {
	case NetworkTLS:
		d := &tls.Dialer{Config: s.cfg.TLS}
		c, err = d.DialContext(ctx, "tcp", s.cfg.Address)
	default:
		var d net.Dialer
		c, err = d.DialContext(ctx, s.cfg.Network, s.cfg.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s over %s: %w (check the address and network settings and that the receiver listens)", s.cfg.Address, s.cfg.Network, err)
	}
	return c, nil
}

// peerStillThere tells whether a stream connection is usable: a syslog
// receiver never sends anything, so a read that does not time out at once
// means the peer closed (or reset) the connection. Checking before a write
// avoids losing a message into a socket whose peer is gone.
func peerStillThere(c net.Conn) bool {
	if err := c.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return false
	}
	var b [1]byte
	_, err := c.Read(b[:])
	c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// syslogSeverity maps an alert severity to a syslog severity:
// High → 2 (crit), Medium → 4 (warning), Low → 5 (notice),
// Informational → 6 (info). The same levels as the Falco mapping.
func syslogSeverity(severity string) int {
	switch _, canon, _ := severityRank(severity); canon {
	case alert.SeverityHigh:
		return 2
	case alert.SeverityMedium:
		return 4
	case alert.SeverityLow:
		return 5
	default:
		return 6
	}
}

// FormatRFC5424 renders an alert as an RFC 5424 message (without
// transport framing):
//
//	<PRI>1 TIMESTAMP HOSTNAME vigil - MSGID [vigil@32473 alertId=... ...] MSG
//
// TIMESTAMP is when the alert last fired (UTC, microseconds); MSGID the
// alert type (truncated to the 32 characters RFC 5424 allows; the full
// type is the alertType parameter); MSG the display name and the key
// entities.
func FormatRFC5424(a store.Alert, facility int, hostname string) string {
	var b strings.Builder
	pri := facility*8 + syslogSeverity(a.Severity)
	b.WriteString("<" + strconv.Itoa(pri) + ">1 ")
	b.WriteString(alertTime(a).UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	b.WriteByte(' ')
	b.WriteString(headerField(hostname, 255))
	b.WriteString(" vigil - ")
	b.WriteString(headerField(a.AlertType, 32))
	b.WriteString(" [" + SDID)
	param := func(k, v string) {
		b.WriteString(" " + k + `="` + sdEscape(v) + `"`)
	}
	param("alertId", a.ID)
	param("alertType", a.AlertType)
	param("severity", a.Severity)
	param("cluster", clusterID(a))
	opt := func(k, v string) {
		if v != "" {
			param(k, v)
		}
	}
	opt("node", a.Entities.Node)
	opt("namespace", a.Entities.Namespace)
	opt("pod", a.Entities.Pod)
	opt("status", a.Status)
	if a.Count > 0 {
		param("count", strconv.Itoa(a.Count))
	}
	b.WriteString("] ")
	b.WriteString(oneLine(a.DisplayName))
	if s := summary(a); s != "" {
		b.WriteString(": " + s)
	}
	return b.String()
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n characters, "-" when empty.
func headerField(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == n {
			break
		}
		if r <= ' ' || r > '~' {
			r = '_'
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdEscape escapes a PARAM-VALUE: '"', '\' and ']' get a backslash.
func sdEscape(s string) string {
	s = oneLine(strings.ToValidUTF8(s, "\uFFFD"))
	if !strings.ContainsAny(s, "\"\\]") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == '"' || r == '\\' || r == ']' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// truncateMessage cuts msg to at most n bytes on a UTF-8 boundary.
func truncateMessage(msg string, n int) string {
	if len(msg) <= n {
		return msg
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}
