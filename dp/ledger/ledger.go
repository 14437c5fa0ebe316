// Package ledger is a site's privacy ledger: a durable, append-only,
// hash-chained record of every differentially private release made from the
// site's data, with a cap on the cumulative privacy loss that the site
// enforces itself.
//
// # Format
//
// The log is JSON lines. Each line is {"hash":H,"entry":E} where E is the
// entry's JSON (kept byte for byte) and
//
//	H = hex(SHA-256("fedtune privacy ledger v1\n" || E))
//
// Every entry carries its sequence number and the previous entry's hash
// ("prev"), so editing, reordering or deleting an entry in the middle breaks
// the chain. A separate head record {"seq":N,"hash":H} names the last entry;
// it is replaced after each append, so cutting entries off the end is
// detected too. The first entry (kind "init") fixes the cap (ε, δ).
//
// # What is guaranteed
//
// Cumulative ε is computed by composing every recorded event with the PLD
// accountant of package accounting, never by adding ε's. [Ledger.Spend]
// refuses an event whose composition with the history would exceed the cap,
// and records the event before the caller touches any data. The chain detects
// accidental damage and naive edits; someone who can rewrite both files can
// rewrite history, which is why sites also sign each spend into the
// federation's audit log.
//
// Storage is behind the [Storage] interface; package ledgerfs stores a ledger
// in a directory.
package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/fedtune/fedtune/dp/accounting"
)

// Storage keeps the bytes of a ledger. Implementations must make Update
// atomic with respect to other writers and durable before it returns.
type Storage interface {
	// Load returns the log and head as stored, or an error wrapping
	// ErrNotExist when there is no ledger.
	Load() (log, head []byte, err error)
	// Update locks out other writers, loads the log and head (both empty
	// when there is no ledger) and calls fn. When fn returns a non-nil
	// record, Update durably appends it to the log and then durably replaces
	// the head with newHead. An error from fn is returned unchanged.
	Update(fn func(log, head []byte) (record, newHead []byte, err error)) error
}

var (
	// ErrNotExist means the site has no ledger yet.
	ErrNotExist = errors.New("no privacy ledger")
	// ErrExist means a ledger already exists where one was to be created.
	ErrExist = errors.New("privacy ledger already exists")
	// ErrCorrupt marks a ledger that fails verification.
	ErrCorrupt = errors.New("privacy ledger corrupt")
	// ErrBudget marks a spend refused because it would exceed the cap.
	ErrBudget = errors.New("privacy budget exceeded")
)

// CorruptError says where verification failed.
type CorruptError struct {
	Line   int // 1-based line of the log, 0 for the head record
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("privacy ledger corrupt: head: %s", e.Reason)
	}
	return fmt.Sprintf("privacy ledger corrupt: line %d: %s", e.Line, e.Reason)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// BudgetError reports a refused spend.
type BudgetError struct {
	Spent, Projected, Cap, Delta float64
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("privacy budget exceeded: this run would bring cumulative ε to %.4g, above the cap %.4g at δ=%g; spent so far %.4g, remaining %.4g",
		e.Projected, e.Cap, e.Delta, e.Spent, math.Max(0, e.Cap-e.Spent))
}

func (e *BudgetError) Unwrap() error { return ErrBudget }

// Entry kinds.
const (
	KindInit  = "init"
	KindSpend = "spend"
)

// Entry is one ledger record.
type Entry struct {
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
	Time string `json:"time"` // RFC 3339, UTC
	Kind string `json:"kind"`

	// init
	EpsilonCap float64 `json:"epsilon_cap,omitempty"`
	Delta      float64 `json:"delta,omitempty"`
	Accountant string  `json:"accountant,omitempty"`

	// spend
	RunID         string          `json:"run_id,omitempty"`
	Purpose       string          `json:"purpose,omitempty"`
	Dataset       string          `json:"dataset,omitempty"`
	DatasetSHA256 string          `json:"dataset_sha256,omitempty"`
	Records       int             `json:"records,omitempty"`
	Event         json.RawMessage `json:"event,omitempty"`
	Params        json.RawMessage `json:"params,omitempty"`
	EpsilonAfter  float64         `json:"epsilon_after,omitempty"`

	// Hash is the entry's hash (not part of the hashed bytes).
	Hash string `json:"-"`
}

