package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkSgemm sweeps square sizes over every backend of this build and
// the reference loop (the naive baseline, up to 256), reporting GFLOP/s.
// Compare backends within one run: absolute numbers vary between runs on
// shared machines.
func BenchmarkSgemm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, size := range []int{16, 64, 128, 256, 512, 1024} {
		a := randSlice(rng, size*size)
		bb := randSlice(rng, size*size)
		c := make([]float32, size*size)
		type impl struct {
			name string
			f    func()
		}
		impls := []impl{}
		for _, be := range backends() {
			impls = append(impls, impl{be.Name(), func() {
				be.Sgemm(false, false, size, size, size, 1, a, size, bb, size, 0, c, size)
			}})
		}
		if size <= 256 {
			impls = append(impls, impl{"naive", func() {
				sgemmRef(false, false, size, size, size, 1, a, size, bb, size, 0, c, size)
			}})
		}
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s/%d", im.name, size), func(b *testing.B) {
				for b.Loop() {
					im.f()
				}
				b.ReportMetric(2*float64(size*size*size)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkSgemmTransformerShapes times the products a transformer layer
// makes (sequence 256, hidden 512, LoRA rank 16), in the transposes the
// forward and backward passes use.
func BenchmarkSgemmTransformerShapes(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, sh := range []struct {
		name           string
		transA, transB bool
		m, n, k        int
	}{
		{"proj_fwd", false, true, 256, 512, 512},
		{"proj_dx", false, false, 256, 512, 512},
		{"proj_dw", true, false, 512, 512, 256},
		{"lora_a", false, true, 256, 16, 512},
		{"lora_b", false, true, 256, 512, 16},
		{"mlp_up", false, true, 256, 1376, 512},
	} {
		ar, ac := sh.m, sh.k
		if sh.transA {
			ar, ac = sh.k, sh.m
		}
		br, bc := sh.k, sh.n
		if sh.transB {
			br, bc = sh.n, sh.k
		}
		a := randSlice(rng, ar*ac)
		bb := randSlice(rng, br*bc)
		c := make([]float32, sh.m*sh.n)
		for _, be := range backends() {
			b.Run(sh.name+"/"+be.Name(), func(b *testing.B) {
				for b.Loop() {
					be.Sgemm(sh.transA, sh.transB, sh.m, sh.n, sh.k, 1, a, ac, bb, bc, 0, c, sh.n)
				}
				b.ReportMetric(2*float64(sh.m*sh.n*sh.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
