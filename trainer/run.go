package trainer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	dpnoise "github.com/google/differential-privacy/go/v3/noise"

	"github.com/fedtune/fedtune/dp"
	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/dp/ledger"
	"github.com/fedtune/fedtune/dp/noise"
	"github.com/fedtune/fedtune/internal/atomicfile"
	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/tokenizer"
)

// Files written into the output directory.
const (
	ReportFile = "training_report.json"
	PlotFile   = "training_report.png"
	runFile    = "run.json"
	ckptPtr    = "checkpoint.json"
)

// ErrFinished is returned when the output directory already holds a
// finished run.
var ErrFinished = errors.New("output directory already holds a finished run")

// Report is training_report.json.
type Report struct {
	RunID   string `json:"run_id"`
	Private bool   `json:"private"`
	// Note says plainly when the run has no privacy guarantee.
	Note              string           `json:"note,omitempty"`
	Epsilon           *float64         `json:"epsilon"`
	Delta             float64          `json:"delta"`
	NoiseMultiplier   float64          `json:"noise_multiplier"`
	SamplingRate      float64          `json:"sampling_rate"`
	Steps             int              `json:"steps"`
	Accountant        string           `json:"accountant"`
	Event             json.RawMessage  `json:"event,omitempty"`
	ExpectedBatchSize int              `json:"expected_batch_size"`
	MaxGradNorm       float64          `json:"max_grad_norm"`
	Records           int              `json:"records"`
	EvalRecords       int              `json:"eval_records"`
	Truncated         int              `json:"truncated_records"`
	DatasetSHA256     string           `json:"dataset_sha256"`
	TrainLossFirst    Float            `json:"train_loss_first"`
	TrainLossLast     Float            `json:"train_loss_last"`
	EvalLossBefore    *float64         `json:"eval_loss_before"`
	EvalLossAfter     *float64         `json:"eval_loss_after"`
	ClippedFraction   float64          `json:"clipped_fraction"`
	TrainLoss         []Float          `json:"train_loss"`
	EpsilonCurve      []CurvePoint     `json:"epsilon_curve,omitempty"`
	Ledger            *LedgerPlan      `json:"ledger,omitempty"`
	Released          *Released        `json:"released,omitempty"`
	ResumedFromStep   int              `json:"resumed_from_step,omitempty"`
	LoRA              model.LoRAConfig `json:"lora"`
	Optimizer         string           `json:"optimizer"`
	LR                float64          `json:"lr"`
	Schedule          string           `json:"schedule"`
	Seconds           float64          `json:"seconds"`
	Adapter           string           `json:"adapter"`
	Plot              string           `json:"plot"`
}

// Released are statistics released with Google's differential-privacy
// library (Gaussian noise), safe to share beyond the site.
type Released struct {
	Records     int64    `json:"records"`
	EvalRecords *int64   `json:"eval_records,omitempty"`
	EvalLoss    *float64 `json:"eval_loss,omitempty"`
	Epsilon     float64  `json:"epsilon_each"`
	Delta       float64  `json:"delta_each"`
}

// runMeta is run.json: written before the spend, it makes the run id
// durable so that a resumed run finds its spend.
type runMeta struct {
	RunID        string `json:"run_id"`
	ConfigDigest string `json:"config_digest"`
	Finished     bool   `json:"finished"`
}

// ckptState is a checkpoint's state.json.
type ckptState struct {
	Step           int      `json:"step"`
	TrainLoss      []Float  `json:"train_loss"`
	Clipped        int64    `json:"clipped"`
	Seen           int64    `json:"seen"`
	OptimizerT     int      `json:"optimizer_t"`
	OptimizerSHA   string   `json:"optimizer_sha256"`
	EvalLossBefore *float64 `json:"eval_loss_before"`
}

