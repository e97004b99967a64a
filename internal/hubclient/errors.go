package hubclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/vigil-sec/vigil/internal/clio"
)

// Error is an error response of the hub: the HTTP status and the ARM
// error body ({"error":{"code","message"}}).
type Error struct {
	StatusCode int
	Code       string // ARM error code, e.g. ResourceNotFound
	Message    string // the hub's message (it says what to do)
	Method     string
	URL        string // without query
}

func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, code, e.StatusCode)
}

// ExitCode is the CLI exit code of the error (see clio): 404 not found,
// 401/403 unauthorized, 400 usage, anything else general.
func (e *Error) ExitCode() int {
	switch e.StatusCode {
	case http.StatusNotFound:
		return clio.ExitNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return clio.ExitUnauthorized
	case http.StatusBadRequest:
		return clio.ExitUsage
	}
	return clio.ExitGeneral
}

// IsStatus reports whether err is (or wraps) a hub *Error with status code.
func IsStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == code
}

// UnreachableError is a request that got no HTTP answer: the hub could
// not be dialled, the TLS handshake failed, or it did not answer in time.
type UnreachableError struct {
	Hub    string // the hub's base URL
	Reason string // what went wrong and what to check
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the hub at %s: %s", e.Hub, e.Reason)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// transportError classifies an error of http.Client.Do into an
// UnreachableError (wrapped with clio.ExitUnreachable) with advice, or
// returns the context's error as is when ctx ended.
func transportError(ctx context.Context, hub string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("request to the hub at %s: %w", hub, ctx.Err())
	}
	reason := ""
	var (
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		dnsErr     *net.DNSError
		opErr      *net.OpError
		netErr     net.Error
	)
	switch {
	case errors.As(err, &unknownCA):
		reason = fmt.Sprintf("its TLS certificate is not signed by a trusted CA (%v); pass the hub's CA certificate with --ca FILE (`vigil login --ca FILE`): `vigil hub` prints its path and fingerprint", err)
	case errors.As(err, &hostErr):
		reason = fmt.Sprintf("its TLS certificate does not cover this host name (%v); use a name or address the certificate covers, or give the hub that name with its TLS settings", hostErr)
	case errors.As(err, &invalidErr):
		reason = fmt.Sprintf("its TLS certificate is not valid (%v); check the hub's certificate and this machine's clock", invalidErr)
	case errors.As(err, &verifyErr):
		reason = fmt.Sprintf("its TLS certificate could not be verified (%v); check --ca and the hub's certificate", verifyErr)
	case errors.As(err, &recordErr):
		reason = "it did not answer with TLS; check the URL: the hub speaks HTTPS (https://HOST:PORT)"
	case errors.As(err, &dnsErr):
		reason = fmt.Sprintf("host name lookup failed (%v); check the host name in the hub URL", dnsErr)
	case errors.As(err, &netErr) && netErr.Timeout():
		reason = fmt.Sprintf("it did not answer in time (%v); check that the hub runs and that no firewall drops the connection", err)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		reason = fmt.Sprintf("%v; check that the hub runs (`vigil hub` or `vigil up`) and that the URL and port are right (`vigil login --hub URL`, or --hub)", opErr)
	default:
		reason = fmt.Sprintf("%v; check that the hub runs and the URL is right", err)
	}
	return clio.Exit(clio.ExitUnreachable, &UnreachableError{Hub: hub, Reason: strings.TrimSpace(reason), Err: err})
}