type line struct {
	Hash  string          `json:"hash"`
	Entry json.RawMessage `json:"entry"`
}

type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// entryHash is SHA-256("fedtune privacy ledger v1\n" || entry bytes).
func entryHash(entry []byte) string {
	h := sha256.New()
	h.Write([]byte("fedtune privacy ledger v1\n"))
	h.Write(entry)
	return hex.EncodeToString(h.Sum(nil))
}

const genesisPrev = "0000000000000000000000000000000000000000000000000000000000000000"

// Config is the cap a site sets when it creates its ledger.
type Config struct {
	EpsilonCap float64
	Delta      float64
}

func (c Config) validate() error {
	if !(c.EpsilonCap > 0) || math.IsInf(c.EpsilonCap, 0) {
		return fmt.Errorf("epsilon cap must be finite and > 0, got %v", c.EpsilonCap)
	}
	if !(c.Delta > 0 && c.Delta < 1) {
		return fmt.Errorf("delta must be in (0, 1), got %v", c.Delta)
	}
	return nil
}

// Ledger is a verified, loaded ledger.
type Ledger struct {
	st      Storage
	entries []Entry
	cfg     Config
	events  []accounting.Event
	spent   float64
}

// Create writes a new ledger with the cap cfg. It fails with ErrExist when
// the storage already holds one.
func Create(st Storage, cfg Config, now time.Time) (*Ledger, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	err := st.Update(func(log, _ []byte) ([]byte, []byte, error) {
		if len(log) > 0 {
			return nil, nil, ErrExist
		}
		e := Entry{Seq: 0, Prev: genesisPrev, Time: now.UTC().Format(time.RFC3339Nano), Kind: KindInit,
			EpsilonCap: cfg.EpsilonCap, Delta: cfg.Delta, Accountant: string(accounting.AccountantPLD)}
		return encode(e)
	})
	if err != nil {
		return nil, err
	}
	return Open(st)
}

func encode(e Entry) (record, newHead []byte, err error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, nil, err
	}
	h := entryHash(body)
	rec, err := json.Marshal(line{Hash: h, Entry: body})
	if err != nil {
		return nil, nil, err
	}
	hd, err := json.Marshal(head{Seq: e.Seq, Hash: h})
	if err != nil {
		return nil, nil, err
	}
	return append(rec, '\n'), append(hd, '\n'), nil
}

// Open loads and verifies the ledger in st.
func Open(st Storage) (*Ledger, error) {
	log, hd, err := st.Load()
	if err != nil {
		return nil, err
	}
	return parse(st, log, hd, true)
}

// Verify checks a ledger's bytes without storage, for auditors.
func Verify(log, head []byte) (*Ledger, error) { return parse(nil, log, head, true) }

