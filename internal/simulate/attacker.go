package simulate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// AttackerConfig configures the attacker's servers (`vigil simulate
// attacker-server`, run inside the attacker container).
type AttackerConfig struct {
	// VictimURL is the victim's web-shell endpoint the relay posts to.
	VictimURL string
	// Payload is the file served as the fake miner and the drift binary.
	Payload string
	Logger  *slog.Logger
}

// ServeAttacker runs, until ctx ends, everything the attacker side of the
// simulation answers inside its network namespace:
//
//   - :80   the fake miner and drift binary (/xmrig, /kube-tool), the cloud
//     metadata stub (on 169.254.169.254) and the threat-intel beacon;
//   - :443  a stub Kubernetes API (self-signed TLS) answering a
//     SelfSubjectRulesReview with a harmless fake;
//   - :53   a stub DNS server: kubernetes.default.svc* and the attacker's
//     names resolve inside the simulation network, *.vigil-simulation.test
//     to the threat-intel test address, anything else NXDOMAIN;
//   - :9009 the command relay: POST /deliver with a shell command as body;
//     the attacker posts it to the victim's web shell and returns its
//     output.
func ServeAttacker(ctx context.Context, cfg AttackerConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	payload, err := os.ReadFile(cfg.Payload)
	if err != nil {
		return fmt.Errorf("read the payload to serve %s: %w", cfg.Payload, err)
	}
	cert, err := selfSignedCert()
	if err != nil {
		return err
	}
	web := http.NewServeMux()
	web.HandleFunc("/xmrig", func(w http.ResponseWriter, _ *http.Request) { servePayload(w, payload) })
	web.HandleFunc("/kube-tool", func(w http.ResponseWriter, _ *http.Request) { servePayload(w, payload) })
	web.HandleFunc("/metadata/identity/oauth2/token", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"vigil-simulation-fake-imds-token","expires_in":"3599","token_type":"Bearer","resource":"https://management.azure.com/"}`+"\n")
	})
	web.HandleFunc("/latest/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "vigil-simulation-fake-role\n")
	})
	web.HandleFunc("/beacon", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "vigil simulation: threat-intel test beacon (harmless)\n")
	})
	api := http.NewServeMux()
	api.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"SelfSubjectRulesReview","apiVersion":"authorization.k8s.io/v1","status":{"resourceRules":[{"verbs":["get"],"apiGroups":[""],"resources":["pods"]}],"incomplete":true,"evaluationError":"vigil simulation stub API"}}`+"\n")
	})
	victim := &http.Client{Timeout: 60 * time.Second}
	relay := http.NewServeMux()
	relay.HandleFunc("POST /deliver", func(w http.ResponseWriter, r *http.Request) {
		cmd, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read command: "+err.Error(), http.StatusBadRequest)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, cfg.VictimURL, strings.NewReader(string(cmd)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set("Content-Type", "text/plain")
		resp, err := victim.Do(req)
		if err != nil {
			http.Error(w, "deliver to the victim's web shell: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			http.Error(w, fmt.Sprintf("the victim's web shell answered %s: %s", resp.Status, out), http.StatusBadGateway)
			return
		}
		_, _ = w.Write(out)
	})
	relay.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	serve := func(name, addr string, h http.Handler, tlsCert *tls.Certificate) {
		srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			errc <- fmt.Errorf("%s: listen on %s: %w", name, addr, err)
			return
		}
		if tlsCert != nil {
			l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{*tlsCert}})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
		go func() {
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
		}()
	}
	serve("attacker web server", ":80", web, nil)
	serve("stub Kubernetes API", ":443", api, &cert)
	serve("command relay", fmt.Sprintf(":%d", controlPort), relay, nil)
	pc, err := net.ListenPacket("udp", ":53")
	if err != nil {
		return fmt.Errorf("stub DNS: listen on :53: %w", err)
	}
	go func() { <-ctx.Done(); pc.Close() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveDNS(pc, log)
	}()
	log.Info("attacker servers running", "victim", cfg.VictimURL)
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	wg.Wait()
	return err
}

func servePayload(w http.ResponseWriter, payload []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(payload)
}

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate the stub API's key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kubernetes.default.svc (vigil simulation stub)"},
		DNSNames:     []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses:  []net.IP{net.ParseIP(apiServiceIP)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create the stub API's certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// dnsAnswer is the stub DNS server's view of a name: its IPv4 address, or
// false for NXDOMAIN.
func dnsAnswer(name string) (netip.Addr, bool) {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	switch {
	case n == "kubernetes" || strings.HasPrefix(n, "kubernetes.default"):
		return netip.MustParseAddr(apiServiceIP), true
	case n == "attacker" || n == "attacker.vigil-simulation":
		return netip.MustParseAddr(attackerIP), true
	case n == "victim":
		return netip.MustParseAddr(victimIP), true
	case n == "vigil-simulation.test" || strings.HasSuffix(n, ".vigil-simulation.test"):
		return netip.MustParseAddr(tiIP), true
	}
	return netip.Addr{}, false
}

// serveDNS answers A queries (and answers other types with no records)
// until pc is closed.
func serveDNS(pc net.PacketConn, log *slog.Logger) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		resp, err := dnsReply(buf[:n])
		if err != nil {
			log.Debug("stub DNS: ignoring a malformed query", "from", from, "err", err)
			continue
		}
		_, _ = pc.WriteTo(resp, from)
	}
}

// dnsReply builds the response to one query message.
func dnsReply(q []byte) ([]byte, error) {
	if len(q) < 12 {
		return nil, fmt.Errorf("message of %d bytes is shorter than a DNS header", len(q))
	}
	if binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, fmt.Errorf("want exactly one question")
	}
	// The question: labels, then type and class.
	i := 12
	var labels []string
	for {
		if i >= len(q) {
			return nil, fmt.Errorf("truncated name")
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l&0xc0 != 0 || i+l > len(q) {
			return nil, fmt.Errorf("bad label")
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil, fmt.Errorf("truncated question")
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	question := q[12 : i+4]
	addr, ok := dnsAnswer(strings.Join(labels, "."))

	resp := make([]byte, 12, 12+len(question)+16)
	copy(resp, q[:2])                                 // id
	flags := uint16(0x8000 | 0x0400)                  // response, authoritative
	flags |= binary.BigEndian.Uint16(q[2:4]) & 0x0100 // copy RD
	if !ok {
		flags |= 3 // NXDOMAIN
	}
	binary.BigEndian.PutUint16(resp[2:4], flags)
	binary.BigEndian.PutUint16(resp[4:6], 1)
	answers := 0
	if ok && qtype == 1 {
		answers = 1
	}
	binary.BigEndian.PutUint16(resp[6:8], uint16(answers))
	resp = append(resp, question...)
	if answers == 1 {
		a := addr.As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4)
		resp = append(resp, a[:]...)
	}
	return resp, nil
}
