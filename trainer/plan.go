package trainer

import (
	"errors"
	"fmt"
	"math"

	dpnoise "github.com/google/differential-privacy/go/v3/noise"

	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/dp/ledger"
	"github.com/fedtune/fedtune/dp/ledger/ledgerfs"
)

// Plan is what a run will do and spend, worked out without reading the
// records' contents.
type Plan struct {
	Records         int     `json:"records"`
	DatasetSHA256   string  `json:"dataset_sha256"`
	SamplingRate    float64 `json:"sampling_rate"`
	Steps           int     `json:"steps"`
	NoiseMultiplier float64 `json:"noise_multiplier"`
	Delta           float64 `json:"delta"`
	Accountant      string  `json:"accountant"`
	// Epsilon is this run's ε at Delta, alone (0 for a non-private run).
	Epsilon float64 `json:"epsilon"`
	// Event is the run's privacy event (nil for a non-private run).
	Event accounting.Event `json:"-"`
	// With a ledger: ε spent before the run and after it, and the cap.
	Ledger *LedgerPlan `json:"ledger,omitempty"`
	// Release holds the noise of the released statistics, if any.
	Release *ReleasePlan `json:"release,omitempty"`
}

// LedgerPlan is the ledger's view of a run.
type LedgerPlan struct {
	// Spent is the ledger's ε before this run; Projected after it.
	Spent     float64 `json:"epsilon_spent_before"`
	Projected float64 `json:"epsilon_after"`
	Cap       float64 `json:"epsilon_cap"`
	Delta     float64 `json:"delta"`
}

// ReleasePlan is the noise of the statistics released with Google's library.
type ReleasePlan struct {
	Epsilon float64 `json:"epsilon_each"`
	Delta   float64 `json:"delta_each"`
	// Sigma of the counts (sensitivity 1) and of the eval-loss sum
	// (sensitivity LossBound).
	CountSigma float64 `json:"count_sigma"`
	LossSigma  float64 `json:"loss_sigma"`
	LossBound  float64 `json:"loss_bound"`
}

// ErrDeltaTooLarge refuses δ ≥ 1/N, which would allow releasing a record.
var ErrDeltaTooLarge = errors.New("delta must be below 1/records")

// Projected works out the privacy cost of cfg: record count (by counting
// lines), sampling rate, steps, noise multiplier (calibrated when a target ε
// is given) and ε, and with a ledger the cumulative ε after the run. It
// returns a *ledger.BudgetError when the run would exceed the site's cap.
// It reads only the line structure of the data file and the ledger.
func Projected(cfg Config) (*Plan, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	resumeID := ""
	if cfg.OutDir != "" {
		if m, ok, err := readRunMeta(cfg.OutDir); err == nil && ok {
			resumeID = m.RunID
		}
	}
	p, _, err := plan(&cfg, resumeID)
	return p, err
}

// plan works out the run's event and checks it against the ledger. A run
// resuming under resumeID whose spend is already recorded is not charged
// again.
func plan(cfg *Config, resumeID string) (*Plan, *ledger.Ledger, error) {
	var led *ledger.Ledger
	if cfg.SiteDir != "" {
		l, err := ledger.Open(ledgerfs.Dir{Path: cfg.SiteDir})
		if err != nil {
			return nil, nil, fmt.Errorf("site ledger: %w", err)
		}
		led = l
		if cfg.Delta == 0 {
			cfg.Delta = l.Config().Delta
		}
	}
	n, sum, err := CountRecords(cfg.DataPath)
	if err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, &DataError{File: cfg.DataPath, Msg: "no records (empty dataset)"}
	}
	p := &Plan{Records: n, DatasetSHA256: sum, Accountant: string(cfg.Accountant), Delta: cfg.Delta}
	b := cfg.ExpectedBatchSize
	if b > n {
		return nil, nil, fmt.Errorf("expected batch size %d is larger than the %d records", b, n)
	}
	p.SamplingRate = float64(b) / float64(n)
	p.Steps = cfg.Steps
	if p.Steps == 0 {
		p.Steps = int(math.Ceil(cfg.Epochs * float64(n) / float64(b)))
	}
	if p.Steps < 1 {
		return nil, nil, fmt.Errorf("the run has no steps")
	}
	if cfg.NoDP {
		return p, nil, nil
	}
	if cfg.Delta == 0 {
		return nil, nil, fmt.Errorf("delta is required (or a site ledger to take it from)")
	}
	if cfg.Delta >= 1/float64(n) {
		return nil, nil, fmt.Errorf("%w: delta %g ≥ 1/%d records = %g", ErrDeltaTooLarge, cfg.Delta, n, 1/float64(n))
	}
	if cfg.ReleaseEpsilon > 0 && cfg.ReleaseDelta >= 1/float64(n) {
		return nil, nil, fmt.Errorf("%w: release delta %g ≥ 1/%d", ErrDeltaTooLarge, cfg.ReleaseDelta, n)
	}
	p.NoiseMultiplier = cfg.NoiseMultiplier
	if cfg.TargetEpsilon > 0 {
		s, err := accounting.Calibrate(cfg.Accountant, p.SamplingRate, p.Steps, cfg.TargetEpsilon, cfg.Delta, nil)
		if err != nil {
			return nil, nil, err
		}
		p.NoiseMultiplier = s
	}
	if float64(4*b+64) >= 0x1p19*p.NoiseMultiplier {
		// The snapped noise needs |sum| < 2^19·σC (package dp/noise).
		return nil, nil, fmt.Errorf("expected batch size %d is too large for noise multiplier %g (need 4B+64 < 2^19·σ)", b, p.NoiseMultiplier)
	}
	ev := accounting.DPSGD(p.SamplingRate, p.NoiseMultiplier, p.Steps)
	if p.Epsilon, err = accounting.Epsilon(cfg.Accountant, ev, cfg.Delta); err != nil {
		return nil, nil, err
	}
	p.Event = ev
	if cfg.ReleaseEpsilon > 0 {
		rp := &ReleasePlan{Epsilon: cfg.ReleaseEpsilon, Delta: cfg.ReleaseDelta, LossBound: lossBound}
		rp.CountSigma = dpnoise.SigmaForGaussian(1, 1, cfg.ReleaseEpsilon, cfg.ReleaseDelta)
		rp.LossSigma = dpnoise.SigmaForGaussian(1, lossBound, cfg.ReleaseEpsilon, cfg.ReleaseDelta)
		p.Release = rp
		// Three Gaussian releases: train count, eval count, eval loss sum
		// (each noise multiplier = σ / sensitivity).
		p.Event = accounting.Composed{Events: []accounting.Event{ev,
			accounting.Gaussian{NoiseMultiplier: rp.CountSigma},
			accounting.Gaussian{NoiseMultiplier: rp.CountSigma},
			accounting.Gaussian{NoiseMultiplier: rp.LossSigma / lossBound}}}
	}
	if led != nil {
		if e, ok := led.Find(resumeID); ok {
			p.Ledger = &LedgerPlan{Spent: led.Spent(), Projected: e.EpsilonAfter, Cap: led.Config().EpsilonCap, Delta: led.Config().Delta}
			return p, led, nil
		}
		proj, err := led.Check(p.Event)
		p.Ledger = &LedgerPlan{Spent: led.Spent(), Projected: proj, Cap: led.Config().EpsilonCap, Delta: led.Config().Delta}
		if err != nil {
			return p, led, err
		}
	}
	return p, led, nil
}

// lossBound clamps each eval example's loss before the released sum.
const lossBound = 20.0