// parse verifies a ledger; withSpent also composes its events.
func parse(st Storage, log, hd []byte, withSpent bool) (*Ledger, error) {
	if len(log) == 0 {
		return nil, fmt.Errorf("%w (empty log)", ErrNotExist)
	}
	l := &Ledger{st: st}
	prev := genesisPrev
	lines := bytes.SplitAfter(log, []byte("\n"))
	for i, raw := range lines {
		n := i + 1
		if len(raw) == 0 {
			continue
		}
		if raw[len(raw)-1] != '\n' {
			return nil, &CorruptError{Line: n, Reason: "incomplete last record (interrupted write or truncation)"}
		}
		var ln line
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ln); err != nil {
			return nil, &CorruptError{Line: n, Reason: "not a ledger record: " + err.Error()}
		}
		if got := entryHash(ln.Entry); got != ln.Hash {
			return nil, &CorruptError{Line: n, Reason: fmt.Sprintf("hash mismatch: record says %.16s…, content hashes to %.16s…", ln.Hash, got)}
		}
		var e Entry
		dec = json.NewDecoder(bytes.NewReader(ln.Entry))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, &CorruptError{Line: n, Reason: "bad entry: " + err.Error()}
		}
		e.Hash = ln.Hash
		if e.Seq != uint64(len(l.entries)) {
			return nil, &CorruptError{Line: n, Reason: fmt.Sprintf("sequence number %d, expected %d (entry removed or reordered)", e.Seq, len(l.entries))}
		}
		if e.Prev != prev {
			return nil, &CorruptError{Line: n, Reason: "previous-hash link broken (entry removed, inserted or reordered)"}
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			return nil, &CorruptError{Line: n, Reason: "bad time: " + err.Error()}
		}
		switch {
		case e.Seq == 0:
			if e.Kind != KindInit {
				return nil, &CorruptError{Line: n, Reason: fmt.Sprintf("first entry is %q, expected %q", e.Kind, KindInit)}
			}
			l.cfg = Config{EpsilonCap: e.EpsilonCap, Delta: e.Delta}
			if err := l.cfg.validate(); err != nil {
				return nil, &CorruptError{Line: n, Reason: err.Error()}
			}
		case e.Kind == KindSpend:
			ev, err := accounting.UnmarshalEvent(e.Event)
			if err != nil {
				return nil, &CorruptError{Line: n, Reason: err.Error()}
			}
			l.events = append(l.events, ev)
		default:
			return nil, &CorruptError{Line: n, Reason: fmt.Sprintf("unexpected entry kind %q", e.Kind)}
		}
		l.entries = append(l.entries, e)
		prev = e.Hash
	}
	// The head names the last entry. One extra entry past the head is a
	// write interrupted between the two files: the spend is kept.
	var h head
	if err := json.Unmarshal(hd, &h); err != nil {
		return nil, &CorruptError{Reason: "unreadable: " + err.Error()}
	}
	last := l.entries[len(l.entries)-1]
	switch {
	case h.Seq > last.Seq:
		return nil, &CorruptError{Reason: fmt.Sprintf("head names entry %d but the log ends at entry %d (log truncated)", h.Seq, last.Seq)}
	case h.Seq == last.Seq && h.Hash != last.Hash:
		return nil, &CorruptError{Reason: fmt.Sprintf("head hash does not match entry %d (log rewritten)", h.Seq)}
	case h.Seq < last.Seq && (h.Seq+1 != last.Seq || l.entries[h.Seq].Hash != h.Hash):
		return nil, &CorruptError{Reason: fmt.Sprintf("head names entry %d but the log has %d entries after it", h.Seq, last.Seq-h.Seq)}
	}
	if withSpent {
		eps, err := l.compose(nil)
		if err != nil {
			return nil, err
		}
		l.spent = eps
	}
	return l, nil
}

