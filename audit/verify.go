package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/fedtune/fedtune/audit/merkle"
)

// EpsilonFunc computes a site's cumulative ε at delta from the JSON of all
// the DP events it has spent so far, in log order (the events members of
// its dp.spend entries). The dp package's accountant provides it.
type EpsilonFunc func(events []json.RawMessage, delta float64) (float64, error)

// EpsilonTolerance is the relative difference between a recorded and a
// recomputed ε above which the verifier reports a mismatch.
const EpsilonTolerance = 1e-6

// VerifyOptions configures [Verify].
type VerifyOptions struct {
	// Policy holds the keys the verifier trusts. If nil, the bundle's own
	// policy.json is used, which proves only that the bundle is
	// self-consistent; compliance officers pass the policy they obtained
	// independently.
	Policy *ParsedPolicy
	// Epsilon recomputes cumulative ε from DP events. If nil, recorded ε
	// values are checked only for monotonicity and caps, and the result
	// says so in Notes.
	Epsilon EpsilonFunc
	// Workers is the parallelism of entry parsing; 0 means GOMAXPROCS.
	Workers int
	// Progress, if set, is called from several goroutines with the number
	// of entries just parsed, a few thousand at a time.
	Progress func(entries int)
}

// Problem is one reason a bundle does not verify.
type Problem struct {
	Entry  int64  `json:"entry"`          // entry index, or -1 when the problem is not about one entry
	File   string `json:"file,omitempty"` // bundle file, when the problem is in one
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	switch {
	case p.Entry >= 0:
		return fmt.Sprintf("entry %d: %s", p.Entry, p.Reason)
	case p.File != "":
		return fmt.Sprintf("%s: %s", p.File, p.Reason)
	}
	return p.Reason
}

// LedgerPoint is one dp.spend of a site as the verifier saw it.
type LedgerPoint struct {
	Entry             int64   `json:"entry"`
	Round             uint64  `json:"round"`
	Time              string  `json:"time"`
	Delta             float64 `json:"delta"`
	EpsilonCumulative float64 `json:"epsilon_cumulative"`
	EpsilonCap        float64 `json:"epsilon_cap"`
	// EpsilonRecomputed is ε recomputed from the events, when an
	// EpsilonFunc was given.
	EpsilonRecomputed *float64 `json:"epsilon_recomputed,omitempty"`
}

// Result is the outcome of [Verify].
type Result struct {
	OK           bool                     `json:"ok"`
	Entries      int                      `json:"entries"`
	Checkpoints  int                      `json:"checkpoints"`
	TreeSize     uint64                   `json:"tree_size"` // size of the newest valid checkpoint
	RootHash     string                   `json:"root_hash,omitempty"`
	Cosigners    []string                 `json:"cosigners"` // witnesses that cosigned the newest checkpoint
	Quorum       int                      `json:"quorum"`
	PolicySource string                   `json:"policy_source"` // "bundle" or "caller"
	Problems     []Problem                `json:"problems"`
	Notes        []string                 `json:"notes"`  // anomalies that do not make the bundle invalid
	Ledger       map[string][]LedgerPoint `json:"ledger"` // per site
	// Parsed holds the parsed entries by index (nil where an entry did not parse).
	Parsed []*Entry `json:"-"`
}

func (r *Result) problem(entry int64, file, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Entry: entry, File: file, Reason: fmt.Sprintf(format, args...)})
}

