package sim

import (
	"slices"
	"testing"

	"github.com/fedtune/fedtune/crypto/secagg"
)

func params(n, t, m int, pq bool, alg secagg.SigAlg) secagg.Params {
	return secagg.Params{FederationID: "fed-test", Round: 7, N: n, T: t, VectorLen: m, PQ: pq, SigAlg: alg, Workers: 2}
}

func TestRoundAllModes(t *testing.T) {
	for _, tc := range []struct {
		name string
		pq   bool
		alg  secagg.SigAlg
	}{{"classical", false, secagg.Ed25519}, {"pq", true, secagg.Ed25519}, {"pq-mldsa", true, secagg.MLDSA65}} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New(Config{Params: params(5, 3, 1000, tc.pq, tc.alg), Seed: [32]byte{1},
				DropAt: map[secagg.SiteID]secagg.Stage{2: secagg.StageMaskedInput}})
			if err != nil {
				t.Fatal(err)
			}
			sum, surv, err := f.Run()
			if err != nil {
				t.Fatalf("round failed: %v (client errors %v, rejected %v)", err, f.ClientErrs, f.Rejected)
			}
			if !slices.Equal(surv, []secagg.SiteID{1, 3, 4, 5}) {
				t.Fatalf("survivors %v", surv)
			}
			if !slices.Equal(sum, f.PlainSum(surv)) {
				t.Fatal("unmasked sum differs from the plain sum")
			}
		})
	}
}