// Run trains an adapter as cfg says; see the package documentation.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	start := cfg.Now()
	// 1. Plan and check the budget: nothing is parsed or written before.
	meta, resumed, err := readRunMeta(cfg.OutDir)
	if err != nil {
		return nil, err
	}
	p, led, err := plan(&cfg, meta.RunID)
	if err != nil {
		return nil, err
	}
	digest := configDigest(&cfg, p)
	if resumed {
		if meta.ConfigDigest != digest {
			return nil, fmt.Errorf("%s holds a checkpoint of a different run (other data or settings): use another output directory", cfg.OutDir)
		}
		if meta.Finished {
			return nil, fmt.Errorf("%s: %w", cfg.OutDir, ErrFinished)
		}
	}

	// 2. Model, tokenizer, data.
	m := cfg.Model
	if m == nil {
		if m, err = model.Load(cfg.ModelDir); err != nil {
			return nil, err
		}
	}
	tok := cfg.Tokenizer
	if tok == nil && cfg.ModelDir != "" {
		if t, err := tokenizer.Load(filepath.Join(cfg.ModelDir, "tokenizer.json")); err == nil {
			tok = t
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	lo := LoadOptions{MaxLength: cfg.MaxLength, Strict: cfg.Strict, Vocab: m.Config.VocabSize}
	train, err := LoadJSONL(cfg.DataPath, tok, lo)
	if err != nil {
		return nil, err
	}
	if len(train.Examples) != p.Records || train.SHA256 != p.DatasetSHA256 {
		return nil, fmt.Errorf("%s changed while the run was being planned", cfg.DataPath)
	}
	var eval *Dataset
	if cfg.EvalDataPath != "" {
		if eval, err = LoadJSONL(cfg.EvalDataPath, tok, lo); err != nil {
			return nil, err
		}
	}
	var ad *model.Adapter
	if cfg.InitAdapter != "" {
		if ad, err = model.LoadAdapter(cfg.InitAdapter, m); err != nil {
			return nil, err
		}
		cfg.LoRA = ad.Config
	} else if ad, err = model.NewAdapter(m, cfg.LoRA); err != nil {
		return nil, err
	}

	// 3. Make the run id durable, then record the spend.
	if !resumed {
		var id [16]byte
		if _, err := io.ReadFull(cfg.Entropy, id[:]); err != nil {
			return nil, fmt.Errorf("run id: %w", err)
		}
		meta = runMeta{RunID: hex.EncodeToString(id[:]), ConfigDigest: digest}
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return nil, err
		}
		if err := writeJSONAtomic(filepath.Join(cfg.OutDir, runFile), meta); err != nil {
			return nil, err
		}
	}
	if led != nil {
		params, _ := json.Marshal(map[string]any{"sampling_rate": p.SamplingRate, "noise_multiplier": p.NoiseMultiplier,
			"steps": p.Steps, "expected_batch_size": cfg.ExpectedBatchSize, "max_grad_norm": cfg.MaxGradNorm,
			"delta": cfg.Delta, "epsilon_run": p.Epsilon, "accountant": p.Accountant, "out": cfg.OutDir})
		eps, _, err := led.Spend(ledger.Spend{RunID: meta.RunID, Purpose: cfg.Purpose, Dataset: cfg.DataPath,
			DatasetSHA256: p.DatasetSHA256, Records: p.Records, Event: p.Event, Params: params}, cfg.Now())
		if err != nil {
			if !resumed {
				os.Remove(filepath.Join(cfg.OutDir, runFile))
				os.Remove(cfg.OutDir) // only if empty
			}
			return nil, err
		}
		p.Ledger.Projected = eps
	}

	// 4. Train.
	r := &Report{RunID: meta.RunID, Private: !cfg.NoDP, Delta: cfg.Delta, NoiseMultiplier: p.NoiseMultiplier,
		SamplingRate: p.SamplingRate, Steps: p.Steps, Accountant: p.Accountant, ExpectedBatchSize: cfg.ExpectedBatchSize,
		MaxGradNorm: cfg.MaxGradNorm, Records: p.Records, Truncated: train.Truncated, DatasetSHA256: p.DatasetSHA256,
		Ledger: p.Ledger, LoRA: cfg.LoRA, Optimizer: cfg.Optimizer, LR: cfg.LR, Schedule: cfg.Schedule}
	if eval != nil {
		r.EvalRecords = len(eval.Examples)
		r.Truncated += eval.Truncated
	}
	if cfg.NoDP {
		r.Note = "NON-PRIVATE BASELINE: no clipping, no noise; this adapter has no differential-privacy guarantee"
	} else {
		e := p.Epsilon
		r.Epsilon = &e
		r.Event, _ = accounting.MarshalEvent(p.Event)
	}
	if err := train1(ctx, &cfg, m, ad, train, eval, p, r); err != nil {
		return nil, err
	}

	// 5. Outputs.
	if err := ad.SaveAdapter(cfg.OutDir, cfg.ModelDir); err != nil {
		return nil, err
	}
	r.Adapter = cfg.OutDir
	r.Plot = filepath.Join(cfg.OutDir, PlotFile)
	if err := writePlot(r.Plot, r); err != nil {
		return nil, err
	}
	r.Seconds = cfg.Now().Sub(start).Seconds()
	if err := writeJSONAtomic(filepath.Join(cfg.OutDir, ReportFile), r); err != nil {
		return nil, err
	}
	meta.Finished = true
	if err := writeJSONAtomic(filepath.Join(cfg.OutDir, runFile), meta); err != nil {
		return nil, err
	}
	return r, nil
}

