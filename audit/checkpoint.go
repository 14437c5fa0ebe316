package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fedtune/fedtune/audit/merkle"
)

// Checkpoint is the body of a C2SP tlog-checkpoint
// (https://c2sp.org/tlog-checkpoint): the origin, the tree size and the
// RFC 6962 root hash, then optional extension lines.
type Checkpoint struct {
	Origin     string
	Size       uint64
	Root       merkle.Hash
	Extensions []string
}

// Marshal returns the checkpoint text: "<origin>\n<size>\n<base64 root>\n"
// and one line per extension.
func (c Checkpoint) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
	for _, e := range c.Extensions {
		b.WriteString(e + "\n")
	}
	return b.Bytes()
}

// ParseCheckpoint parses a checkpoint text strictly: a non-empty origin,
// the size in decimal without leading zeros, the root as canonical
// standard base64 of 32 bytes, and non-empty extension lines.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return Checkpoint{}, errors.New("checkpoint: text does not end in a newline")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("checkpoint: %d lines, want at least 3 (origin, size, root hash)", len(lines))
	}
	var c Checkpoint
	c.Origin = lines[0]
	if c.Origin == "" {
		return Checkpoint{}, errors.New("checkpoint: line 1: empty origin")
	}
	s := lines[1]
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return Checkpoint{}, fmt.Errorf("checkpoint: line 2: tree size %q is not a decimal number without leading zeros", s)
	}
	size, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: line 2: tree size %q: %v", s, err)
	}
	c.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != merkle.HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return Checkpoint{}, fmt.Errorf("checkpoint: line 3: root hash %q is not canonical base64 of 32 bytes", lines[2])
	}
	c.Root = merkle.Hash(root)
	for i, e := range lines[3:] {
		if e == "" {
			return Checkpoint{}, fmt.Errorf("checkpoint: line %d: empty extension line", i+4)
		}
		c.Extensions = append(c.Extensions, e)
	}
	return c, nil
}

// Cosignature is a verified witness cosignature on a checkpoint.
type Cosignature struct {
	Witness string // the witness key name
	Time    uint64 // seconds since the Unix epoch, as signed by the witness
}

// SignedCheckpoint is a checkpoint whose log signature verified.
type SignedCheckpoint struct {
	Checkpoint
	Note         *Note
	Cosignatures []Cosignature // valid cosignatures from known witnesses, one per witness
}

// OpenCheckpoint parses a signed checkpoint note, checks the log's
// signature with logKey and every cosignature with the matching key in
// witnesses. Any signature that does not verify, any signature by a key
// that is neither the log's nor a listed witness's, a missing log
// signature and a checkpoint origin other than the log key's name are
// errors: a verifier of an audit bundle accepts nothing it cannot check.
func OpenCheckpoint(b []byte, logKey VerifierKey, witnesses []VerifierKey) (*SignedCheckpoint, error) {
	n, err := ParseNote(b)
	if err != nil {
		return nil, err
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return nil, err
	}
	if c.Origin != logKey.Name {
		return nil, fmt.Errorf("checkpoint: origin %q, want %q", c.Origin, logKey.Name)
	}
	sc := &SignedCheckpoint{Checkpoint: c, Note: n}
	logSigned := false
	seen := map[string]bool{}
	for _, s := range n.Sigs {
		if s.Name == logKey.Name && s.KeyHash == logKey.Hash {
			if _, err := logKey.verify(n.Text, s); err != nil {
				return nil, fmt.Errorf("signed note: line %d: log signature: %w", s.Line, err)
			}
			logSigned = true
			continue
		}
		var wk *VerifierKey
		for i := range witnesses {
			if witnesses[i].Name == s.Name && witnesses[i].Hash == s.KeyHash {
				wk = &witnesses[i]
			}
		}
		if wk == nil {
			return nil, fmt.Errorf("signed note: line %d: signature by unknown key %s+%08x", s.Line, s.Name, s.KeyHash)
		}
		t, err := wk.verify(n.Text, s)
		if err != nil {
			return nil, fmt.Errorf("signed note: line %d: cosignature of witness %s: %w", s.Line, s.Name, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("signed note: line %d: second cosignature of witness %s", s.Line, s.Name)
		}
		seen[s.Name] = true
		sc.Cosignatures = append(sc.Cosignatures, Cosignature{Witness: s.Name, Time: t})
	}
	if !logSigned {
		return nil, fmt.Errorf("checkpoint: no signature by the log key %s", logKey.Encoded)
	}
	return sc, nil
}
