package secagg

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// The per-round secrets are uniformly random scalars of the Ristretto255
// group (a prime field of order ≈ 2^252), shared with circl's Shamir secret
// sharing. The 32-byte seeds used as key material are derived from a scalar's
// canonical encoding with HKDF (see deriveSeed), so a secret rebuilt from
// shares yields the same seeds.
var shamirGroup = group.Ristretto255

func randomScalar(rand io.Reader) (group.Scalar, error) {
	// RandomScalar panics on a failing reader; read the entropy ourselves
	// and reduce 64 bytes (bias < 2^-250) so errors stay errors.
	var b [64]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, fmt.Errorf("secagg: reading randomness: %w", err)
	}
	return shamirGroup.HashToScalar(b[:], []byte("fedtune/secagg/v1 secret")), nil
}

func scalarBytes(s group.Scalar) [32]byte {
	b, err := s.MarshalBinary()
	if err != nil || len(b) != 32 {
		panic("secagg: Ristretto255 scalar encoding is not 32 bytes")
	}
	var out [32]byte
	copy(out[:], b)
	return out
}

func parseScalar(b [32]byte) (group.Scalar, error) {
	s := shamirGroup.NewScalar()
	if err := s.UnmarshalBinary(b[:]); err != nil {
		return nil, err
	}
	return s, nil
}

// shareSecret splits secret into shares for the given site IDs, any t of
// which recover it: a random polynomial f of degree t-1 with f(0) = secret,
// share of site i = f(i) (Shamir 1979), computed by circl's secretsharing.
//
// circl draws the polynomial's coefficients for Ristretto255 from crypto/rand
// itself (its RandomScalar ignores the reader), so shares are not
// reproducible from the round's reader; the secret, and therefore every mask
// and the sum, are.
func shareSecret(t int, secret group.Scalar, ids []SiteID) map[SiteID][32]byte {
	ss := secretsharing.New(nil, uint(t-1), secret)
	out := make(map[SiteID][32]byte, len(ids))
	x := shamirGroup.NewScalar()
	for _, id := range ids {
		sh := ss.ShareWithID(x.SetUint64(uint64(id)))
		out[id] = scalarBytes(sh.Value)
	}
	return out
}

// lagrangeCache caches the Lagrange coefficients at zero for responder sets:
// the server rebuilds every secret of a round from the same responders, so it
// computes the coefficients once.
type lagrangeCache struct {
	m map[string][]group.Scalar
}

func setKey(ids []SiteID) string {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.FormatUint(uint64(id), 10))
		b.WriteByte(',')
	}
	return b.String()
}

// coefficients returns λ_j for the sorted, distinct ids x_j:
//
//	λ_j = Π_{k≠j} x_k / (x_k − x_j)
//
// so that f(0) = Σ_j λ_j f(x_j) for any polynomial f of degree < len(ids)
// (Lagrange interpolation at zero; Shamir 1979, §2).
func (c *lagrangeCache) coefficients(ids []SiteID) []group.Scalar {
	key := setKey(ids)
	if l, ok := c.m[key]; ok {
		return l
	}
	xs := make([]group.Scalar, len(ids))
	for i, id := range ids {
		xs[i] = shamirGroup.NewScalar().SetUint64(uint64(id))
	}
	out := make([]group.Scalar, len(ids))
	num := shamirGroup.NewScalar()
	den := shamirGroup.NewScalar()
	diff := shamirGroup.NewScalar()
	for j := range xs {
		num.SetUint64(1)
		den.SetUint64(1)
		for k := range xs {
			if k == j {
				continue
			}
			num.Mul(num, xs[k])                  // Π x_k
			den.Mul(den, diff.Sub(xs[k], xs[j])) // Π (x_k − x_j)
		}
		out[j] = shamirGroup.NewScalar().Mul(num, den.Inv(den))
	}
	if c.m == nil {
		c.m = make(map[string][]group.Scalar)
	}
	c.m[key] = out
	return out
}

// recover rebuilds f(0) = Σ_j λ_j·y_j from the shares ys of the responders
// ids (same order). len(ids) must equal the threshold t.
func (c *lagrangeCache) recover(ids []SiteID, ys []group.Scalar) group.Scalar {
	l := c.coefficients(ids)
	acc := shamirGroup.NewScalar()
	term := shamirGroup.NewScalar()
	for j := range ys {
		acc.Add(acc, term.Mul(l[j], ys[j]))
	}
	return acc
}