// train1 runs (or resumes) the optimisation loop and fills the loss fields
// of r.
func train1(ctx context.Context, cfg *Config, m *model.Model, ad *model.Adapter, train, eval *Dataset, p *Plan, r *Report) error {
	maxSeq := 2
	for _, ex := range train.Examples {
		maxSeq = max(maxSeq, len(ex.InputIDs))
	}
	if eval != nil {
		for _, ex := range eval.Examples {
			maxSeq = max(maxSeq, len(ex.InputIDs))
		}
	}
	mb := cfg.MicroBatch
	tr := m.NewTrainer(ad, model.TrainerOptions{MaxBatch: mb, MaxSeq: maxSeq})
	nParams := ad.NumTrainable()
	opt, err := newOptimizer(cfg, nParams)
	if err != nil {
		return err
	}

	// Randomness: seeded runs derive every step's sampler from the seed;
	// others use one sampler keyed from Entropy.
	var runSampler *noise.Sampler
	var dropoutBase uint64
	if cfg.Seeded {
		dropoutBase = cfg.Seed
	} else {
		if runSampler, err = noise.New(cfg.Entropy); err != nil {
			return err
		}
		dropoutBase = runSampler.Uint64()
	}
	samplerFor := func(step int) *noise.Sampler {
		if runSampler != nil {
			return runSampler
		}
		return noise.NewSeeded(stepSeed(cfg.Seed, step))
	}

	state := ckptState{}
	startStep := 0
	if st, ok, err := loadCheckpoint(cfg.OutDir, m, ad, opt); err != nil {
		return err
	} else if ok {
		state = st
		startStep = st.Step
		r.ResumedFromStep = st.Step
	}

	// Eval loss before training (or as recorded by the first attempt).
	if eval != nil {
		if startStep > 0 && state.EvalLossBefore != nil {
			r.EvalLossBefore = state.EvalLossBefore
		} else {
			l, err := meanLoss(tr, eval.Examples, mb)
			if err != nil {
				return err
			}
			r.EvalLossBefore = &l
			state.EvalLossBefore = &l
		}
	}

	// ε over steps: RDP of one step scales linearly with the step count.
	orders := accounting.DefaultOrders()
	var rdp1 []float64
	if !cfg.NoDP {
		if rdp1, err = accounting.RDP(accounting.PoissonSampled{SamplingRate: p.SamplingRate,
			Event: accounting.Gaussian{NoiseMultiplier: p.NoiseMultiplier}}, orders); err != nil {
			return err
		}
	}
	epsAt := func(t int) float64 {
		if rdp1 == nil {
			return 0
		}
		v := make([]float64, len(rdp1))
		for i := range v {
			v[i] = rdp1[i] * float64(t)
		}
		e, _, _ := accounting.EpsilonFromRDP(orders, v, cfg.Delta)
		return e
	}

	grads := make([][]float32, mb)
	for i := range grads {
		grads[i] = make([]float32, nParams)
	}
	losses := make([]float64, mb)
	sum := make([]float64, nParams)
	update := make([]float32, nParams)
	var idx []int
	batch := make([]model.Example, 0, mb)
	params := ad.Trainable()

	for step := startStep; step < p.Steps; step++ {
		if err := ctx.Err(); err != nil {
			if cerr := saveCheckpoint(cfg.OutDir, step, ad, opt, state); cerr != nil {
				return errors.Join(err, cerr)
			}
			return err
		}
		s := samplerFor(step)
		tr.SetDropoutSeed(mix(dropoutBase, uint64(step)))
		idx, err = dp.PoissonSample(idx[:0], len(train.Examples), p.SamplingRate, s)
		if err != nil {
			return err
		}
		clear(sum)
		var lossSum float64
		for off := 0; off < len(idx); off += mb {
			batch = batch[:0]
			for _, i := range idx[off:min(off+mb, len(idx))] {
				batch = append(batch, train.Examples[i])
			}
			if cfg.NoDP {
				if err := tr.BatchGrad(batch, update, losses[:len(batch)]); err != nil {
					return err
				}
				for j, v := range update {
					sum[j] += float64(v)
				}
			} else {
				if err := tr.PerExampleGrads(batch, grads[:len(batch)], losses[:len(batch)]); err != nil {
					return err
				}
				for k := range batch {
					norm, err := dp.ClipAdd(sum, grads[k], cfg.MaxGradNorm)
					if err != nil {
						return fmt.Errorf("step %d: %w", step+1, err)
					}
					if norm > cfg.MaxGradNorm {
						state.Clipped++
					}
				}
			}
			state.Seen += int64(len(batch))
			for _, l := range losses[:len(batch)] {
				lossSum += l
			}
		}
		if err := dp.NoisyMean(update, sum, p.NoiseMultiplier, cfg.MaxGradNorm, float64(cfg.ExpectedBatchSize), s); err != nil {
			return err
		}
		opt.step(params, update, learningRate(cfg.Schedule, cfg.LR, step, cfg.WarmupSteps, p.Steps))
		stepLoss := math.NaN()
		if len(idx) > 0 {
			stepLoss = lossSum / float64(len(idx))
		}
		state.TrainLoss = append(state.TrainLoss, Float(stepLoss))
		state.Step = step + 1
		if cfg.Progress != nil {
			cfg.Progress(Progress{Step: step + 1, Steps: p.Steps, Loss: stepLoss, Epsilon: epsAt(step + 1), Batch: len(idx)})
		}
		if state.Step%cfg.CheckpointEvery == 0 && state.Step < p.Steps {
			if err := saveCheckpoint(cfg.OutDir, state.Step, ad, opt, state); err != nil {
				return err
			}
		}
	}
	if err := saveCheckpoint(cfg.OutDir, p.Steps, ad, opt, state); err != nil {
		return err
	}

	r.TrainLoss = state.TrainLoss
	r.TrainLossFirst, r.TrainLossLast = firstLast(state.TrainLoss)
	if state.Seen > 0 && !cfg.NoDP {
		r.ClippedFraction = float64(state.Clipped) / float64(state.Seen)
	}
	if !cfg.NoDP {
		if r.EpsilonCurve, err = epsilonCurve(cfg, p); err != nil {
			return err
		}
	}
	if eval != nil {
		l, err := meanLoss(tr, eval.Examples, mb)
		if err != nil {
			return err
		}
		r.EvalLossAfter = &l
	}
	if p.Release != nil {
		rel, err := release(tr, train, eval, mb, p.Release)
		if err != nil {
			return err
		}
		r.Released = rel
	}
	return nil
}

