package server

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"

	"github.com/fedtune/fedtune/audit"
)

// AuditPolicy is the verification policy of this federation: the log's
// checkpoint key, every enrolled site's cosignature key (its identity key
// under the name WitnessName(site)) and the quorum, a majority of them.
func (s *Server) AuditPolicy(ctx context.Context) (audit.Policy, error) {
	rows, err := s.st.sites(ctx)
	if err != nil {
		return audit.Policy{}, err
	}
	p := audit.Policy{Log: s.audit.VerifierKey().Encoded, Witnesses: []string{}}
	for _, r := range rows {
		if r.IdentityKey == nil {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(r.IdentityKey)
		if err != nil {
			return audit.Policy{}, fmt.Errorf("site %s identity key: %w", r.Name, err)
		}
		wk, err := audit.WitnessVerifierKey(WitnessName(r.Name), pub.(ed25519.PublicKey))
		if err != nil {
			return audit.Policy{}, err
		}
		p.Witnesses = append(p.Witnesses, wk.Encoded)
	}
	p.Quorum = len(p.Witnesses)/2 + 1
	if len(p.Witnesses) == 0 {
		p.Quorum = 0
	}
	return p, nil
}

// ExportAudit writes an audit bundle into dir: every entry up to the
// newest checkpoint that a quorum of sites cosigned (or, before any
// cosignature, the newest checkpoint), with the federation's policy. It
// returns the bundle and the exported size.
func (s *Server) ExportAudit(ctx context.Context, dir string) (*audit.Bundle, uint64, error) {
	p, err := s.AuditPolicy(ctx)
	if err != nil {
		return nil, 0, err
	}
	size, err := s.st.cosignedSize(ctx, p.Quorum)
	if err != nil {
		return nil, 0, err
	}
	tl, ok := s.audit.(*tesseraLog)
	if !ok {
		return nil, 0, fmt.Errorf("audit log does not support export")
	}
	if size == 0 {
		// No quorum yet: export everything appended so far, once a signed
		// checkpoint covers it.
		p.Quorum = 0
		if size = tl.appended(); size > 0 {
			if size, err = tl.awaitCheckpoint(ctx, size); err != nil {
				return nil, 0, err
			}
		}
	}
	b, err := tl.l.Export(ctx, dir, size, p)
	if err != nil {
		return nil, 0, err
	}
	if _, err := s.record(ctx, Event{Kind: audit.ExportPerformed, Objects: []audit.Object{{Type: "export", ID: fmt.Sprintf("size-%d", size)}}}); err != nil {
		return nil, 0, err
	}
	return b, size, nil
}

// PublishedInfo describes one published global adapter version.
type PublishedInfo struct {
	Version uint64 `json:"version"`
	Round   uint64 `json:"round"`
	Digest  string `json:"digest"`
	Dir     string `json:"dir"`
}

// Published lists the published adapter versions, oldest first.
func (s *Server) Published(ctx context.Context) ([]PublishedInfo, error) {
	rows, err := s.st.published(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]PublishedInfo, len(rows))
	for i, r := range rows {
		out[i] = PublishedInfo{Version: r.Version, Round: r.Round, Digest: r.Digest, Dir: r.Dir}
	}
	return out, nil
}
