package secagg_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/cloudflare/circl/kem/hybrid"

	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/crypto/secagg/sim"
)

// The envelopes a site receives are verified and opened in Unmask, not in
// MaskedInput (Bonawitz et al. 2017, Fig. 4), except in PQ mode the
// signature of an envelope whose KEM ciphertext the mask depends on. These
// tests pin where each kind of bad envelope is caught, that the site reveals
// no share when it is caught, and that the round still ends exact.

// abortStage returns the stage an *AbortError names.
func abortStage(t *testing.T, err error) secagg.Stage {
	t.Helper()
	var ae *secagg.AbortError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an *AbortError", err)
	}
	return ae.Stage
}

// sentBy records which stages' messages each site delivered to the server.
type sentBy map[secagg.SiteID][]secagg.Stage

func (s sentBy) hook(from secagg.SiteID, m secagg.Message) secagg.Message {
	s[from] = append(s[from], m.Stage())
	return m
}

// tamperRelay returns a ToClient hook that applies f to a copy of the
// envelope from `from` in the relay for `to`.
func tamperRelay(t *testing.T, to, from secagg.SiteID, f func(e *secagg.Envelope)) func(secagg.SiteID, secagg.Message) secagg.Message {
	return func(site secagg.SiteID, m secagg.Message) secagg.Message {
		r, ok := m.(*secagg.ShareKeysRelay)
		if !ok || site != to {
			return m
		}
		c := *r
		c.Envelopes = slices.Clone(r.Envelopes)
		for i, e := range c.Envelopes {
			if e.From == from {
				e2 := *e
				e2.MaskCT, e2.Enc, e2.Sealed, e2.Sig = slices.Clone(e.MaskCT), slices.Clone(e.Enc), slices.Clone(e.Sealed), slices.Clone(e.Sig)
				f(&e2)
				c.Envelopes[i] = &e2
				return &c
			}
		}
		t.Fatalf("relay for site %d has no envelope from site %d", to, from)
		return nil
	}
}

func TestBadEnvelopeCaughtAtStage(t *testing.T) {
	flipSealed := func(e *secagg.Envelope) { e.Sealed[0] ^= 0x80 }
	flipSig := func(e *secagg.Envelope) { e.Sig[len(e.Sig)/2] ^= 0x10 }
	for _, tc := range []struct {
		name   string
		pq     bool
		from   secagg.SiteID // sender of the tampered envelope to site 2
		tamper func(*secagg.Envelope)
		stage  secagg.Stage
	}{
		// Classical: nothing in an envelope feeds the mask, so every check waits for Unmask.
		{"classical/sealed-from-lower", false, 1, flipSealed, secagg.StageUnmask},
		{"classical/sig-from-higher", false, 4, flipSig, secagg.StageUnmask},
		// PQ: the envelope from a lower peer carries the KEM ciphertext of the
		// pairwise key, so its signature is checked before decapsulation.
		{"pq/sealed-from-lower", true, 1, flipSealed, secagg.StageMaskedInput},
		{"pq/sig-from-lower", true, 1, flipSig, secagg.StageMaskedInput},
		{"pq/sig-from-higher", true, 4, flipSig, secagg.StageUnmask},
		{"pq/sealed-from-higher", true, 3, flipSealed, secagg.StageUnmask},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := sentBy{}
			f := mustNew(t, sim.Config{Params: params(4, 3, 100, tc.pq), Seed: [32]byte{8},
				ToClient: tamperRelay(t, 2, tc.from, tc.tamper), ToServer: sent.hook})
			// Site 2 still counts in U3 when it aborts in Unmask: the other
			// three survivors' shares unmask a sum that includes its input.
			want := sites(1, 2, 3, 4)
			if tc.stage == secagg.StageMaskedInput {
				want = sites(1, 3, 4)
			}
			checkExact(t, f, want)
			err := f.ClientErrs[2]
			if !errors.Is(err, secagg.ErrBadSignature) {
				t.Fatalf("site 2 error %v, want ErrBadSignature", err)
			}
			if got := abortStage(t, err); got != tc.stage {
				t.Fatalf("site 2 aborted in %v, want %v", got, tc.stage)
			}
			if slices.Contains(sent[2], tc.stage) || slices.Contains(sent[2], secagg.StageUnmask) {
				t.Fatalf("site 2 sent %v after aborting in %v", sent[2], tc.stage)
			}
			for _, s := range sites(1, 3, 4) {
				if f.ClientErrs[s] != nil {
					t.Fatalf("honest site %d aborted: %v", s, f.ClientErrs[s])
				}
			}
		})
	}
}