// CurvePoint is ε (by the run's accountant, at the run's δ) after Step
// DP-SGD steps.
type CurvePoint struct {
	Step    int     `json:"step"`
	Epsilon float64 `json:"epsilon"`
}

// epsilonCurve evaluates ε after up to 12 evenly spaced step counts with the
// run's accountant (PLD on a 1e-3 grid for the intermediate points, which is
// still an upper bound).
func epsilonCurve(cfg *Config, p *Plan) ([]CurvePoint, error) {
	const points = 12
	var out []CurvePoint
	for i := 1; i <= points; i++ {
		t := int(math.Round(float64(i) * float64(p.Steps) / points))
		if t < 1 || (len(out) > 0 && out[len(out)-1].Step == t) {
			continue
		}
		ev := accounting.DPSGD(p.SamplingRate, p.NoiseMultiplier, t)
		var e float64
		var err error
		switch {
		case t == p.Steps && p.Release == nil:
			e = p.Epsilon // the run's reported ε
		case cfg.Accountant == accounting.AccountantPLD:
			e, err = accounting.EpsilonPLD(ev, cfg.Delta, &accounting.PLDOptions{Interval: 1e-3})
		default:
			e, err = accounting.EpsilonRDP(ev, cfg.Delta, nil)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, CurvePoint{Step: t, Epsilon: e})
	}
	return out, nil
}

