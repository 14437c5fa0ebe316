// Package bench measures a secure-aggregation round end to end in one
// process and reports times as ratios against a baseline measured in the
// same run: raw AES-128-CTR keystream generation for the same number of mask
// words, with the same number of threads.
package bench

import (
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/crypto/secagg/prg"
	"github.com/fedtune/fedtune/crypto/secagg/sim"
)

// Config selects the round to measure.
type Config struct {
	Sites     int  // N
	Params    int  // vector length m, in uint32 words
	Dropouts  int  // sites that drop after ShareKeys (the costly case for the server)
	Threshold int  // T; 0 picks ⌊2N/3⌋+1, lowered to N−Dropouts if needed (never below ⌊N/2⌋+1)
	PQ        bool // post-quantum hybrid mode
	MLDSA     bool // ML-DSA-65 identity signatures instead of Ed25519
	Threads   int  // mask-expansion goroutines (0: GOMAXPROCS)
	// Progress, if set, is called with a short description before each step
	// and once per site in the client stages.
	Progress func(step string)
}

// Result is what `fedtune bench secagg` prints.
type Result struct {
	Sites     int    `json:"sites"`
	Params    int    `json:"params"`
	Dropouts  int    `json:"dropouts"`
	Threshold int    `json:"threshold"`
	Mode      string `json:"mode"`
	SigAlg    string `json:"sig_alg"`
	Threads   int    `json:"threads"`

	// ClientMaskS is the median time of one site's MaskedInput stage (check
	// the shape of the relayed envelopes, derive N−1 pairwise keys, expand
	// and add N masks, hash and sign; the envelopes are verified and
	// decrypted in Unmask, except in PQ mode the signatures of those from
	// lower-numbered peers).
	ClientMaskS float64 `json:"client_mask_s"`
	// KeystreamS is the median time to generate the same N·m keystream words
	// with raw AES-128-CTR and the same threads, without adding them anywhere.
	KeystreamS float64 `json:"keystream_s"`
	// ClientOverKeystream = ClientMaskS / KeystreamS.
	ClientOverKeystream float64 `json:"client_over_keystream"`
	// ClientMaskCPUS and KeystreamCPUS are the same medians in process CPU
	// time (all threads), and ClientOverKeystreamCPU their ratio: on a busy
	// machine, where wall times swing with other jobs, this ratio is the
	// steadier measure of the work added on top of the keystream. Zero where
	// CPU time is not available.
	ClientMaskCPUS         float64 `json:"client_mask_cpu_s"`
	KeystreamCPUS          float64 `json:"keystream_cpu_s"`
	ClientOverKeystreamCPU float64 `json:"client_over_keystream_cpu"`
	// MaskKernelS is the median time of the masking kernel alone (prg.Apply
	// of N masks into an m-word vector); KernelOverKeystream its ratio.
	MaskKernelS         float64 `json:"mask_kernel_s"`
	KernelOverKeystream float64 `json:"kernel_over_keystream"`
	// KernelOverKeystreamCPU is the kernel's ratio in process CPU time.
	KernelOverKeystreamCPU float64 `json:"kernel_over_keystream_cpu"`
	// ServerUnmaskS is the time of the server's Finish of stage Unmask:
	// rebuilding secrets from shares and removing the self masks of the
	// survivors and the pairwise masks of the dropped sites.
	ServerUnmaskS float64 `json:"server_unmask_s"`
	// ServerMaskWords is the number of keystream words the server removed
	// ((|U3| + |U2\U3|·|U3|)·m); ServerOverKeystream compares ServerUnmaskS
	// with raw keystream for that many words (scaled from keystream runs of
	// N·m words just before and after the unmasking).
	ServerMaskWords     int64   `json:"server_mask_words"`
	ServerOverKeystream float64 `json:"server_over_keystream"`
	// SetupS is the wall time of stages AdvertiseKeys and ShareKeys for all
	// sites together (sequential, one process).
	SetupS float64 `json:"setup_s"`
	// BytesPerClient is what a surviving site sends over the whole round;
	// BytesToClient what it receives. ExpansionFactor = BytesPerClient / 4m
	// (Bonawitz et al. 2017 report it for 16-bit inputs; here inputs are
	// 32-bit words).
	BytesPerClient  int     `json:"bytes_per_client"`
	BytesToClient   int     `json:"bytes_to_client"`
	ExpansionFactor float64 `json:"expansion_factor"`
	// Survivors is |U3|; Exact says whether the unmasked sum equals the
	// plain modular sum of the survivors' inputs.
	Survivors int  `json:"survivors"`
	Exact     bool `json:"exact"`
}

