package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/audit/merkle"
	"github.com/fedtune/fedtune/audit/posixlog"
	"github.com/fedtune/fedtune/crypto/keystore"
)

// Event is what the server records; record converts it to an audit.Entry.
type Event struct {
	Kind    audit.Kind
	Round   *uint64
	Actor   string // "<type>:<name>"
	Auth    string
	Outcome audit.Outcome
	Reason  string
	Objects []audit.Object
	Refs    []uint64
	Message string
	Site    *audit.Site
}

// AuditLog is the server's view of the audit log: append an entry, read
// checkpoints, entries and proofs.
type AuditLog interface {
	// Append adds the entry and returns its index once it is durable.
	Append(ctx context.Context, e *audit.Entry) (uint64, error)
	// Size is the number of entries.
	Size() (uint64, error)
	// Checkpoint returns the newest signed checkpoint note (with the
	// cosignatures collected for it) and its size.
	Checkpoint(ctx context.Context) ([]byte, uint64, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([]merkle.Hash, error)
	InclusionProof(ctx context.Context, index, size uint64) ([]merkle.Hash, error)
	Entries(ctx context.Context, start, n uint64) ([][]byte, error)
	// AddCosignature verifies a witness's cosignature line on the
	// checkpoint of the given size and stores it.
	AddCosignature(ctx context.Context, size uint64, witness audit.VerifierKey, line []byte) error
	// AwaitCheckpoint waits until a signed checkpoint covers size entries.
	AwaitCheckpoint(ctx context.Context, size uint64) error
	// VerifierKey is the log's checkpoint verifier key.
	VerifierKey() audit.VerifierKey
	Close() error
}

func (s *Server) record(ctx context.Context, ev Event) (uint64, error) {
	actor := ev.Actor
	if actor == "" {
		actor = "service:aggregator"
	}
	auth := ev.Auth
	if auth == "" {
		auth = "local"
	}
	outcome := ev.Outcome
	if outcome == "" {
		outcome = audit.OutcomeOK
	}
	e := &audit.Entry{
		Schema: audit.SchemaVersion, Kind: ev.Kind, Federation: s.cfg.Federation, Round: ev.Round,
		Actor: audit.Actor{ID: actor, Auth: auth}, Time: audit.FormatTime(s.now()), Outcome: outcome,
		Reason: ev.Reason, Objects: ev.Objects, Refs: ev.Refs, Message: ev.Message, Site: ev.Site,
	}
	return s.audit.Append(context.WithoutCancel(ctx), e)
}

func u64p(v uint64) *uint64 { return &v }

// tesseraLog is the audit log on audit/posixlog (tessera's POSIX driver)
// in DataDir/audit, its checkpoints signed by the key store's
// audit-checkpoint key.
type tesseraLog struct {
	l    *posixlog.Log
	mu   sync.Mutex
	next uint64 // one past the highest index appended by this process
}

// CheckpointInterval is the longest an appended entry waits for a signed
// checkpoint.
const CheckpointInterval = 200 * time.Millisecond

func openAuditLog(ctx context.Context, dir, federation string, keys keystore.Store, now func() time.Time) (*tesseraLog, error) {
	vs, err := keys.Signer(ctx, keyAudit)
	if err != nil {
		return nil, err
	}
	posixlog.QuietLibraryLogs()
	opts := posixlog.Options{Origin: "fedtune.audit/" + federation, Signer: vs, CheckpointInterval: CheckpointInterval}
	var l *posixlog.Log
	if _, err := os.Stat(filepath.Join(dir, "tlog")); errors.Is(err, fs.ErrNotExist) {
		l, err = posixlog.Create(ctx, dir, opts)
		if err != nil {
			return nil, err
		}
	} else if l, err = posixlog.Open(ctx, dir, opts); err != nil {
		return nil, err
	}
	return &tesseraLog{l: l}, nil
}

func (t *tesseraLog) Append(ctx context.Context, e *audit.Entry) (uint64, error) {
	idx, err := t.l.Append(ctx, e)
	if err == nil {
		t.mu.Lock()
		t.next = max(t.next, idx+1)
		t.mu.Unlock()
	}
	return idx, err
}

// appended is one past the highest index this process appended.
func (t *tesseraLog) appended() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next
}

func (t *tesseraLog) Size() (uint64, error) { return t.l.Size(context.Background()) }

func (t *tesseraLog) Checkpoint(ctx context.Context) ([]byte, uint64, error) {
	note, err := t.l.Checkpoint(ctx)
	if err != nil {
		return nil, 0, err
	}
	n, err := audit.ParseNote(note)
	if err != nil {
		return nil, 0, err
	}
	c, err := audit.ParseCheckpoint(n.Text)
	if err != nil {
		return nil, 0, err
	}
	if c.Size == 0 {
		return nil, 0, errors.New("audit log is empty")
	}
	return note, c.Size, nil
}

func (t *tesseraLog) ConsistencyProof(ctx context.Context, from, to uint64) ([]merkle.Hash, error) {
	return t.l.ConsistencyProof(ctx, from, to)
}

func (t *tesseraLog) InclusionProof(ctx context.Context, index, size uint64) ([]merkle.Hash, error) {
	return t.l.InclusionProof(ctx, index, size)
}

func (t *tesseraLog) Entries(ctx context.Context, start, n uint64) ([][]byte, error) {
	size, err := t.l.Size(ctx)
	if err != nil {
		return nil, err
	}
	if start > size {
		return nil, fmt.Errorf("start %d beyond log size %d", start, size)
	}
	var out [][]byte
	err = t.l.Entries(ctx, start, min(start+n, size), func(_ uint64, data []byte) error {
		out = append(out, append([]byte(nil), data...))
		return nil
	})
	return out, err
}

func (t *tesseraLog) AddCosignature(ctx context.Context, size uint64, witness audit.VerifierKey, line []byte) error {
	return t.l.AddCosignature(ctx, size, witness, line)
}

func (t *tesseraLog) VerifierKey() audit.VerifierKey { return t.l.VerifierKey() }

func (t *tesseraLog) Close() error { return t.l.Close(context.Background()) }

// Export writes an audit bundle of the whole log into dir.
func (t *tesseraLog) Export(ctx context.Context, dir string, policy audit.Policy) (*audit.Bundle, error) {
	return t.l.Export(ctx, dir, 0, policy)
}

// AwaitCheckpoint waits until a signed checkpoint covers size entries.
func (t *tesseraLog) AwaitCheckpoint(ctx context.Context, size uint64) error {
	_, err := t.awaitCheckpoint(ctx, size)
	return err
}

// awaitCheckpoint returns the size of the signed checkpoint that covers size.
func (t *tesseraLog) awaitCheckpoint(ctx context.Context, size uint64) (uint64, error) {
	note, err := t.l.AwaitCheckpoint(ctx, size)
	if err != nil {
		return 0, err
	}
	n, err := audit.ParseNote(note)
	if err != nil {
		return 0, err
	}
	c, err := audit.ParseCheckpoint(n.Text)
	if err != nil {
		return 0, err
	}
	return c.Size, nil
}