// firstLast returns the first and last finite losses (steps with an empty
// Poisson sample have none).
func firstLast(ls []Float) (first, last Float) {
	first, last = Float(math.NaN()), Float(math.NaN())
	for _, l := range ls {
		if !math.IsNaN(float64(l)) {
			if math.IsNaN(float64(first)) {
				first = l
			}
			last = l
		}
	}
	return first, last
}

func meanLoss(tr *model.Trainer, exs []model.Example, mb int) (float64, error) {
	losses := make([]float64, mb)
	var s float64
	for off := 0; off < len(exs); off += mb {
		b := exs[off:min(off+mb, len(exs))]
		if err := tr.Losses(b, losses[:len(b)]); err != nil {
			return 0, err
		}
		for _, l := range losses[:len(b)] {
			s += l
		}
	}
	return s / float64(len(exs)), nil
}

// release computes the statistics shared beyond the site with Google's
// differential-privacy library: Gaussian noise on the training record count,
// the eval record count and the sum of clamped eval losses.
func release(tr *model.Trainer, train, eval *Dataset, mb int, rp *ReleasePlan) (*Released, error) {
	g := dpnoise.Gaussian()
	n, err := g.AddNoiseInt64(int64(len(train.Examples)), 1, 1, rp.Epsilon, rp.Delta)
	if err != nil {
		return nil, err
	}
	rel := &Released{Records: n, Epsilon: rp.Epsilon, Delta: rp.Delta}
	if eval == nil {
		return rel, nil
	}
	ne, err := g.AddNoiseInt64(int64(len(eval.Examples)), 1, 1, rp.Epsilon, rp.Delta)
	if err != nil {
		return nil, err
	}
	losses := make([]float64, mb)
	var s float64
	for off := 0; off < len(eval.Examples); off += mb {
		b := eval.Examples[off:min(off+mb, len(eval.Examples))]
		if err := tr.Losses(b, losses[:len(b)]); err != nil {
			return nil, err
		}
		for _, l := range losses[:len(b)] {
			s += math.Min(math.Max(l, 0), rp.LossBound)
		}
	}
	ns, err := g.AddNoiseFloat64(s, 1, rp.LossBound, rp.Epsilon, rp.Delta)
	if err != nil {
		return nil, err
	}
	rel.EvalRecords = &ne
	if ne > 0 {
		l := ns / float64(ne)
		rel.EvalLoss = &l
	}
	return rel, nil
}

func stepSeed(seed uint64, step int) [32]byte {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(step))
	return sha256.Sum256(append([]byte("fedtune trainer step seed\n"), b[:]...))
}

func mix(a, b uint64) uint64 {
	h := sha256.Sum256(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, a), b))
	return binary.LittleEndian.Uint64(h[:8])
}

// configDigest identifies a run's settings and data for resuming.
func configDigest(c *Config, p *Plan) string {
	b, _ := json.Marshal(map[string]any{
		"model": c.ModelDir, "data": p.DatasetSHA256, "eval": c.EvalDataPath, "steps": p.Steps, "q": p.SamplingRate,
		"sigma": p.NoiseMultiplier, "B": c.ExpectedBatchSize, "C": c.MaxGradNorm, "lora": c.LoRA, "init": c.InitAdapter,
		"opt": c.Optimizer, "lr": c.LR, "mom": c.Momentum, "wd": c.WeightDecay, "b1": c.Beta1, "b2": c.Beta2,
		"warmup": c.WarmupSteps, "sched": c.Schedule, "nodp": c.NoDP, "seeded": c.Seeded, "seed": c.Seed,
		"maxlen": c.MaxLength, "strict": c.Strict, "site": c.SiteDir, "micro": c.MicroBatch,
	})
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readRunMeta(dir string) (runMeta, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, runFile))
	if errors.Is(err, fs.ErrNotExist) {
		return runMeta{}, false, nil
	}
	if err != nil {
		return runMeta{}, false, err
	}
	var m runMeta
	if err := json.Unmarshal(b, &m); err != nil || m.RunID == "" {
		return runMeta{}, false, fmt.Errorf("%s: not a run record: %v", filepath.Join(dir, runFile), err)
	}
	return m, true, nil
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}