func threshold(c Config) (int, error) {
	n, d := c.Sites, c.Dropouts
	t := c.Threshold
	if t == 0 {
		t = 2*n/3 + 1
		if t > n-d {
			t = n - d
		}
		if t < n/2+1 {
			t = n/2 + 1
		}
	}
	if t > n-d {
		return 0, fmt.Errorf("threshold %d is more than the %d sites left after %d drop-outs", t, n-d, d)
	}
	return t, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// Run measures one round.
func Run(c Config) (*Result, error) {
	if c.Sites < 2 || c.Params < 1 || c.Dropouts < 0 || c.Dropouts >= c.Sites {
		return nil, fmt.Errorf("need sites ≥ 2, params ≥ 1 and 0 ≤ dropouts < sites; got %d, %d, %d", c.Sites, c.Params, c.Dropouts)
	}
	t, err := threshold(c)
	if err != nil {
		return nil, err
	}
	progress := c.Progress
	if progress == nil {
		progress = func(string) {}
	}
	p := secagg.Params{
		FederationID: "bench", Round: 1, N: c.Sites, T: t, VectorLen: c.Params,
		PQ: c.PQ, SigAlg: secagg.Ed25519, Workers: c.Threads,
	}
	if c.MLDSA {
		p.SigAlg = secagg.MLDSA65
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	drop := map[secagg.SiteID]secagg.Stage{}
	for i := 0; i < c.Dropouts; i++ {
		drop[secagg.SiteID(c.Sites-i)] = secagg.StageMaskedInput
	}
	progress("generating identities and inputs")
	f, err := sim.New(sim.Config{Params: p, Seed: seed, DropAt: drop})
	if err != nil {
		return nil, err
	}
	res := &Result{
		Sites: c.Sites, Params: c.Params, Dropouts: c.Dropouts, Threshold: t,
		Mode: "classical", SigAlg: p.SigAlg.String(), Threads: prg.Workers(c.Threads),
	}
	if c.PQ {
		res.Mode = "pq"
	}

	// Baseline keys: N keystreams, as many as a site expands.
	terms := make([]prg.Term, c.Sites)
	for i := range terms {
		rand.Read(terms[i].Key[:])
		terms[i].Neg = i%2 == 1
	}
	var ks, ksCPU, kernel, kernelCPU []float64
	baseline := func() {
		t0, c0 := time.Now(), cpuTime()
		prg.Keystream(c.Params, terms, c.Threads)
		ks = append(ks, time.Since(t0).Seconds())
		ksCPU = append(ksCPU, (cpuTime() - c0).Seconds())
		v := make([]uint32, c.Params)
		t0, c0 = time.Now(), cpuTime()
		prg.Apply(v, terms, c.Threads)
		kernel = append(kernel, time.Since(t0).Seconds())
		kernelCPU = append(kernelCPU, (cpuTime() - c0).Seconds())
	}
	baseline()

	t0 := time.Now()
	for _, st := range []string{"AdvertiseKeys", "ShareKeys"} {
		progress(st)
		if err := f.Step(); err != nil {
			return nil, fmt.Errorf("stage %s: %w", st, err)
		}
	}
	res.SetupS = time.Since(t0).Seconds()

	// MaskedInput, one site at a time, interleaved with baseline runs so
	// both see the same machine load.
	var client, clientCPU []float64
	for i := 1; i <= c.Sites; i++ {
		site := secagg.SiteID(i)
		progress(fmt.Sprintf("MaskedInput site %d", i))
		t0, c0 := time.Now(), cpuTime()
		m := f.Answer(site)
		el, elCPU := time.Since(t0).Seconds(), (cpuTime() - c0).Seconds()
		if m == nil {
			continue
		}
		client = append(client, el)
		clientCPU = append(clientCPU, elCPU)
		if err := f.Deliver(site, m); err != nil {
			return nil, err
		}
		if len(client)%max(1, c.Sites/8) == 0 {
			baseline()
		}
	}
	baseline()
	if len(f.ClientErrs) > 0 || len(f.Rejected) > 0 {
		return nil, fmt.Errorf("honest round failed: client errors %v, rejected %v", f.ClientErrs, f.Rejected)
	}
	if err := f.ServerStep(); err != nil {
		return nil, err
	}
	progress("ConsistencyCheck")
	if err := f.Step(); err != nil {
		return nil, err
	}
	progress("Unmask")
	if err := f.ClientsStep(); err != nil {
		return nil, err
	}
	// Baselines right before and after, so the server's ratio sees the
	// same machine load.
	nks := len(ks)
	baseline()
	t0 = time.Now()
	if _, err := f.Server.Finish(); err != nil {
		return nil, err
	}
	res.ServerUnmaskS = time.Since(t0).Seconds()
	baseline()
	serverKS := median(ks[nks:])
	sum, surv, err := f.Server.Result()
	if err != nil {
		return nil, err
	}
	res.Survivors = len(surv)
	res.Exact = slices.Equal(sum, f.PlainSum(surv))

	res.ClientMaskS = median(client)
	res.KeystreamS = median(ks)
	res.MaskKernelS = median(kernel)
	if haveCPUTime {
		res.ClientMaskCPUS, res.KeystreamCPUS = median(clientCPU), median(ksCPU)
		if res.KeystreamCPUS > 0 {
			res.ClientOverKeystreamCPU = res.ClientMaskCPUS / res.KeystreamCPUS
			res.KernelOverKeystreamCPU = median(kernelCPU) / res.KeystreamCPUS
		}
	}
	res.ClientOverKeystream = res.ClientMaskS / res.KeystreamS
	res.KernelOverKeystream = res.MaskKernelS / res.KeystreamS
	u3, dropped := int64(len(surv)), int64(c.Dropouts)
	res.ServerMaskWords = (u3 + dropped*u3) * int64(c.Params)
	perWord := serverKS / float64(int64(c.Sites)*int64(c.Params))
	res.ServerOverKeystream = res.ServerUnmaskS / (perWord * float64(res.ServerMaskWords))
	res.BytesPerClient = f.BytesUp[1]
	res.BytesToClient = f.BytesDown[1]
	res.ExpansionFactor = float64(res.BytesPerClient) / float64(4*c.Params)
	return res, nil
}
