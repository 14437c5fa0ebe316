package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/fedtune/fedtune/audit/merkle"
)

type noteKAT struct {
	VKey    string `json:"vkey"`
	SKey    string `json:"skey"`
	Text    string `json:"text"`
	SigLine string `json:"sig_line"`
}

func loadNoteKATs(t *testing.T) []noteKAT {
	b, err := os.ReadFile(filepath.Join("testdata", "rfc6962.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		KATs []noteKAT `json:"signed_note_kats"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.KATs) < 2 {
		t.Fatal("no signed-note known answers")
	}
	return v.KATs
}

// TestSignedNoteKATs checks key hashes, verifier keys, signing and
// verification against the published signed-note examples.
func TestSignedNoteKATs(t *testing.T) {
	for _, k := range loadNoteKATs(t) {
		vk, err := ParseVerifierKey(k.VKey)
		if err != nil {
			t.Fatalf("%s: %v", k.VKey, err)
		}
		n, err := ParseNote([]byte(k.Text + "\n" + k.SigLine + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", k.VKey, err)
		}
		if string(n.Text) != k.Text || len(n.Sigs) != 1 {
			t.Fatalf("%s: parsed %q with %d signatures", k.VKey, n.Text, len(n.Sigs))
		}
		if _, err := vk.verify(n.Text, n.Sigs[0]); err != nil {
			t.Errorf("%s: known-good signature rejected: %v", k.VKey, err)
		}
		bad := append([]byte(nil), n.Text...)
		bad[0] ^= 1
		if _, err := vk.verify(bad, n.Sigs[0]); err == nil {
			t.Errorf("%s: signature accepted over altered text", k.VKey)
		}
		if k.SKey == "" {
			continue
		}
		// PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>
		parts := strings.SplitN(k.SKey, "+", 5)
		raw, err := base64.StdEncoding.DecodeString(parts[4])
		if err != nil || raw[0] != 1 {
			t.Fatalf("bad skey %q", k.SKey)
		}
		priv := ed25519.NewKeyFromSeed(raw[1:])
		ns, err := NewNoteSigner(context.Background(), parts[2], edSigner{priv})
		if err != nil {
			t.Fatal(err)
		}
		if ns.VerifierKey().Encoded != k.VKey {
			t.Errorf("verifier key %q, want %q", ns.VerifierKey().Encoded, k.VKey)
		}
		sig, err := ns.Sign([]byte(k.Text))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(signatureLine(ns.Name(), ns.KeyHash(), sig)); got != k.SigLine+"\n" {
			t.Errorf("signature line %q, want %q", got, k.SigLine)
		}
	}
}

// TestInterop checks our checkpoints and cosignatures with the
// independent implementations in golang.org/x/mod/sumdb/note and
// github.com/transparency-dev/formats/note.
func TestInterop(t *testing.T) {
	ctx := context.Background()
	l := newTestLog(t, 1, 1)
	l.append(baseEntry(FederationCreated, 0))
	note1 := l.checkpoint(1)
	logV, err := note.NewVerifier(l.signer.VerifierKey().Encoded)
	if err != nil {
		t.Fatal(err)
	}
	witV, err := fnote.NewVerifierForCosignatureV1(l.witnesses[0].VerifierKey().Encoded)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(note1, note.VerifierList(logV, witV))
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Sigs) != 2 || len(n.UnverifiedSigs) != 0 {
		t.Fatalf("x/mod note: %d verified, %d unverified signatures", len(n.Sigs), len(n.UnverifiedSigs))
	}
	ts, err := fnote.CoSigV1Timestamp(n.Sigs[1])
	if err != nil || !ts.Equal(testT0.Add(time.Hour)) {
		t.Errorf("cosignature timestamp %v, %v; want %v", ts, err, testT0.Add(time.Hour))
	}
	// And the other way: a cosignature made by the formats package verifies here.
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	skey := "PRIVATE+KEY+other.witness+00000000+" + base64.StdEncoding.EncodeToString(append([]byte{sigTypeEd25519}, seed...))
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	wk, _ := WitnessVerifierKey("other.witness", pub)
	skey = strings.Replace(skey, "00000000", wk.Encoded[len("other.witness+"):len("other.witness+")+8], 1)
	fs, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Skipf("formats signer: %v", err)
	}
	text := Checkpoint{Origin: l.origin, Size: 1, Root: merkle.LeafHash(l.lines[0])}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(text)}, fs)
	if err != nil {
		t.Fatal(err)
	}
	pn, err := ParseNote(signed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wk.verify(pn.Text, pn.Sigs[0]); err != nil {
		t.Errorf("cosignature from transparency-dev/formats rejected: %v", err)
	}
	_ = ctx
}

