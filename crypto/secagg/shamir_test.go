package secagg

import (
	"crypto/rand"
	"go/build"
	"strings"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// TestLagrangeMatchesCircl: the cached Lagrange recovery agrees with circl's
// own secretsharing.Recover on every T-subset of the shares, and fewer than
// T shares (padded with a wrong share) do not give the secret.
func TestLagrangeMatchesCircl(t *testing.T) {
	const n, th = 6, 4
	secret, err := randomScalar(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ids := []SiteID{1, 2, 3, 4, 5, 6}
	shares := shareSecret(th, secret, ids)
	var lc lagrangeCache
	subsets := 0
	for mask := 0; mask < 1<<n; mask++ {
		var sub []SiteID
		for i := range n {
			if mask&(1<<i) != 0 {
				sub = append(sub, ids[i])
			}
		}
		if len(sub) != th {
			continue
		}
		subsets++
		ys := make([]group.Scalar, th)
		cs := make([]secretsharing.Share, th)
		for j, id := range sub {
			ys[j], _ = parseScalar(shares[id])
			cs[j] = secretsharing.Share{ID: shamirGroup.NewScalar().SetUint64(uint64(id)), Value: ys[j]}
		}
		got := lc.recover(sub, ys)
		want, err := secretsharing.Recover(th-1, cs)
		if err != nil {
			t.Fatal(err)
		}
		if !got.IsEqual(want) || !got.IsEqual(secret) {
			t.Fatalf("subset %v: recovered secret differs", sub)
		}
		// T−1 true shares and one altered share give something else.
		ys[0] = shamirGroup.NewScalar().Add(ys[0], shamirGroup.NewScalar().SetUint64(1))
		if lc.recover(sub, ys).IsEqual(secret) {
			t.Fatalf("subset %v: altered share still gives the secret", sub)
		}
	}
	if subsets != 15 || len(lc.m) != 15 {
		t.Fatalf("%d subsets, %d cached coefficient sets; want 15 each", subsets, len(lc.m))
	}
	// Cache hit returns the same slice.
	a := lc.coefficients([]SiteID{1, 2, 3, 4})
	b := lc.coefficients([]SiteID{1, 2, 3, 4})
	if &a[0] != &b[0] {
		t.Fatal("coefficients not cached")
	}
}

// TestLagrangeKnownAnswer: for ids {1, 2, 3} the coefficients at zero are
// 3, −3, 1 (λ_1 = 2·3/((2−1)(3−1)), λ_2 = 1·3/((1−2)(3−2)), λ_3 = 1·2/((1−3)(2−3))).
func TestLagrangeKnownAnswer(t *testing.T) {
	var lc lagrangeCache
	l := lc.coefficients([]SiteID{1, 2, 3})
	three := shamirGroup.NewScalar().SetUint64(3)
	want := []group.Scalar{three, shamirGroup.NewScalar().Neg(three), shamirGroup.NewScalar().SetUint64(1)}
	for i := range l {
		if !l[i].IsEqual(want[i]) {
			t.Fatalf("λ_%d wrong", i+1)
		}
	}
}

func TestScalarEncodingRejectsNonCanonical(t *testing.T) {
	var b [32]byte
	for i := range b {
		b[i] = 0xff
	}
	if _, err := parseScalar(b); err == nil {
		t.Fatal("non-canonical scalar accepted")
	}
}

// TestCoreImportsNoTransport enforces the dependency rule: the protocol
// core never imports networking, gRPC, protobuf or the drivers.
func TestCoreImportsNoTransport(t *testing.T) {
	for _, dir := range []string{".", "prg", "sim"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			for _, bad := range []string{"net", "net/", "google.golang.org/grpc", "google.golang.org/protobuf",
				"github.com/fedtune/fedtune/server", "github.com/fedtune/fedtune/client", "github.com/fedtune/fedtune/proto",
				"math/rand", "time", "os"} {
				if imp == bad || (strings.HasSuffix(bad, "/") && strings.HasPrefix(imp, bad)) ||
					strings.HasPrefix(imp, bad+"/") {
					t.Errorf("package %s imports %s", dir, imp)
				}
			}
		}
	}
}
