package secagg

import (
	"crypto/rand"
	"errors"
	"testing"
)

// miniRound drives a round without the simulator (which imports this
// package) and lets tamper rewrite each UnmaskShares before the server sees
// it, re-signing it with the sender's key: a malicious site, not a forger.
func miniRound(t *testing.T, pq bool, dropAt map[SiteID]Stage, tamper func(m *UnmaskShares)) (*Server, error) {
	t.Helper()
	p := Params{FederationID: "fed-internal", Round: 3, N: 5, T: 3, VectorLen: 40, PQ: pq, SigAlg: Ed25519, Workers: 2}
	var ids []*Identity
	var roster Roster
	for range p.N {
		id, err := NewIdentity(Ed25519, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		roster = append(roster, id.Public())
	}
	srv, err := NewServer(p, roster, nil)
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]*Client, p.N)
	for i := range clients {
		if clients[i], err = NewClient(p, SiteID(i+1), ids[i], roster, rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	inbox := map[SiteID]Message{}
	for srv.Stage() < StageDone {
		st := srv.Stage()
		for i, c := range clients {
			site := SiteID(i + 1)
			if d, ok := dropAt[site]; ok && st >= d {
				continue
			}
			var rerr error
			switch st {
			case StageAdvertiseKeys:
				m, err := c.AdvertiseKeys()
				if err == nil {
					rerr = srv.ReceiveAdvertiseKeys(m)
				}
			case StageShareKeys:
				if in, ok := inbox[site].(*KeyList); ok {
					if m, err := c.ShareKeys(in); err == nil {
						rerr = srv.ReceiveShareKeys(m)
					}
				}
			case StageMaskedInput:
				if in, ok := inbox[site].(*ShareKeysRelay); ok {
					if m, err := c.MaskedInput(in, make([]uint32, p.VectorLen)); err == nil {
						rerr = srv.ReceiveMaskedInput(m)
					}
				}
			case StageConsistencyCheck:
				if in, ok := inbox[site].(*SurvivorList); ok {
					if m, err := c.ConsistencyCheck(in); err == nil {
						rerr = srv.ReceiveConsistency(m)
					}
				}
			case StageUnmask:
				if in, ok := inbox[site].(*ConsistencyCertificate); ok {
					if m, err := c.Unmask(in); err == nil {
						if tamper != nil && site == 1 {
							tamper(m)
							if m.Sig, err = ids[0].Sign(signedBytes(srv.ctx, m.appendSigned)); err != nil {
								t.Fatal(err)
							}
						}
						rerr = srv.ReceiveUnmask(m)
					}
				}
			}
			if rerr != nil {
				t.Fatalf("server rejected site %d: %v", site, rerr)
			}
		}
		out, err := srv.Finish()
		if err != nil {
			return srv, err
		}
		clear(inbox)
		for _, o := range out {
			inbox[o.To] = o.Msg
		}
	}
	return srv, nil
}

func TestHonestMiniRound(t *testing.T) {
	srv, err := miniRound(t, false, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, _, err := srv.Result()
	if err != nil || len(sum) != 40 {
		t.Fatalf("result %v, %v", sum, err)
	}
	for _, w := range sum {
		if w != 0 {
			t.Fatal("sum of zero inputs is not zero")
		}
	}
}

// A malicious site that reveals a wrong self-mask share (site 1 is among the
// first T responders the server uses) is caught by the self-mask commitment;
// the round aborts without releasing a sum.
func TestWrongSelfMaskShareDetected(t *testing.T) {
	srv, err := miniRound(t, false, nil, func(m *UnmaskShares) {
		m.SelfMaskShares[2].Value[0] ^= 1
	})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v, want ErrInvalid", err)
	}
	if sum, _, rerr := srv.Result(); sum != nil || rerr == nil {
		t.Fatal("a sum was released")
	}
}

// A wrong share of a dropped site's mask-key secret is caught by comparing
// the rebuilt key with the advertised one.
func TestWrongMaskKeyShareDetected(t *testing.T) {
	for _, pq := range []bool{false, true} {
		_, err := miniRound(t, pq, map[SiteID]Stage{5: StageMaskedInput}, func(m *UnmaskShares) {
			if len(m.MaskKeyShares) != 1 {
				t.Fatalf("site 1 revealed %d mask-key shares, want 1", len(m.MaskKeyShares))
			}
			m.MaskKeyShares[0].Value[3] ^= 4
		})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("pq=%v: error %v, want ErrInvalid", pq, err)
		}
	}
}
