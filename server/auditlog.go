package server

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/audit/merkle"
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
	// AddCosignature attaches a witness's cosignature line to the
	// checkpoint of the given size.
	AddCosignature(ctx context.Context, size uint64, line []byte) error
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

// fileLog is an append-only audit log in one directory: entries.jsonl (one
// leaf's canonical JSON per line, fsynced before Append returns) and the
// latest signed checkpoint with its cosignatures. The Merkle tree is
// RFC 6962 (audit/merkle); checkpoints are C2SP signed notes.
type fileLog struct {
	mu     sync.Mutex
	dir    string
	f      *os.File
	tree   merkle.Tree
	leaves [][]byte
	signer *audit.NoteSigner
	origin string
	now    func() time.Time
	cosigs map[uint64][][]byte
	cpSize uint64
	cpNote []byte
}

func openAuditLog(ctx context.Context, dir, federation string, keys keystore.Store, now func() time.Time) (*fileLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	vs, err := keys.Signer(ctx, keyAudit)
	if err != nil {
		return nil, err
	}
	origin := "fedtune.audit/" + federation
	ns, err := audit.NewNoteSigner(ctx, origin, vs)
	if err != nil {
		return nil, err
	}
	l := &fileLog{dir: dir, signer: ns, origin: origin, now: now, cosigs: map[uint64][][]byte{}}
	path := filepath.Join(dir, "entries.jsonl")
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<16), audit.MaxEntrySize*2)
		line := 0
		for sc.Scan() {
			line++
			data, err := base64.StdEncoding.DecodeString(sc.Text())
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s:%d: %w", path, line, err)
			}
			if _, err := audit.ParseEntry(data); err != nil {
				f.Close()
				return nil, fmt.Errorf("%s:%d: %w", path, line, err)
			}
			l.tree.AppendLeaf(data)
			l.leaves = append(l.leaves, data)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

func (l *fileLog) Append(_ context.Context, e *audit.Entry) (uint64, error) {
	data, err := e.Marshal()
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	line := base64.StdEncoding.AppendEncode(nil, data)
	line = append(line, '\n')
	if _, err := l.f.Write(line); err != nil {
		return 0, err
	}
	if err := l.f.Sync(); err != nil {
		return 0, err
	}
	idx := l.tree.Size()
	l.tree.AppendLeaf(data)
	l.leaves = append(l.leaves, data)
	return idx, nil
}

func (l *fileLog) Size() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.Size(), nil
}

func (l *fileLog) Checkpoint(context.Context) ([]byte, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := l.tree.Size()
	if size == 0 {
		return nil, 0, errors.New("audit log is empty")
	}
	if l.cpSize != size {
		root, err := l.tree.Root(size)
		if err != nil {
			return nil, 0, err
		}
		text := audit.Checkpoint{Origin: l.origin, Size: size, Root: root}.Marshal()
		sig, err := l.signer.Sign(text)
		if err != nil {
			return nil, 0, err
		}
		n := &audit.Note{Text: text, Sigs: []audit.NoteSignature{{Name: l.origin, KeyHash: l.signer.KeyHash(), Sig: sig}}}
		l.cpSize, l.cpNote = size, n.Marshal()
		if err := writeFileAtomic(filepath.Join(l.dir, "checkpoint"), l.cpNote, 0o644); err != nil {
			return nil, 0, err
		}
	}
	note := append([]byte(nil), l.cpNote...)
	for _, c := range l.cosigs[size] {
		note = append(note, c...)
	}
	return note, size, nil
}

func (l *fileLog) ConsistencyProof(_ context.Context, from, to uint64) ([]merkle.Hash, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if to > l.tree.Size() || from > to {
		return nil, fmt.Errorf("consistency proof %d→%d outside log of size %d", from, to, l.tree.Size())
	}
	return merkle.ConsistencyProof(&l.tree, from, to)
}

func (l *fileLog) InclusionProof(_ context.Context, index, size uint64) ([]merkle.Hash, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size > l.tree.Size() || index >= size {
		return nil, fmt.Errorf("inclusion proof of %d in %d outside log of size %d", index, size, l.tree.Size())
	}
	return merkle.InclusionProof(&l.tree, index, size)
}

func (l *fileLog) Entries(_ context.Context, start, n uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := uint64(len(l.leaves))
	if start > size {
		return nil, fmt.Errorf("start %d beyond log size %d", start, size)
	}
	end := min(start+n, size)
	return append([][]byte(nil), l.leaves[start:end]...), nil
}

func (l *fileLog) AddCosignature(_ context.Context, size uint64, line []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size != l.cpSize {
		return fmt.Errorf("cosignature for size %d, current checkpoint is %d", size, l.cpSize)
	}
	l.cosigs[size] = append(l.cosigs[size], append([]byte(nil), line...))
	f, err := os.OpenFile(filepath.Join(l.dir, "cosignatures"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%d %s", size, line); err != nil {
		return err
	}
	return f.Sync()
}

func (l *fileLog) VerifierKey() audit.VerifierKey { return l.signer.VerifierKey() }

func (l *fileLog) Close() error { return l.f.Close() }

var _ = ed25519.PublicKeySize
