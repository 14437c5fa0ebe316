package posixlog

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/audit/merkle"
)

type edSigner struct{ k ed25519.PrivateKey }

func (s edSigner) Public() crypto.PublicKey { return s.k.Public() }
func (s edSigner) Sign(_ context.Context, m []byte) ([]byte, error) {
	return ed25519.Sign(s.k, m), nil
}

func newSigner(t testing.TB) edSigner {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return edSigner{k}
}

var t0 = time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)

func review(i int) *audit.Entry {
	return &audit.Entry{
		Schema: audit.SchemaVersion, Kind: audit.ReviewPerformed, Federation: "fed-1",
		Actor: audit.Actor{ID: "user:officer-7", Auth: "local"}, Time: audit.FormatTime(t0.Add(time.Duration(i) * time.Second)),
		Outcome: audit.OutcomeOK, Message: fmt.Sprintf("review %d", i),
	}
}

func TestAppendProofsExport(t *testing.T) {
	QuietLibraryLogs()
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Create(ctx, dir, Options{Origin: "fedtune.test/audit", Signer: newSigner(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	var tree merkle.Tree
	const n = 300 // more than one entry bundle and one tile
	var futures []func() (uint64, error)
	var leaves [][]byte
	for i := 0; i < n; i++ {
		e := review(i)
		data, _ := e.Marshal()
		leaves = append(leaves, data)
		if i < 5 {
			idx, err := l.Append(ctx, e)
			if err != nil || idx != uint64(i) {
				t.Fatalf("Append %d = %d, %v", i, idx, err)
			}
			continue
		}
		futures = append(futures, l.AppendAsync(ctx, e))
	}
	seen := map[uint64]bool{}
	for _, f := range futures {
		idx, err := f()
		if err != nil {
			t.Fatal(err)
		}
		seen[idx] = true
	}
	if len(seen) != n-5 {
		t.Fatalf("%d distinct indices", len(seen))
	}
	cpb, err := l.AwaitCheckpoint(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint(cpb, l.VerifierKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != n {
		t.Fatalf("checkpoint size %d", cp.Size)
	}
	// Leaves as stored, in log order.
	stored := make([][]byte, n)
	if err := l.Entries(ctx, 0, n, func(i uint64, d []byte) error { stored[i] = d; return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range stored {
		tree.AppendLeaf(stored[i])
	}
	root, _ := tree.Root(n)
	if root != cp.Root {
		t.Fatalf("checkpoint root %x, recomputed %x", cp.Root, root)
	}
	for _, idx := range []uint64{0, 1, 4, 255, 256, 299} {
		d, err := l.Entry(ctx, idx)
		if err != nil || !bytes.Equal(d, stored[idx]) {
			t.Fatalf("Entry(%d) = %q, %v", idx, d, err)
		}
		p, err := l.InclusionProof(ctx, idx, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := merkle.VerifyInclusion(merkle.LeafHash(d), idx, n, p, cp.Root); err != nil {
			t.Errorf("inclusion %d: %v", idx, err)
		}
	}
	for _, m := range []uint64{1, 5, 200, 256, 257, 299, 300} {
		p, err := l.ConsistencyProof(ctx, m, n)
		if err != nil {
			t.Fatal(err)
		}
		rm, _ := tree.Root(m)
		if r2, err := l.RootAt(ctx, m); err != nil || r2 != rm {
			t.Fatalf("RootAt(%d) = %x, %v; want %x", m, r2, err, rm)
		}
		if err := merkle.VerifyConsistency(m, n, rm, cp.Root, p); err != nil {
			t.Errorf("consistency %d->%d: %v", m, n, err)
		}
	}
	if _, err := l.ConsistencyProof(ctx, 0, n); err == nil {
		t.Error("consistency proof from 0 succeeded")
	}

	// A witness cosigns; the export verifies.
	w, err := audit.NewWitness("site-a.witness", newSigner(t), l.VerifierKey(), func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	line, err := w.Cosign(ctx, cpb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AddCosignature(ctx, n, w.VerifierKey(), line); err != nil {
		t.Fatal(err)
	}
	if err := l.AddCosignature(ctx, n, w.VerifierKey(), line); err == nil {
		t.Error("second cosignature of the same witness accepted")
	}
	pol := audit.Policy{Log: l.VerifierKey().Encoded, Witnesses: []string{w.VerifierKey().Encoded}, Quorum: 1}
	out := t.TempDir() + "/bundle"
	if _, err := l.Export(ctx, out, 0, pol); err != nil {
		t.Fatal(err)
	}
	b, err := audit.ReadBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	r := audit.Verify(b, audit.VerifyOptions{})
	if !r.OK {
		t.Fatalf("export does not verify: %v", r.Problems)
	}
	if r.TreeSize != n || len(r.Cosigners) != 1 {
		t.Fatalf("result %+v", r)
	}

	// Witness follows growth with a consistency proof.
	for i := 0; i < 3; i++ {
		if _, err := l.Append(ctx, review(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	cpb2, err := l.AwaitCheckpoint(ctx, n+3)
	if err != nil {
		t.Fatal(err)
	}
	cp2, _ := audit.OpenCheckpoint(cpb2, l.VerifierKey(), nil)
	p, err := l.ConsistencyProof(ctx, n, cp2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Cosign(ctx, cpb2, p[1:]); err == nil {
		t.Error("witness accepted a bad consistency proof")
	}
	if _, err := w.Cosign(ctx, cpb2, p); err != nil {
		t.Errorf("witness refused a good consistency proof: %v", err)
	}
}

func TestReopen(t *testing.T) {
	QuietLibraryLogs()
	ctx := context.Background()
	dir := t.TempDir()
	s := newSigner(t)
	l, err := Create(ctx, dir, Options{Origin: "fedtune.test/reopen", Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, review(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AwaitCheckpoint(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dir, Options{Origin: "other", Signer: s}); err == nil {
		t.Error("Open with the wrong origin succeeded")
	}
	l, err = Open(ctx, dir, Options{Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	idx, err := l.Append(ctx, review(1))
	if err != nil || idx != 1 {
		t.Fatalf("Append after reopen = %d, %v", idx, err)
	}
	if _, err := Create(ctx, dir, Options{Origin: "x", Signer: s}); err == nil {
		t.Error("Create over an existing log succeeded")
	}
}
