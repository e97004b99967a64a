package clio

import (
	"errors"
	"fmt"
)

// Exit codes of every vigil verb. Scripts branch on them.
const (
	ExitOK           = 0 // success
	ExitGeneral      = 1 // any other failure
	ExitUsage        = 2 // bad flags, arguments or --query
	ExitNotFound     = 3 // the named resource does not exist
	ExitUnauthorized = 4 // no, bad or insufficient credentials (HTTP 401/403)
	ExitUnreachable  = 5 // the hub could not be reached
)

// ExitError carries the exit code a verb's failure maps to.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exit wraps err with an exit code (nil stays nil).
func Exit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// Errorf is fmt.Errorf with an exit code.
func Errorf(code int, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// ExitCode is the process exit code for err: 0 for nil, the code of the
// outermost ExitError in its chain, else ExitGeneral.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitGeneral
}
