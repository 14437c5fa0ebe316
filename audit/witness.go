package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fedtune/fedtune/audit/merkle"
)

// ErrInconsistent reports a checkpoint that does not extend the one a
// witness saw last: a smaller tree, a different root at the same size, or
// a consistency proof that does not verify. It is evidence of a forked
// (equivocating) log.
var ErrInconsistent = errors.New("audit: checkpoint is not consistent with the last one seen")

// Witness is a site's view of the log. It cosigns a checkpoint only after
// checking the log's signature and a consistency proof from the last
// checkpoint it cosigned, so two witnesses that cosigned checkpoints of
// the same log have seen one history (C2SP tlog-witness, tlog-cosignature).
//
// The state (last size and root) must survive restarts: persist
// [Witness.State] after each Cosign and restore it with [Witness.SetState].
type Witness struct {
	name   string
	signer Signer
	key    VerifierKey
	log    VerifierKey
	now    func() time.Time

	mu   sync.Mutex
	size uint64
	root merkle.Hash
}

// NewWitness returns a witness named name (its cosignature key name) that
// signs with signer (an Ed25519 key), follows the log whose checkpoint key
// is logKey, and reads time from now.
func NewWitness(name string, signer Signer, logKey VerifierKey, now func() time.Time) (*Witness, error) {
	pub, ok := signer.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("audit: witness key is %T, want Ed25519", signer.Public())
	}
	k, err := WitnessVerifierKey(name, pub)
	if err != nil {
		return nil, err
	}
	if logKey.Type != sigTypeEd25519 {
		return nil, errors.New("audit: the log key must be an Ed25519 signed-note key")
	}
	if now == nil {
		return nil, errors.New("audit: witness needs a clock")
	}
	return &Witness{name: name, signer: signer, key: k, log: logKey, now: now, root: merkle.EmptyRoot()}, nil
}

// VerifierKey returns the witness's cosignature verifier key, the one to
// list in a [Policy].
func (w *Witness) VerifierKey() VerifierKey { return w.key }

// State returns the size and root of the last checkpoint cosigned.
func (w *Witness) State() (uint64, merkle.Hash) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size, w.root
}

// SetState restores the state saved from [Witness.State].
func (w *Witness) SetState(size uint64, root merkle.Hash) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.size, w.root = size, root
}

// Cosign checks signedCheckpoint (a note signed by the log) and proof, a
// consistency proof from the last checkpoint this witness cosigned, and
// returns a cosignature/v1 signature line to append to the note. The
// first non-empty checkpoint is accepted without a proof (trust on first
// use: there is nothing to be consistent with); a proof from size 0 is
// never accepted or needed.
func (w *Witness) Cosign(ctx context.Context, signedCheckpoint []byte, proof []merkle.Hash) ([]byte, error) {
	n, err := ParseNote(signedCheckpoint)
	if err != nil {
		return nil, err
	}
	// Only the log's signature matters here; other cosignatures are ignored.
	logSigned := false
	for _, s := range n.Sigs {
		if s.Name == w.log.Name && s.KeyHash == w.log.Hash {
			if _, err := w.log.verify(n.Text, s); err != nil {
				return nil, fmt.Errorf("audit: checkpoint log signature: %w", err)
			}
			logSigned = true
		}
	}
	if !logSigned {
		return nil, fmt.Errorf("audit: checkpoint is not signed by %s", w.log.Encoded)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return nil, err
	}
	if c.Origin != w.log.Name {
		return nil, fmt.Errorf("audit: checkpoint origin %q, want %q", c.Origin, w.log.Name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case c.Size < w.size:
		return nil, fmt.Errorf("%w: size %d is smaller than the %d already cosigned", ErrInconsistent, c.Size, w.size)
	case c.Size == w.size:
		if c.Root != w.root {
			return nil, fmt.Errorf("%w: size %d with root %x, but root %x was cosigned", ErrInconsistent, c.Size, c.Root[:], w.root[:])
		}
		if len(proof) != 0 {
			return nil, fmt.Errorf("%w: non-empty proof between equal sizes", ErrInconsistent)
		}
	case w.size == 0:
		if len(proof) != 0 {
			return nil, fmt.Errorf("%w: a consistency proof from size 0 is not accepted", ErrInconsistent)
		}
	default:
		if err := merkle.VerifyConsistency(w.size, c.Size, w.root, c.Root, proof); err != nil {
			return nil, fmt.Errorf("%w: from size %d to %d: %v", ErrInconsistent, w.size, c.Size, err)
		}
	}
	line, err := Cosign(ctx, w.name, w.signer, n.Text, w.now())
	if err != nil {
		return nil, err
	}
	w.size, w.root = c.Size, c.Root
	return line, nil
}

// Policy names the keys a verifier trusts: the log's checkpoint key, the
// witnesses' cosignature keys, and how many distinct witnesses must
// cosign the newest checkpoint for it to be final.
type Policy struct {
	Log       string   `json:"log"`       // the log's verifier key
	Witnesses []string `json:"witnesses"` // cosignature/v1 verifier keys
	Quorum    int      `json:"quorum"`    // N of the M witnesses
}

// ParsedPolicy is a validated [Policy].
type ParsedPolicy struct {
	Log       VerifierKey
	Witnesses []VerifierKey
	Quorum    int
}

// ParsePolicy decodes and validates a policy file's contents.
func ParsePolicy(b []byte) (*ParsedPolicy, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return p.Parse()
}

// Parse validates the policy.
func (p Policy) Parse() (*ParsedPolicy, error) {
	lk, err := ParseVerifierKey(p.Log)
	if err != nil {
		return nil, fmt.Errorf("policy: log: %w", err)
	}
	if lk.Type != sigTypeEd25519 {
		return nil, errors.New("policy: log: want an Ed25519 (type 0x01) key")
	}
	pp := &ParsedPolicy{Log: lk, Quorum: p.Quorum}
	names := map[string]bool{lk.Name: true}
	for i, s := range p.Witnesses {
		k, err := ParseVerifierKey(s)
		if err != nil {
			return nil, fmt.Errorf("policy: witnesses[%d]: %w", i, err)
		}
		if k.Type != sigTypeCosignature {
			return nil, fmt.Errorf("policy: witnesses[%d]: want a cosignature/v1 (type 0x04) key", i)
		}
		if names[k.Name] {
			return nil, fmt.Errorf("policy: witnesses[%d]: name %q used twice", i, k.Name)
		}
		names[k.Name] = true
		pp.Witnesses = append(pp.Witnesses, k)
	}
	if p.Quorum < 0 || p.Quorum > len(p.Witnesses) {
		return nil, fmt.Errorf("policy: quorum %d, want 0..%d (the number of witnesses)", p.Quorum, len(p.Witnesses))
	}
	return pp, nil
}

// Policy returns the serializable form.
func (pp *ParsedPolicy) Policy() Policy {
	p := Policy{Log: pp.Log.Encoded, Quorum: pp.Quorum, Witnesses: []string{}}
	for _, w := range pp.Witnesses {
		p.Witnesses = append(p.Witnesses, w.Encoded)
	}
	return p
}