// A malicious site sends an envelope that is correctly signed but does not
// decrypt: the server cannot tell, the recipient finds out in Unmask and
// aborts with ErrInvalid before revealing any share.
func TestSignedUndecryptableEnvelope(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			p := params(4, 3, 100, md.pq)
			sent := sentBy{}
			var f *sim.Federation
			f = mustNew(t, sim.Config{Params: p, Seed: [32]byte{9},
				ToServer: func(from secagg.SiteID, m secagg.Message) secagg.Message {
					sent.hook(from, m)
					sk, ok := m.(*secagg.ShareKeys)
					if !ok || from != 1 {
						return m
					}
					c := *sk
					c.Envelopes = slices.Clone(sk.Envelopes)
					e := *c.Envelopes[0] // 1→2
					e.Sealed = slices.Clone(e.Sealed)
					e.Sealed[len(e.Sealed)-1] ^= 1
					if err := secagg.SignEnvelope(p, f.Roster, f.Identities[0], &e); err != nil {
						t.Fatal(err)
					}
					c.Envelopes[0] = &e
					return &c
				}})
			checkExact(t, f, sites(1, 2, 3, 4))
			err := f.ClientErrs[2]
			if !errors.Is(err, secagg.ErrInvalid) {
				t.Fatalf("site 2 error %v, want ErrInvalid", err)
			}
			if got := abortStage(t, err); got != secagg.StageUnmask {
				t.Fatalf("site 2 aborted in %v, want Unmask", got)
			}
			if slices.Contains(sent[2], secagg.StageUnmask) {
				t.Fatal("site 2 revealed shares despite an undecryptable envelope")
			}
		})
	}
}

// In PQ mode a server that replaces a lower peer's KEM ciphertext with one
// it encapsulated itself would know that pairwise mask key. The recipient
// must refuse before it sends a masked input.
func TestSubstitutedMaskCiphertextRefusedBeforeMasking(t *testing.T) {
	scheme := hybrid.X25519MLKEM768()
	var maskPK []byte
	sent := sentBy{}
	f := mustNew(t, sim.Config{Params: params(4, 3, 100, true), Seed: [32]byte{10}, ToServer: sent.hook,
		ToClient: func(to secagg.SiteID, m secagg.Message) secagg.Message {
			switch m := m.(type) {
			case *secagg.KeyList:
				for _, a := range m.Entries {
					if a.Site == 4 {
						maskPK = a.MaskPK
					}
				}
			case *secagg.ShareKeysRelay:
				if to != 4 {
					return m
				}
				pk, err := scheme.UnmarshalBinaryPublicKey(maskPK)
				if err != nil {
					t.Fatal(err)
				}
				ct, _, err := scheme.Encapsulate(pk)
				if err != nil {
					t.Fatal(err)
				}
				c := *m
				c.Envelopes = slices.Clone(m.Envelopes)
				e := *c.Envelopes[0] // 1→4
				e.MaskCT = ct
				c.Envelopes[0] = &e
				return &c
			}
			return m
		}})
	checkExact(t, f, sites(1, 2, 3))
	err := f.ClientErrs[4]
	if !errors.Is(err, secagg.ErrBadSignature) {
		t.Fatalf("site 4 error %v, want ErrBadSignature", err)
	}
	if got := abortStage(t, err); got != secagg.StageMaskedInput {
		t.Fatalf("site 4 aborted in %v, want MaskedInput", got)
	}
	if slices.Contains(sent[4], secagg.StageMaskedInput) {
		t.Fatal("site 4 sent a masked input under a substituted KEM ciphertext")
	}
}