func (l *Ledger) compose(extra accounting.Event) (float64, error) {
	evs := append([]accounting.Event(nil), l.events...)
	if extra != nil {
		evs = append(evs, extra)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	return accounting.EpsilonPLD(accounting.Composed{Events: evs}, l.cfg.Delta, nil)
}

// Config returns the cap.
func (l *Ledger) Config() Config { return l.cfg }

// Spent is the cumulative ε at the ledger's δ of all recorded events,
// composed with the PLD accountant.
func (l *Ledger) Spent() float64 { return l.spent }

// Remaining is Cap − Spent, at least 0: how much ε headroom is left, as a
// guide (ε does not compose additively; use Project to check a run).
func (l *Ledger) Remaining() float64 { return math.Max(0, l.cfg.EpsilonCap-l.spent) }

// Entries returns the verified entries, oldest first.
func (l *Ledger) Entries() []Entry { return append([]Entry(nil), l.entries...) }

// Events returns the recorded events, oldest first.
func (l *Ledger) Events() []accounting.Event { return append([]accounting.Event(nil), l.events...) }

// Project returns the cumulative ε if e were added.
func (l *Ledger) Project(e accounting.Event) (float64, error) {
	if err := accounting.Validate(e); err != nil {
		return 0, err
	}
	return l.compose(e)
}

// Check returns the projected ε of adding e, or a *BudgetError when it would
// exceed the cap.
func (l *Ledger) Check(e accounting.Event) (float64, error) {
	p, err := l.Project(e)
	if err != nil {
		return 0, err
	}
	if p > l.cfg.EpsilonCap {
		return p, &BudgetError{Spent: l.spent, Projected: p, Cap: l.cfg.EpsilonCap, Delta: l.cfg.Delta}
	}
	return p, nil
}

// Spend describes a release to record.
type Spend struct {
	// RunID identifies the run; a run is recorded at most once.
	RunID         string
	Purpose       string // e.g. "fedtune train", "round 7"
	Dataset       string
	DatasetSHA256 string
	Records       int
	Event         accounting.Event
	// Params are free-form parameters to keep with the event (JSON object).
	Params json.RawMessage
}

// Find returns the spend entry recorded for runID.
func (l *Ledger) Find(runID string) (Entry, bool) {
	for _, e := range l.entries {
		if e.Kind == KindSpend && e.RunID == runID && runID != "" {
			return e, true
		}
	}
	return Entry{}, false
}

// Spend records s, re-reading the ledger under the storage's lock so that
// concurrent runs cannot both fit under the cap. It returns the cumulative ε
// after the spend. If s.RunID is already recorded nothing is appended and
// the recorded entry's ε is returned with alreadyRecorded = true: resuming a
// run never spends twice. A spend above the cap returns a *BudgetError and
// records nothing.
func (l *Ledger) Spend(s Spend, now time.Time) (eps float64, alreadyRecorded bool, err error) {
	if l.st == nil {
		return 0, false, errors.New("ledger: read-only (opened with Verify)")
	}
	if s.RunID == "" {
		return 0, false, errors.New("ledger: spend needs a run id")
	}
	evJSON, err := accounting.MarshalEvent(s.Event)
	if err != nil {
		return 0, false, err
	}
	if len(s.Params) > 0 && !json.Valid(s.Params) {
		return 0, false, errors.New("ledger: params are not valid JSON")
	}
	var next *Ledger
	err = l.st.Update(func(log, hd []byte) ([]byte, []byte, error) {
		cur, err := parse(l.st, log, hd, false)
		if err != nil {
			return nil, nil, err
		}
		if e, ok := cur.Find(s.RunID); ok {
			eps, alreadyRecorded = e.EpsilonAfter, true
			return nil, nil, nil
		}
		p, err := cur.Check(s.Event)
		if err != nil {
			return nil, nil, err
		}
		eps = p
		last := cur.entries[len(cur.entries)-1]
		e := Entry{Seq: last.Seq + 1, Prev: last.Hash, Time: now.UTC().Format(time.RFC3339Nano), Kind: KindSpend,
			RunID: s.RunID, Purpose: s.Purpose, Dataset: s.Dataset, DatasetSHA256: s.DatasetSHA256, Records: s.Records,
			Event: evJSON, Params: s.Params, EpsilonAfter: p}
		rec, newHead, err := encode(e)
		if err != nil {
			return nil, nil, err
		}
		var ln line
		if err := json.Unmarshal(rec, &ln); err != nil {
			return nil, nil, err
		}
		e.Hash = ln.Hash
		cur.entries = append(cur.entries, e)
		cur.events = append(cur.events, s.Event)
		cur.spent = p
		next = cur
		return rec, newHead, nil
	})
	if err != nil {
		return 0, false, err
	}
	if next != nil {
		*l = *next
	} else if reloaded, err := Open(l.st); err == nil {
		*l = *reloaded
	}
	return eps, alreadyRecorded, nil
}

// MemStorage is an in-memory Storage for tests and tools.
type MemStorage struct {
	Log, Head []byte
}

// Load implements Storage.
func (m *MemStorage) Load() ([]byte, []byte, error) {
	if len(m.Log) == 0 {
		return nil, nil, ErrNotExist
	}
	return bytes.Clone(m.Log), bytes.Clone(m.Head), nil
}

// Update implements Storage.
func (m *MemStorage) Update(fn func(log, head []byte) ([]byte, []byte, error)) error {
	rec, hd, err := fn(bytes.Clone(m.Log), bytes.Clone(m.Head))
	if err != nil || rec == nil {
		return err
	}
	m.Log = append(m.Log, rec...)
	m.Head = hd
	return nil
}