// Verify checks an exported bundle offline: every entry parses and is
// canonical, the Merkle tree rebuilt from the entries matches every signed
// checkpoint, every signature and cosignature verifies under the policy,
// the newest checkpoint covers every entry and has a quorum of witness
// cosignatures, no two checkpoints of one size differ, every site-signed
// entry carries a valid signature by a key the site enrolled, and each
// site's recorded cumulative ε matches the recomputation and stays under
// its cap. The result lists every problem found.
func Verify(b *Bundle, opts VerifyOptions) *Result {
	r := &Result{Problems: []Problem{}, Notes: []string{}, Cosigners: []string{}, Ledger: map[string][]LedgerPoint{}}
	pol := opts.Policy
	r.PolicySource = "caller"
	if pol == nil {
		r.PolicySource = "bundle"
		p, err := ParsePolicy(b.Policy)
		if err != nil {
			r.problem(-1, BundlePolicy, "%v", err)
		} else {
			pol = p
			r.Notes = append(r.Notes, "keys taken from the bundle's own policy.json: this shows the bundle is self-consistent, not who signed it; pass --policy with independently obtained keys")
		}
	}

	lines, complete := EntryLines(b.Entries)
	if !complete {
		r.problem(int64(len(lines)-1), BundleEntries, "last line has no newline (file truncated?)")
	}
	r.Entries = len(lines)
	r.Parsed = make([]*Entry, len(lines))
	leaves := make([]merkle.Hash, len(lines))
	errs := make([]error, len(lines))
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	chunk := (len(lines) + workers - 1) / workers
	for w := 0; w < workers && w*chunk < len(lines); w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(lines))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				leaves[i] = merkle.LeafHash(lines[i])
				r.Parsed[i], errs[i] = ParseEntry(lines[i])
				if opts.Progress != nil && (i-lo)%4096 == 4095 {
					opts.Progress(4096)
				}
			}
			if opts.Progress != nil {
				opts.Progress((hi - lo) % 4096)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			r.problem(int64(i), BundleEntries, "line %d: %v", i+1, err)
		}
	}

	if pol != nil {
		r.Quorum = pol.Quorum
		verifyCheckpoints(r, b, pol, leaves)
	}
	verifySemantics(r, opts.Epsilon, workers)
	// File-level problems first, then by entry, each group in the order found.
	sort.SliceStable(r.Problems, func(i, j int) bool { return r.Problems[i].Entry < r.Problems[j].Entry })
	r.OK = len(r.Problems) == 0
	return r
}

func verifyCheckpoints(r *Result, b *Bundle, pol *ParsedPolicy, leaves []merkle.Hash) {
	type cpf struct {
		file string
		sc   *SignedCheckpoint
	}
	var cps []cpf
	bySize := map[uint64]cpf{}
	for _, f := range b.Checkpoints {
		file := BundleCheckpoints + "/" + f.Name
		sc, err := OpenCheckpoint(f.Data, pol.Log, pol.Witnesses)
		if err != nil {
			r.problem(-1, file, "%v", err)
			continue
		}
		if prev, ok := bySize[sc.Size]; ok && prev.sc.Root != sc.Root {
			r.problem(-1, file, "equivocation: size %d signed with root %x here and %x in %s", sc.Size, sc.Root[:], prev.sc.Root[:], prev.file)
			continue
		}
		bySize[sc.Size] = cpf{file, sc}
		cps = append(cps, cpf{file, sc})
	}
	r.Checkpoints = len(b.Checkpoints)
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].sc.Size < cps[j].sc.Size })

	// Stream the leaves once, comparing roots at each checkpoint size.
	var bld merkle.Builder
	n := uint64(len(leaves))
	lastGood := uint64(0)
	var newest *cpf
	for i := range cps {
		c := &cps[i]
		if c.sc.Size > n {
			r.problem(-1, c.file, "checkpoint commits to %d entries but the bundle has only %d (entries removed or truncated)", c.sc.Size, n)
			continue
		}
		for bld.Size() < c.sc.Size {
			bld.AppendLeafHash(leaves[bld.Size()])
		}
		if bld.Root() != c.sc.Root {
			at := int64(-1)
			if lastGood == c.sc.Size-1 {
				at = int64(lastGood) // exactly one candidate entry
			}
			r.problem(at, c.file, "root of entries 0..%d does not match the signed root: an entry in %d..%d was altered, inserted, removed or reordered", c.sc.Size-1, lastGood, c.sc.Size-1)
			continue
		}
		lastGood = c.sc.Size
		newest = c
	}
	if newest == nil {
		if n > 0 || len(cps) == 0 {
			r.problem(-1, BundleCheckpoints, "no valid signed checkpoint covers the entries")
		}
		return
	}
	r.TreeSize = newest.sc.Size
	r.RootHash = fmt.Sprintf("%x", newest.sc.Root[:])
	if newest.sc.Size < n {
		r.problem(int64(newest.sc.Size), BundleEntries, "entries %d..%d are not covered by any valid signed checkpoint", newest.sc.Size, n-1)
	}
	// The newest checkpoint carries the cosignatures that make it final;
	// cosignatures on any checkpoint of the same size count too.
	seen := map[string]bool{}
	for _, c := range cps {
		if c.sc.Size == newest.sc.Size && c.sc.Root == newest.sc.Root {
			for _, cs := range c.sc.Cosignatures {
				seen[cs.Witness] = true
			}
		}
	}
	for w := range seen {
		r.Cosigners = append(r.Cosigners, w)
	}
	sort.Strings(r.Cosigners)
	if len(r.Cosigners) < pol.Quorum {
		r.problem(-1, newest.file, "witness quorum not met: %d of the required %d witnesses cosigned the newest checkpoint (size %d)", len(r.Cosigners), pol.Quorum, newest.sc.Size)
	}
}

