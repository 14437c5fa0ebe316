package secagg

import (
	"errors"
	"fmt"
)

// Classes of failure. Errors returned by this package wrap one of these, so
// callers can test with errors.Is.
var (
	// ErrMalformed: a message does not decode.
	ErrMalformed = errors.New("malformed message")
	// ErrBadSignature: a signature does not verify under the roster key.
	ErrBadSignature = errors.New("bad signature")
	// ErrWrongRound: a message names another round.
	ErrWrongRound = errors.New("message for another round")
	// ErrWrongStage: a message arrived before its stage opened.
	ErrWrongStage = errors.New("message for another stage")
	// ErrLate: a message arrived after its stage was finished.
	ErrLate = errors.New("message arrived after its stage was finished")
	// ErrDuplicate: a site sent the same stage's message twice.
	ErrDuplicate = errors.New("duplicate message")
	// ErrNotEligible: the sender is not in the set allowed at this stage.
	ErrNotEligible = errors.New("site not eligible at this stage")
	// ErrInvalid: a well-formed, correctly signed message breaks the protocol.
	ErrInvalid = errors.New("protocol violation")
	// ErrTooFewSites: fewer than T sites remain; the round aborts.
	ErrTooFewSites = errors.New("fewer sites than the threshold")
	// ErrInconsistent: the server showed this site a view that contradicts
	// what other sites signed; an honest site aborts.
	ErrInconsistent = errors.New("inconsistent view from the server")
	// ErrAborted: the state machine already aborted.
	ErrAborted = errors.New("round aborted")
)

// AbortError says why a state machine stopped. It wraps the class of failure
// (one of the sentinel errors).
type AbortError struct {
	Stage  Stage  // the stage being finished or handled when it aborted
	Site   SiteID // the client that aborted; 0 for the server
	Reason string // human-readable detail
	Err    error  // class of failure
}

func (e *AbortError) Error() string {
	who := "server"
	if e.Site != 0 {
		who = fmt.Sprintf("site %d", e.Site)
	}
	return fmt.Sprintf("secagg: %s aborted in %v: %s: %v", who, e.Stage, e.Reason, e.Err)
}

func (e *AbortError) Unwrap() []error { return []error{e.Err, ErrAborted} }
