package aggregator

import (
	"crypto/rand"
	"math"
	mrand "math/rand/v2"
	"testing"
)

func randVec(r *mrand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

func norm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func TestFWHTInverse(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 8, 1024} {
		x := make([]float64, n)
		for i := range x {
			x[i] = r.NormFloat64()
		}
		signs := roundSigns(seedFrom(uint64(n)), n)
		y := rotate(x, signs)
		if math.Abs(norm(y)-norm(x)) > 1e-9*norm(x) {
			t.Fatalf("n=%d: rotation changed the norm %v -> %v", n, norm(x), norm(y))
		}
		unrotate(y, signs)
		for i := range x {
			if math.Abs(y[i]-x[i]) > 1e-12 {
				t.Fatalf("n=%d: inverse rotation off at %d: %v vs %v", n, i, y[i], x[i])
			}
		}
	}
}

// The decoded sum of n encodings is within ErrorBound of the sum of the
// clipped inputs, and clipping is to ClipNorm exactly.
func TestEncodeDecodeErrorBound(t *testing.T) {
	r := mrand.New(mrand.NewPCG(3, 4))
	for _, tc := range []struct {
		dim, n int
		clip   float64
		scale  float64 // 0: ChooseScale
	}{{1, 1, 1, 0}, {7, 3, 0.5, 0}, {1000, 10, 2, 0}, {3000, 5, 1, 64}, {513, 20, 1, 1024}} {
		c := Config{Dim: tc.dim, ClipNorm: tc.clip, MaxSites: tc.n, Scale: tc.scale}
		if c.Scale == 0 {
			c.Scale = ChooseScale(tc.dim, tc.clip, 0, tc.n, 0)
		}
		seed := seedFrom(uint64(tc.dim))
		sum := make([]uint32, c.PaddedDim())
		want := make([]float64, tc.dim)
		for s := 0; s < tc.n; s++ {
			x := randVec(r, tc.dim, 1)
			e, err := Encode(c, x, seed, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			f := 1.0
			if e.Norm > tc.clip {
				f = tc.clip / e.Norm
				if !e.Clipped {
					t.Fatal("not marked clipped")
				}
			}
			for i, v := range x {
				want[i] += float64(v) * f
			}
			for i, v := range e.Vec {
				sum[i] += v
			}
		}
		got, err := Decode(c, sum, seed)
		if err != nil {
			t.Fatal(err)
		}
		diff := make([]float64, tc.dim)
		for i := range got {
			diff[i] = got[i] - want[i]
		}
		if e, b := norm(diff), c.ErrorBound(tc.n); e > b {
			t.Fatalf("%+v: error %g exceeds the bound %g", tc, e, b)
		}
		// Typical error is far below the worst case: √(n·d'/4)/γ.
		if e, typ := norm(diff), 3*math.Sqrt(float64(tc.n*c.PaddedDim())/4)/c.Scale; e > typ {
			t.Fatalf("%+v: error %g larger than 3× the typical %g", tc, e, typ)
		}
	}
}

// Unbiased rounding: averaging many coarse encodings of the same vector
// converges to it.
func TestRoundingUnbiased(t *testing.T) {
	c := Config{Dim: 16, ClipNorm: 100, MaxSites: 1, Scale: 1}
	x := []float32{0.3, -0.7, 0.5, 0.25, -0.1, 0.9, 0, 0.05, 1.5, -2.2, 0.33, 0.66, 0.01, -0.99, 0.42, 0.2}
	seed := seedFrom(9)
	acc := make([]float64, c.Dim)
	const reps = 20000
	for k := 0; k < reps; k++ {
		e, err := Encode(c, x, seed, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := Decode(c, e.Vec, seed)
		for i := range acc {
			acc[i] += got[i]
		}
	}
	for i := range acc {
		// Per-coordinate rounding variance ≤ 1/4 before rotation back;
		// the mean's standard error is ≤ 0.5/√reps.
		if m := acc[i] / reps; math.Abs(m-float64(x[i])) > 6*0.5/math.Sqrt(reps) {
			t.Fatalf("coordinate %d: mean %v, want %v", i, m, x[i])
		}
	}
}

func TestSkellamVariance(t *testing.T) {
	// Zero updates: the decoded sum is pure noise with std NoiseStd
	// whatever the number of sites ≥ MinHonest (here exactly MinHonest).
	const sites = 4
	c := Config{Dim: 4096, ClipNorm: 1, MaxSites: sites, MinHonest: sites, NoiseStd: 0.5}
	c.Scale = ChooseScale(c.Dim, c.ClipNorm, c.NoiseStd, sites, sites)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	seed := seedFrom(5)
	sum := make([]uint32, c.PaddedDim())
	for s := 0; s < sites; s++ {
		e, err := Encode(c, make([]float32, c.Dim), seed, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range e.Vec {
			sum[i] += v
		}
	}
	got, _ := Decode(c, sum, seed)
	var s2 float64
	for _, v := range got {
		s2 += v * v
	}
	std := math.Sqrt(s2 / float64(len(got)))
	// Sample std of 4096 draws: relative standard error ≈ 1/√(2·4096) ≈ 1.1%.
	if math.Abs(std-c.NoiseStd)/c.NoiseStd > 0.06 {
		t.Fatalf("noise std %v, want %v", std, c.NoiseStd)
	}
}

func TestPoissonMoments(t *testing.T) {
	r := mrand.New(mrand.NewPCG(7, 8))
	for _, mu := range []float64{0.5, 3, 9.5, 10, 37, 1000, 1e9} {
		const n = 200000
		var s, s2 float64
		for i := 0; i < n; i++ {
			k := float64(poisson(r, mu))
			s += k
			s2 += k * k
		}
		mean := s / n
		vr := s2/n - mean*mean
		if math.Abs(mean-mu) > 6*math.Sqrt(mu/n) {
			t.Errorf("mu=%v: mean %v", mu, mean)
		}
		if math.Abs(vr-mu)/mu > 0.03 {
			t.Errorf("mu=%v: variance %v", mu, vr)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Dim: 10, ClipNorm: 1, MaxSites: 3, Scale: 1 << 20}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Config{
		{Dim: 0, ClipNorm: 1, MaxSites: 3, Scale: 1},
		{Dim: 10, ClipNorm: 0, MaxSites: 3, Scale: 1},
		{Dim: 10, ClipNorm: 1, MaxSites: 3, Scale: 1e12}, // wraps
		{Dim: 10, ClipNorm: 1, MaxSites: 3, Scale: 1, NoiseStd: 1},
		{Dim: 10, ClipNorm: 1, MaxSites: 0, Scale: 1},
	}
	for i, c := range bad {
		if c.Validate() == nil {
			t.Errorf("case %d: %+v accepted", i, c)
		}
	}
	if _, err := Encode(ok, make([]float32, 9), seedFrom(1), rand.Reader); err == nil {
		t.Error("wrong length accepted")
	}
	if _, err := Encode(ok, []float32{float32(math.NaN()), 0, 0, 0, 0, 0, 0, 0, 0, 0}, seedFrom(1), rand.Reader); err == nil {
		t.Error("NaN accepted")
	}
}

// With FFA-LoRA the average of the sites' B updates, applied to the shared
// frozen A, is exactly the average of their weight changes; with both A
// and B trained it is not.
func TestFFALoRAAveragingExact(t *testing.T) {
	r := mrand.New(mrand.NewPCG(11, 12))
	const out, in, rank, sites = 6, 5, 2, 3
	mat := func(rows, cols int) []float64 {
		m := make([]float64, rows*cols)
		for i := range m {
			m[i] = r.NormFloat64()
		}
		return m
	}
	mul := func(b, a []float64) []float64 { // (out×rank)·(rank×in)
		w := make([]float64, out*in)
		for i := 0; i < out; i++ {
			for j := 0; j < in; j++ {
				for k := 0; k < rank; k++ {
					w[i*in+j] += b[i*rank+k] * a[k*in+j]
				}
			}
		}
		return w
	}
	a := mat(rank, in)
	b0 := mat(out, rank)
	var bs, as [][]float64
	for s := 0; s < sites; s++ {
		bs = append(bs, mat(out, rank))
		as = append(as, mat(rank, in))
	}
	avg := func(vs [][]float64) []float64 {
		o := make([]float64, len(vs[0]))
		for _, v := range vs {
			for i := range v {
				o[i] += v[i] / float64(len(vs))
			}
		}
		return o
	}
	// FFA: ΔW_s = (B_s − B0)·A.
	var dws, dbs [][]float64
	for s := 0; s < sites; s++ {
		db := make([]float64, len(b0))
		for i := range db {
			db[i] = bs[s][i] - b0[i]
		}
		dbs = append(dbs, db)
		dws = append(dws, mul(db, a))
	}
	got, want := mul(avg(dbs), a), avg(dws)
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("FFA averaging not exact at %d: %v vs %v", i, got[i], want[i])
		}
	}
	// Plain LoRA: avg(B)·avg(A) ≠ avg(B·A).
	var prods [][]float64
	for s := 0; s < sites; s++ {
		prods = append(prods, mul(bs[s], as[s]))
	}
	p1, p2 := mul(avg(bs), avg(as)), avg(prods)
	var d float64
	for i := range p1 {
		d += math.Abs(p1[i] - p2[i])
	}
	if d < 1e-3 {
		t.Fatal("plain LoRA averaging unexpectedly exact")
	}
}

func TestServerOptimizers(t *testing.T) {
	g := []float32{1, 2, 3}
	if err := (&FedAvg{LR: 1}).Step(g, []float64{0.5, -1, 0}); err != nil || g[0] != 1.5 || g[1] != 1 || g[2] != 3 {
		t.Fatalf("FedAvg: %v %v", g, err)
	}
	if (&FedAvg{LR: 1}).Step(g, []float64{1}) == nil {
		t.Fatal("length mismatch accepted")
	}
	// FedAdam first step: m = 0.1·d, v = 0.01·d², so the step is
	// η·0.1d/(0.1|d| + τ) ≈ η·sign(d).
	o := NewFedAdam(0.1)
	g = []float32{0, 0}
	o.Step(g, []float64{2, -4})
	if math.Abs(float64(g[0])-0.1*0.2/(0.2+1e-3)) > 1e-7 || math.Abs(float64(g[1])+0.1*0.4/(0.4+1e-3)) > 1e-7 {
		t.Fatalf("FedAdam step %v", g)
	}
	st, _ := o.MarshalState()
	var o2 FedAdam
	if err := o2.UnmarshalState(st); err != nil || o2.T != 1 || o2.M[0] != o.M[0] {
		t.Fatalf("state round trip: %+v %v", o2, err)
	}
}

func BenchmarkEncode1M(b *testing.B) {
	r := mrand.New(mrand.NewPCG(1, 1))
	c := Config{Dim: 1 << 20, ClipNorm: 1, MaxSites: 100, MinHonest: 50, NoiseStd: 0.1}
	c.Scale = ChooseScale(c.Dim, 1, 0.1, 100, 50)
	x := randVec(r, c.Dim, 1)
	b.SetBytes(int64(4 * c.Dim))
	for i := 0; i < b.N; i++ {
		if _, err := Encode(c, x, seedFrom(1), rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}
