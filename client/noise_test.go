package client

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/model"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"github.com/fedtune/fedtune/server"
)

// With round.distributed_noise_std set, the sites add Skellam noise shares
// and the published adapter is the noiseless aggregate (recomputed here
// from each site's trained adapter) plus noise of the configured size;
// without it, the two agree up to the quantization bound.
func TestDistributedNoise(t *testing.T) {
	const sigma = 0.02 // update units, on the sum of min_honest_sites sites
	for _, noise := range []float64{0, sigma} {
		t.Run(fmt.Sprintf("std=%g", noise), func(t *testing.T) {
			sites := []string{"site-a", "site-b", "site-c"}
			f := newFederation(t, sites, func(c *server.Config) {
				fastRounds(c)
				c.Round.DistributedNoiseStd = noise
				c.Round.MinHonestSites = 2
			})
			var cfgs []*Config
			for _, s := range sites {
				cfgs = append(cfgs, f.siteConfig(s, 40))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sums, errs := runSites(t, ctx, cfgs)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: %v", sites[i], err)
				}
				if o := sums[i].Rounds[0]; o.Outcome != "completed" {
					t.Fatalf("%s: %s (%s)", sites[i], o.Outcome, o.Reason)
				}
			}
			es := f.auditEntries(t)
			for _, e := range es {
				if e.Kind == audit.RoundOpened && !strings.Contains(e.Message, fmt.Sprintf("distributed_noise_std=%g min_honest_sites=2", noise)) {
					t.Fatalf("round.opened does not record the noise configuration: %q", e.Message)
				}
			}
			st, err := f.srv.GetRound(context.Background(), &pb.GetRoundRequest{Round: 1})
			if err != nil {
				t.Fatal(err)
			}
			if st.Config.DistributedNoiseStd != noise || st.Config.MinHonestSites != 2 {
				t.Fatalf("round config carries noise std %g, min honest %d", st.Config.DistributedNoiseStd, st.Config.MinHonestSites)
			}
			acfg := server.AggregatorConfig(st.Config)

			m, err := model.Load(f.cfg.BaseModel)
			if err != nil {
				t.Fatal(err)
			}
			rc := f.cfg.Round
			v0, err := model.NewAdapter(m, model.LoRAConfig{R: rc.LoraRank, Alpha: rc.LoraAlpha, TargetModules: rc.TargetModules, FFA: rc.FFA, ASeed: rc.ASeed})
			if err != nil {
				t.Fatal(err)
			}
			v1, err := model.LoadAdapter(filepath.Join(f.cfg.DataDir, "published", "v1"), m)
			if err != nil {
				t.Fatal(err)
			}
			// The noiseless aggregate: the mean of the sites' clipped
			// updates, applied with FedAvg at the configured server LR.
			dim := v0.NumTrainable()
			mean := make([]float64, dim)
			for _, c := range cfgs {
				local, err := model.LoadAdapter(filepath.Join(c.DataDir, "rounds", "round-1"), m)
				if err != nil {
					t.Fatal(err)
				}
				d := make([]float64, dim)
				var n2 float64
				for i, w := range local.Trainable() {
					d[i] = float64(w) - float64(v0.Trainable()[i])
					n2 += d[i] * d[i]
				}
				k := 1.0
				if n := math.Sqrt(n2); n > rc.ClipNorm {
					k = rc.ClipNorm / n
				}
				for i := range d {
					mean[i] += k * d[i] / float64(len(cfgs))
				}
			}
			var diff2 float64
			for i, w := range v1.Trainable() {
				e := float64(w) - float64(v0.Trainable()[i]) - rc.ServerLR*mean[i]
				diff2 += e * e
			}
			diff := math.Sqrt(diff2)
			n := float64(len(sites))
			quant := rc.ServerLR * acfg.ErrorBound(len(sites)) / n
			if noise == 0 {
				// float32 storage of the adapter adds a little on top of the
				// quantization bound.
				if diff > quant+1e-5 {
					t.Fatalf("published adapter is %.3g from the noiseless aggregate, bound %.3g", diff, quant)
				}
				return
			}
			// Each of n sites adds Skellam noise of variance σ²/m per
			// rotated coordinate, m = min_honest_sites (Agarwal, Kairouz
			// and Liu 2021, "The Skellam Mechanism", Sec. 4): the average
			// of n sites carries n·σ²/m/n² per coordinate, and the inverse
			// rotation, being orthonormal, keeps that on each of the dim
			// coordinates it returns: E‖noise‖² = dim·σ²/(n·m).
			mh := float64(st.Config.MinHonestSites)
			want := rc.ServerLR * sigma * math.Sqrt(float64(dim)/(n*mh))
			t.Logf("dim %d: noise norm %.4g, expected %.4g (quantization bound %.3g)", dim, diff, want, quant)
			if quant > want/10 {
				t.Fatalf("quantization bound %.3g too close to the noise %.3g for this test", quant, want)
			}
			if diff < 0.75*want || diff > 1.25*want {
				t.Fatalf("published adapter is %.4g from the noiseless aggregate, want about %.4g", diff, want)
			}
		})
	}
}