type siteState struct {
	key     ed25519.PublicKey
	revoked bool
	events  []json.RawMessage
	lastEps float64
	lastCap float64
	delta   float64
	spends  int
}

func relDiff(a, b float64) float64 {
	d := math.Abs(a - b)
	if m := math.Max(math.Abs(a), math.Abs(b)); m > 0 {
		return d / m
	}
	return d
}

func verifySemantics(r *Result, eps EpsilonFunc, workers int) {
	sites := map[string]*siteState{}
	site := func(id string) *siteState {
		s := sites[id]
		if s == nil {
			s = &siteState{}
			sites[id] = s
		}
		return s
	}
	var lastTime string
	var jobs []epsJob
	for i, e := range r.Parsed {
		idx := int64(i)
		if e == nil {
			continue
		}
		for _, ref := range e.Refs {
			if ref >= uint64(i) {
				r.problem(idx, "", "refs: %d does not point to an earlier entry", ref)
			}
		}
		if lastTime != "" && e.Time < lastTime {
			r.Notes = append(r.Notes, fmt.Sprintf("entry %d: time %s is earlier than the previous entry's %s (the log orders entries; it does not vouch for clocks)", i, e.Time, lastTime))
		}
		lastTime = e.Time
		switch e.Kind {
		case SiteEnrolled:
			k, _ := base64.StdEncoding.DecodeString(e.Site.PublicKey)
			s := site(e.Site.ID)
			if s.revoked {
				r.problem(idx, "", "site %s enrolled again after it was revoked", e.Site.ID)
			}
			s.key = k
		case SiteRevoked:
			site(e.Site.ID).revoked = true
		case DPSpendKind:
			d := e.DP
			s := site(d.Site)
			switch {
			case s.key == nil:
				r.problem(idx, "", "dp.spend of site %s, which has not enrolled a key", d.Site)
			case s.revoked:
				r.problem(idx, "", "dp.spend of site %s after it was revoked", d.Site)
			default:
				if err := e.VerifySiteSignature(s.key); err != nil {
					r.problem(idx, "", "site_signature of site %s does not verify with its enrolled key (forged or altered entry)", d.Site)
				}
			}
			pt := LedgerPoint{Entry: idx, Round: *e.Round, Time: e.Time, Delta: d.Delta, EpsilonCumulative: d.EpsilonCumulative, EpsilonCap: d.EpsilonCap}
			if s.spends > 0 {
				if d.EpsilonCumulative < s.lastEps {
					r.problem(idx, "", "site %s: cumulative ε decreased from %v to %v", d.Site, s.lastEps, d.EpsilonCumulative)
				}
				if d.Delta != s.delta {
					r.Notes = append(r.Notes, fmt.Sprintf("entry %d: site %s changed δ from %v to %v", i, d.Site, s.delta, d.Delta))
				}
				if d.EpsilonCap > s.lastCap {
					r.Notes = append(r.Notes, fmt.Sprintf("entry %d: site %s raised its ε cap from %v to %v", i, d.Site, s.lastCap, d.EpsilonCap))
				}
			}
			if d.EpsilonCumulative > d.EpsilonCap {
				r.problem(idx, "", "site %s: cumulative ε %v exceeds its cap %v", d.Site, d.EpsilonCumulative, d.EpsilonCap)
			}
			s.events = append(s.events, d.Events)
			if eps != nil {
				jobs = append(jobs, epsJob{entry: idx, site: d.Site, events: s.events[:len(s.events):len(s.events)],
					delta: d.Delta, recorded: d.EpsilonCumulative, cap: d.EpsilonCap, point: len(r.Ledger[d.Site])})
			}
			s.lastEps, s.lastCap, s.delta = d.EpsilonCumulative, d.EpsilonCap, d.Delta
			s.spends++
			r.Ledger[d.Site] = append(r.Ledger[d.Site], pt)
		}
	}
	if eps == nil && len(r.Ledger) > 0 {
		r.Notes = append(r.Notes, "cumulative ε was not recomputed from the DP events (no accountant given); only monotonicity and caps were checked")
	}
	if eps != nil {
		recomputeEpsilon(r, eps, jobs, workers)
	}
}