func TestParseVerifierKeyErrors(t *testing.T) {
	good := newTestLog(t, 1, 1).witnesses[0].VerifierKey().Encoded
	if _, err := ParseVerifierKey(good); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "a+b", "name+0000000+AQ==", strings.Replace(good, good[len(good)-50:len(good)-49], "Z", 1),
		"na me+12345678+" + good[strings.LastIndex(good, "+")+1:]} {
		if _, err := ParseVerifierKey(s); err == nil {
			t.Errorf("ParseVerifierKey(%q) succeeded", s)
		}
	}
}

func TestCheckpointParse(t *testing.T) {
	root := merkle.LeafHash(nil)
	c := Checkpoint{Origin: "example.com/log", Size: 42, Root: root, Extensions: []string{"ext"}}
	got, err := ParseCheckpoint(c.Marshal())
	if err != nil || got.Size != 42 || got.Root != root || got.Origin != c.Origin || len(got.Extensions) != 1 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	r64 := base64.StdEncoding.EncodeToString(root[:])
	for _, s := range []string{
		"", "o\n1\n" + r64, "o\n01\n" + r64 + "\n", "o\n-1\n" + r64 + "\n", "o\n1\n" + r64[:40] + "\n",
		"\n1\n" + r64 + "\n", "o\n1\n" + r64 + "\n\n", "o\n18446744073709551616\n" + r64 + "\n", "o\n 1\n" + r64 + "\n",
	} {
		if _, err := ParseCheckpoint([]byte(s)); err == nil {
			t.Errorf("ParseCheckpoint(%q) succeeded", s)
		}
	}
}

func TestWitnessRefusesForks(t *testing.T) {
	ctx := context.Background()
	l := newTestLog(t, 1, 1)
	w := l.witnesses[0]
	l.append(baseEntry(FederationCreated, 0))
	l.append(baseEntry(ReviewPerformed, 1))
	if _, err := w.Cosign(ctx, l.checkpoint(0), []merkle.Hash{merkle.EmptyRoot()}); err == nil {
		t.Error("proof from size 0 accepted")
	}
	if _, err := w.Cosign(ctx, l.checkpoint(0), nil); err != nil {
		t.Fatal(err)
	}
	// Same size, different root.
	fork := newTestLog(t, 0, 0)
	fork.signer = l.signer
	fork.append(baseEntry(FederationCreated, 0))
	fork.append(baseEntry(ReviewPerformed, 2))
	if _, err := w.Cosign(ctx, fork.checkpoint(0), nil); err == nil {
		t.Error("fork of the same size cosigned")
	}
	// Larger fork: no valid consistency proof exists.
	fork.append(baseEntry(ReviewPerformed, 3))
	p, _ := merkle.ConsistencyProof(&fork.tree, 2, 3)
	if _, err := w.Cosign(ctx, fork.checkpoint(0), p); err == nil {
		t.Error("larger fork cosigned")
	}
	// Smaller size.
	l.cps = nil
	small := newTestLog(t, 0, 0)
	small.signer = l.signer
	small.append(baseEntry(FederationCreated, 0))
	if _, err := w.Cosign(ctx, small.checkpoint(0), nil); err == nil {
		t.Error("rollback cosigned")
	}
	// Not signed by the log.
	other := newTestLog(t, 0, 0)
	other.signer, _ = NewNoteSigner(ctx, l.origin, seededSigner("impostor"))
	other.append(baseEntry(FederationCreated, 0))
	if _, err := w.Cosign(ctx, other.checkpoint(0), nil); err == nil {
		t.Error("checkpoint by another key cosigned")
	}
}

func FuzzParseCheckpointNote(f *testing.F) {
	l := newTestLog(f, 2, 1)
	l.federationN(1, 1)
	for _, c := range l.cps {
		f.Add(c.Data)
	}
	f.Add([]byte("o\n1\nAAAA\n\n— o AAAAAAA=\n"))
	pol := l.parsedPolicy()
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNote(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		if got := n.Marshal(); string(got) != string(b) {
			t.Fatalf("ParseNote(%q).Marshal() = %q", b, got)
		}
		if c, err := ParseCheckpoint(n.Text); err == nil {
			if string(c.Marshal()) != string(n.Text) {
				t.Fatalf("checkpoint %q re-encodes as %q", n.Text, c.Marshal())
			}
		}
		_, _ = OpenCheckpoint(b, pol.Log, pol.Witnesses)
	})
}