// epsJob is one recomputation: the site's events up to and including one
// dp.spend entry.
type epsJob struct {
	entry    int64
	site     string
	events   []json.RawMessage
	delta    float64
	recorded float64
	cap      float64
	point    int // index into r.Ledger[site]
	got      float64
	err      error
}

// recomputeEpsilon runs the accountant for every spend, in parallel (the
// computations are independent), and reports in entry order. Spends with
// byte-identical event histories and δ (sites of one federation sharing a
// DP configuration) are computed once.
func recomputeEpsilon(r *Result, eps EpsilonFunc, jobs []epsJob, workers int) {
	first := map[string]int{} // history key → index of the job that computes it
	same := make([]int, len(jobs))
	var unique []int
	for i := range jobs {
		k := epsKey(&jobs[i])
		if f, ok := first[k]; ok {
			same[i] = f
			continue
		}
		first[k] = i
		same[i] = i
		unique = append(unique, i)
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				jobs[i].got, jobs[i].err = eps(jobs[i].events, jobs[i].delta)
			}
		}()
	}
	for _, i := range unique {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, f := range same {
		jobs[i].got, jobs[i].err = jobs[f].got, jobs[f].err
	}
	for i := range jobs {
		j := &jobs[i]
		if j.err != nil {
			r.problem(j.entry, "", "site %s: recomputing ε from dp.events: %v", j.site, j.err)
			continue
		}
		got := j.got
		r.Ledger[j.site][j.point].EpsilonRecomputed = &got
		if relDiff(got, j.recorded) > EpsilonTolerance {
			r.problem(j.entry, "", "site %s: recorded cumulative ε %v, recomputed %v from its DP events", j.site, j.recorded, got)
		}
		if got > j.cap*(1+EpsilonTolerance) {
			r.problem(j.entry, "", "site %s: recomputed cumulative ε %v exceeds its cap %v", j.site, got, j.cap)
		}
	}
}

// epsKey identifies a recomputation by its inputs: δ and the events'
// bytes, each length-prefixed so that no two histories share a key.
func epsKey(j *epsJob) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%x;", math.Float64bits(j.delta))
	for _, e := range j.events {
		fmt.Fprintf(&b, "%d:", len(e))
		b.Write(e)
	}
	return b.String()
}
