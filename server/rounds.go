package server

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fedtune/fedtune/aggregator"
	"github.com/fedtune/fedtune/aggregator/round"
	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/model"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"google.golang.org/protobuf/proto"
)

// stagePublishing marks, in the rounds table, a round whose new global
// adapter is written to disk but not yet recorded as published.
const stagePublishing = 8

// tickInterval is the length of one tick of the round state machine: the
// driver loop wakes this often, and stage deadlines are counted in ticks.
const tickInterval = 50 * time.Millisecond

// roundDriver runs rounds. It owns one aggregator/round.Machine per round:
// the driver loop advances the machine's clock with Tick, arriving messages
// and refusals go in through Receive and Withdraw, and the driver loop
// alone carries out each Ready the machine returns, in the documented
// order: persist the stage, append the audit entries, hand the stage's
// output to the sites, then publish the result or end the aborted round.
// One round runs at a time.
type roundDriver struct {
	s *Server

	mu      sync.Mutex
	cur     *activeRound
	last    *pb.RoundStatus // last finished round, for sites that ask late
	changed chan struct{}   // closed and replaced on every state change
	kick    chan struct{}   // wakes the driver loop when a Ready is pending

	model  *model.Model
	global *model.Adapter
	opt    aggregator.ServerOptimizer
	ver    uint64 // current global adapter version
}

type activeRound struct {
	cfg      *pb.RoundConfig
	m        *round.Machine
	start    time.Time      // wall time of the machine's tick 0
	stage    pb.Stage       // the stage persisted last: what sites see
	expected []string       // the sites expected in stage
	sites    []string       // roster order: SiteID = index+1
	ids      map[string]int // site → SiteID
	// pending holds the Ready batches that Receive and Withdraw returned,
	// for the driver loop to carry out in order.
	pending []round.Ready
	outputs map[pb.Stage]map[string][]byte // stage → site → its output of stage
}

func newRoundDriver(s *Server) *roundDriver {
	return &roundDriver{s: s, changed: make(chan struct{}), kick: make(chan struct{}, 1)}
}

func (d *roundDriver) notify() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *roundDriver) wakeAll() {
	d.mu.Lock()
	d.notify()
	d.mu.Unlock()
}

// loadGlobal loads the base model and the latest published adapter (or a
// fresh one) and the server optimizer state.
func (d *roundDriver) loadGlobal(ctx context.Context) error {
	s := d.s
	m, err := model.Load(s.cfg.BaseModel)
	if err != nil {
		return fmt.Errorf("base_model: %w", err)
	}
	d.model = m
	pubs, err := s.st.published(ctx)
	if err != nil {
		return err
	}
	if len(pubs) > 0 {
		p := pubs[len(pubs)-1]
		if d.global, err = model.LoadAdapter(p.Dir, m); err != nil {
			return fmt.Errorf("published version %d: %w", p.Version, err)
		}
		d.ver = p.Version
	} else {
		r := s.cfg.Round
		if d.global, err = model.NewAdapter(m, model.LoRAConfig{R: r.LoraRank, Alpha: r.LoraAlpha, TargetModules: r.TargetModules, FFA: r.FFA, ASeed: r.ASeed}); err != nil {
			return fmt.Errorf("round: %w", err)
		}
	}
	switch s.cfg.Round.ServerOptimizer {
	case "fedadam":
		o := aggregator.NewFedAdam(s.cfg.Round.ServerLR)
		if st, err := s.st.getMeta(ctx, "optimizer"); err != nil {
			return err
		} else if st != nil {
			if err := o.UnmarshalState(st); err != nil {
				return fmt.Errorf("optimizer state: %w", err)
			}
		}
		d.opt = o
	default:
		d.opt = &aggregator.FedAvg{LR: s.cfg.Round.ServerLR}
	}
	return nil
}

// recover brings the database and the audit log back in line after a
// crash: a round caught publishing is completed, any other unfinished
// round is aborted.
func (d *roundDriver) recover(ctx context.Context) error {
	s := d.s
	last, err := s.st.lastRound(ctx)
	if err != nil {
		return err
	}
	if last != nil {
		switch {
		case last.Stage == stagePublishing:
			if err := d.completePublishing(ctx, last); err != nil {
				return err
			}
		case last.Stage != stageDone && last.Stage != stageAborted:
			reason := fmt.Sprintf("aggregator restarted during stage %s", pb.Stage(last.Stage))
			if err := s.st.setRoundStage(ctx, last.Round, stageAborted, last.Participants, reason, s.now()); err != nil {
				return err
			}
			if _, err := s.record(ctx, Event{Kind: audit.RoundAborted, Round: u64p(last.Round), Outcome: audit.OutcomeAborted, Reason: reason}); err != nil {
				return err
			}
			s.metrics.rounds.inc("aborted")
		}
	}
	if err := d.loadGlobal(ctx); err != nil {
		return err
	}
	if last, err = s.st.lastRound(ctx); err != nil {
		return err
	}
	if last != nil {
		var cfg pb.RoundConfig
		if err := proto.Unmarshal(last.Config, &cfg); err != nil {
			return fmt.Errorf("round %d config: %w", last.Round, err)
		}
		d.last = &pb.RoundStatus{Round: last.Round, Stage: pb.Stage(last.Stage), Config: &cfg, AbortReason: last.AbortReason,
			AdapterVersion: last.AdapterVersion, Participants: splitList(last.Participants)}
	}
	return nil
}

// completePublishing finishes a round whose adapter directory was written
// before a crash: model.published is appended unless the log already has it.
func (d *roundDriver) completePublishing(ctx context.Context, r *roundRow) error {
	s := d.s
	ver := r.AdapterVersion
	dir := filepath.Join(s.cfg.DataDir, "published", fmt.Sprintf("v%d", ver))
	digest, err := DirDigest(dir)
	if err != nil {
		return fmt.Errorf("round %d: published adapter %s: %w", r.Round, dir, err)
	}
	idx, found, err := d.findPublished(ctx, r.Round)
	if err != nil {
		return err
	}
	if !found {
		if idx, err = s.record(ctx, Event{Kind: audit.ModelPublished, Round: u64p(r.Round),
			Objects: []audit.Object{{Type: "adapter", ID: fmt.Sprintf("v%d", ver), Digest: digest}}}); err != nil {
			return err
		}
	}
	return s.st.completeRound(ctx, publishedRow{Version: ver, Round: r.Round, Digest: digest, Dir: dir, AuditIndex: idx}, splitList(r.Participants), s.now())
}

// findPublished scans the audit log backwards for round's model.published.
func (d *roundDriver) findPublished(ctx context.Context, round uint64) (uint64, bool, error) {
	// Entries appended just before a crash are integrated but may not yet
	// be under a signed checkpoint; the log signs one within its interval.
	time.Sleep(3 * CheckpointInterval)
	size, err := d.s.audit.Size()
	if err != nil {
		return 0, false, err
	}
	for i := size; i > 0; {
		start := uint64(0)
		if i > 256 {
			start = i - 256
		}
		ents, err := d.s.audit.Entries(ctx, start, i-start)
		if err != nil {
			return 0, false, err
		}
		for j := len(ents) - 1; j >= 0; j-- {
			e, err := audit.ParseEntry(ents[j])
			if err != nil {
				return 0, false, err
			}
			if e.Kind == audit.ModelPublished && e.Round != nil && *e.Round == round {
				return start + uint64(j), true, nil
			}
			if e.Kind == audit.RoundOpened && e.Round != nil && *e.Round == round {
				return 0, false, nil
			}
		}
		i = start
	}
	return 0, false, nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// current returns the status of the running round, or of the last one.
func (d *roundDriver) current() *pb.RoundStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.statusLocked()
}

func (d *roundDriver) statusLocked() *pb.RoundStatus {
	if r := d.cur; r != nil {
		return &pb.RoundStatus{Round: r.cfg.Round, Stage: r.stage, Config: r.cfg, Participants: r.expected}
	}
	if d.last != nil {
		return d.last
	}
	return &pb.RoundStatus{}
}

func (r *activeRound) names(ids []secagg.SiteID) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, r.sites[id-1])
	}
	return out
}

// run is the driver loop until ctx is done: every tick (and at once when
// a message leaves a Ready pending) it carries out the pending Ready
// batches, advances the round machine's clock to the wall clock, and opens
// automatic rounds.
func (d *roundDriver) run(ctx context.Context) {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	var nextAuto time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
		d.mu.Lock()
		if d.cur != nil {
			d.stepLocked(ctx)
			if d.cur == nil {
				// The pause between automatic rounds starts when one ends.
				nextAuto = d.s.now().Add(d.s.cfg.Schedule.Interval.D())
			}
		}
		idle := d.cur == nil
		d.mu.Unlock()
		sch := d.s.cfg.Schedule
		if idle && sch.Rounds > 0 && !d.s.now().Before(nextAuto) {
			done, err := d.s.st.roundsByStage(ctx)
			if err == nil && done[stageDone] < sch.Rounds {
				if _, err := d.open(ctx, Identity{Role: RoleServer}); err == nil {
					nextAuto = time.Time{}
				} else if !errors.Is(err, errNotEnoughSites) {
					d.s.log.Printf("open round: %v", err)
					nextAuto = d.s.now().Add(time.Second)
				}
			}
		}
	}
}

var errNotEnoughSites = errors.New("not enough enrolled sites")

// open starts a new round with every enrolled site.
func (d *roundDriver) open(ctx context.Context, by Identity) (*pb.RoundStatus, error) {
	s := d.s
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil {
		return nil, fmt.Errorf("round %d is still running (stage %s)", d.cur.cfg.Round, d.cur.stage)
	}
	rows, err := s.st.sites(ctx)
	if err != nil {
		return nil, err
	}
	var sites []string
	var roster secagg.Roster
	for _, r := range rows {
		if r.Status != "enrolled" || r.CertNotAfter < s.now().Unix() {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(r.IdentityKey)
		if err != nil {
			return nil, fmt.Errorf("site %s identity key: %w", r.Name, err)
		}
		ek, ok := pub.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("site %s identity key is %T, want Ed25519", r.Name, pub)
		}
		sites = append(sites, r.Name)
		roster = append(roster, []byte(ek))
	}
	rc := s.cfg.Round
	if len(sites) < rc.MinSites {
		return nil, fmt.Errorf("%w: %d enrolled, round.min_sites is %d", errNotEnoughSites, len(sites), rc.MinSites)
	}
	t := rc.Threshold
	if 2*t <= len(sites) {
		t = len(sites)/2 + 1 // secagg requires 2t > n
	}
	last, err := s.st.lastRound(ctx)
	if err != nil {
		return nil, err
	}
	rnd := uint64(1)
	if last != nil {
		rnd = last.Round + 1
	}
	minHonest := rc.MinHonestSites
	if minHonest == 0 {
		minHonest = t
	}
	dim := d.global.NumTrainable()
	scale := aggregator.ChooseScale(dim, rc.ClipNorm, rc.DistributedNoiseStd, len(sites), minHonest)
	acfg := aggregator.Config{Dim: dim, ClipNorm: rc.ClipNorm, Scale: scale, MaxSites: len(sites), NoiseStd: rc.DistributedNoiseStd, MinHonest: minHonest}
	if err := acfg.Validate(); err != nil {
		return nil, fmt.Errorf("quantization (round.distributed_noise_std, round.min_honest_sites): %w", err)
	}
	seed := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, seed); err != nil {
		return nil, err
	}
	cfg := &pb.RoundConfig{
		Federation: s.cfg.Federation, Round: rnd, BaseModelDigest: s.baseDigest,
		Lora: &pb.LoraConfig{Rank: uint32(rc.LoraRank), Alpha: rc.LoraAlpha, TargetModules: rc.TargetModules, Ffa: rc.FFA, ASeed: rc.ASeed},
		Dp: &pb.DPConfig{NoiseMultiplier: rc.NoiseMultiplier, ExpectedBatchSize: uint32(rc.ExpectedBatchSize), Steps: uint32(rc.Steps),
			MaxGradNorm: rc.MaxGradNorm, Delta: rc.Delta, LearningRate: rc.LearningRate},
		ClipNorm: rc.ClipNorm, Threshold: uint32(t), Sites: sites, Params: uint64(dim), AdapterVersion: d.ver,
		RoundSeed: seed, QuantScale: scale, PaddedLen: uint64(acfg.PaddedDim()),
		MaxMessageBytes: uint64(s.cfg.Limits.MaxMessageBytes), ChunkWords: uint32(s.cfg.Limits.MaxMessageBytes / 8),
		StageTimeoutMs: rc.StageTimeout.D().Milliseconds(), TrainTimeoutMs: rc.TrainTimeout.D().Milliseconds(),
		Roster: roster, DistributedNoiseStd: rc.DistributedNoiseStd, MinHonestSites: uint32(minHonest),
	}
	params := secaggParams(cfg)
	if err := params.Validate(); err != nil {
		return nil, fmt.Errorf("secure aggregation: %w", err)
	}
	// Sites train before they advertise their keys, so the first stage's
	// deadline covers local training.
	m, rd, err := round.New(round.Config{Params: params, Roster: roster, MinSites: t, Deadlines: map[secagg.Stage]uint64{
		secagg.StageAdvertiseKeys:    ticks(rc.TrainTimeout.D()),
		secagg.StageShareKeys:        ticks(rc.StageTimeout.D()),
		secagg.StageMaskedInput:      ticks(rc.StageTimeout.D()),
		secagg.StageConsistencyCheck: ticks(rc.StageTimeout.D()),
		secagg.StageUnmask:           ticks(rc.StageTimeout.D()),
	}})
	if err != nil {
		return nil, err
	}
	raw, err := proto.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	now := s.now()
	ids := map[string]int{}
	for i, n := range sites {
		ids[n] = i + 1
	}
	r := &activeRound{cfg: cfg, m: m, start: now, sites: sites, ids: ids, outputs: map[pb.Stage]map[string][]byte{}}
	// The machine's first Ready: persist, then audit (the first stage's
	// StageOpened is the round.opened entry); the first stage sends nothing.
	r.stage, r.expected = pb.Stage(rd.Persist.Stage), r.names(rd.Persist.Expected)
	if err := s.st.insertRound(ctx, roundRow{Round: rnd, Stage: int32(r.stage), Config: raw, Participants: strings.Join(r.expected, ",")}, now); err != nil {
		return nil, err
	}
	if _, err := s.record(ctx, Event{Kind: audit.RoundOpened, Round: u64p(rnd), Actor: actorID(by), Auth: authMethod(by),
		Objects: []audit.Object{{Type: "model", ID: "base", Digest: s.baseDigest}, {Type: "round", ID: fmt.Sprintf("%d", rnd)}},
		Message: fmt.Sprintf("sites=%s threshold=%d params=%d sigma=%g steps=%d batch=%d distributed_noise_std=%g min_honest_sites=%d",
			strings.Join(sites, ","), t, dim, rc.NoiseMultiplier, rc.Steps, rc.ExpectedBatchSize, rc.DistributedNoiseStd, minHonest)}); err != nil {
		return nil, err
	}
	s.hook("round.opened")
	d.cur = r
	d.notify()
	return d.statusLocked(), nil
}

// ticks converts a timeout into whole ticks of the round machine, rounding
// up.
func ticks(timeout time.Duration) uint64 {
	return uint64(max(1, (timeout+tickInterval-1)/tickInterval))
}

// secaggParams are the secure-aggregation parameters of a round config.
func secaggParams(cfg *pb.RoundConfig) secagg.Params {
	return secagg.Params{FederationID: cfg.Federation, Round: cfg.Round, N: len(cfg.Sites), T: int(cfg.Threshold),
		VectorLen: int(cfg.PaddedLen), PQ: cfg.Pq, SigAlg: secagg.Ed25519}
}

// AggregatorConfig is the quantization configuration every site of a round
// uses; sites and the aggregator derive it from the round config. A round
// config without min_honest_sites assumes the secure-aggregation threshold.
func AggregatorConfig(cfg *pb.RoundConfig) aggregator.Config {
	minHonest := int(cfg.MinHonestSites)
	if minHonest == 0 {
		minHonest = int(cfg.Threshold)
	}
	return aggregator.Config{Dim: int(cfg.Params), ClipNorm: cfg.ClipNorm, Scale: cfg.QuantScale, MaxSites: len(cfg.Sites),
		NoiseStd: cfg.DistributedNoiseStd, MinHonest: minHonest}
}

// participant returns the running round and site's SiteID in it.
func (d *roundDriver) participant(site string, rnd uint64) (*activeRound, secagg.SiteID, error) {
	r := d.cur
	if r == nil || r.cfg.Round != rnd {
		return nil, 0, fmt.Errorf("round %d is not running", rnd)
	}
	id, ok := r.ids[site]
	if !ok {
		return nil, 0, fmt.Errorf("site %s is not a participant of round %d", site, rnd)
	}
	return r, secagg.SiteID(id), nil
}

// queue leaves a Ready for the driver loop and wakes it.
func (d *roundDriver) queue(r *activeRound, rd round.Ready) {
	if rd.Persist == nil && len(rd.Events) == 0 && len(rd.Send) == 0 && rd.Result == nil && rd.Abort == nil {
		return
	}
	r.pending = append(r.pending, rd)
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// receive hands one site's message to the round machine.
func (d *roundDriver) receive(site string, rnd uint64, stage pb.Stage, payload []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, id, err := d.participant(site, rnd)
	if err != nil {
		return err
	}
	if stage != r.stage {
		return fmt.Errorf("round %d is in stage %s, message is for %s", rnd, r.stage, stage)
	}
	var msg secagg.Message
	switch stage {
	case pb.Stage_STAGE_ADVERTISE_KEYS:
		msg, err = secagg.UnmarshalAdvertiseKeys(payload)
	case pb.Stage_STAGE_SHARE_KEYS:
		msg, err = secagg.UnmarshalShareKeys(payload)
	case pb.Stage_STAGE_CONSISTENCY_CHECK:
		msg, err = secagg.UnmarshalConsistencySig(payload)
	case pb.Stage_STAGE_UNMASK:
		msg, err = secagg.UnmarshalUnmaskShares(payload)
	default:
		return fmt.Errorf("stage %s does not take SubmitSecAgg (masked inputs are streamed)", stage)
	}
	if err != nil {
		return err
	}
	rd, err := r.m.Receive(id, msg)
	if err != nil {
		return err
	}
	d.queue(r, rd)
	return nil
}

// receiveMasked hands a reassembled masked input to the round machine.
func (d *roundDriver) receiveMasked(site string, m *secagg.MaskedInput) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, id, err := d.participant(site, m.Round)
	if err != nil {
		return err
	}
	if r.stage != pb.Stage_STAGE_MASKED_INPUT {
		return fmt.Errorf("round %d is in stage %s, not accepting masked inputs", m.Round, r.stage)
	}
	rd, err := r.m.Receive(id, m)
	if err != nil {
		return err
	}
	d.queue(r, rd)
	return nil
}

// refusedDetail is the reason recorded in secagg.dropout for a site that
// refused the round.
const refusedDetail = "site refused the round"

// refuse records that a site declined the round: the machine stops
// waiting for it.
func (d *roundDriver) refuse(site string, rnd uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, id, err := d.participant(site, rnd)
	if err != nil {
		return err
	}
	rd, err := r.m.Withdraw(id, refusedDetail)
	if err != nil {
		return err
	}
	d.queue(r, rd)
	return nil
}

// stepLocked carries out the pending Ready batches, then ticks the machine
// until its clock has caught up with the wall clock, carrying out each
// tick's Ready.
func (d *roundDriver) stepLocked(ctx context.Context) {
	r := d.cur
	for d.cur == r && len(r.pending) > 0 {
		rd := r.pending[0]
		r.pending = r.pending[1:]
		d.handleLocked(ctx, rd)
	}
	owed := uint64(max(0, d.s.now().Sub(r.start)/tickInterval))
	for d.cur == r && !r.m.Done() && r.m.Now() < owed {
		d.handleLocked(ctx, r.m.Tick())
	}
}

// handleLocked carries out one Ready of the round machine in the order its
// documentation requires:
//
//  1. persist the new stage and its expected sites in the rounds table
//     (StageDone is persisted by the publishing path, which marks the round
//     publishing first, and StageAborted by the abort path);
//  2. append the audit entries: site.dropped → secagg.dropout,
//     round.aborted → round.aborted;
//  3. make the stage's outputs available to the sites (AwaitStage);
//  4. publish the result, or end the aborted round.
func (d *roundDriver) handleLocked(ctx context.Context, rd round.Ready) {
	s := d.s
	r := d.cur
	var reason string
	if rd.Abort != nil {
		reason = fmt.Sprintf("stage %s: %s: %s", pb.Stage(rd.Abort.Stage), rd.Abort.Reason, rd.Abort.Detail)
	}
	finished := r.stage
	advanced := false
	if p := rd.Persist; p != nil {
		switch p.Stage {
		case secagg.StageAborted:
			if err := s.st.setRoundStage(ctx, r.cfg.Round, stageAborted, "", reason, s.now()); err != nil {
				s.log.Printf("persist abort of round %d: %v", r.cfg.Round, err)
			}
		case secagg.StageDone:
			s.hook("stage.finished." + finished.String())
		default:
			s.hook("stage.finished." + finished.String())
			next, expected := pb.Stage(p.Stage), r.names(p.Expected)
			if err := s.st.setRoundStage(ctx, r.cfg.Round, int32(next), strings.Join(expected, ","), "", s.now()); err != nil {
				d.recordEventsLocked(ctx, drops(rd.Events), "")
				d.abortLocked(ctx, fmt.Sprintf("persist stage %s: %v", next, err))
				return
			}
			r.stage, r.expected, advanced = next, expected, true
		}
	}
	d.recordEventsLocked(ctx, rd.Events, reason)
	if advanced {
		outputs := map[string][]byte{}
		for _, o := range rd.Send {
			outputs[r.sites[o.To-1]] = o.Msg.Marshal()
		}
		r.outputs[finished] = outputs
		d.notify()
	}
	switch {
	case rd.Result != nil:
		d.publishLocked(ctx, rd.Result)
	case rd.Abort != nil:
		d.endAbortedLocked(reason)
	}
}

// recordEventsLocked appends the audit entries of the machine's events;
// reason is the round's abort reason, if it aborted.
func (d *roundDriver) recordEventsLocked(ctx context.Context, events []round.Event, reason string) {
	s := d.s
	r := d.cur
	for _, e := range events {
		switch e.Kind {
		case round.SiteDropped:
			why := e.Detail
			if why == round.NoMessage {
				why = "no message before the stage deadline"
			}
			if _, err := s.record(ctx, Event{Kind: audit.SecAggDropout, Round: u64p(r.cfg.Round), Outcome: audit.OutcomeFailed,
				Reason: why, Objects: []audit.Object{{Type: "site", ID: r.sites[e.Site-1]}}, Message: "stage " + pb.Stage(e.Stage).String()}); err != nil {
				s.log.Printf("audit: %v", err)
			}
		case round.RoundAborted:
			if _, err := s.record(ctx, Event{Kind: audit.RoundAborted, Round: u64p(r.cfg.Round), Outcome: audit.OutcomeAborted, Reason: reason}); err != nil {
				s.log.Printf("audit: %v", err)
			}
		}
		// StageOpened needs no entry of its own (round.opened covers the
		// first stage); RoundCompleted is recorded by publishing as
		// aggregate.produced and model.published.
	}
}

// abortLocked ends the round for a reason outside the machine (an
// operator's decision, a failed write, an undecodable aggregate): the
// machine is stopped, drop-outs it reported in batches not yet carried out
// are audited, and the abort is persisted, audited and then ended.
func (d *roundDriver) abortLocked(ctx context.Context, reason string) {
	s := d.s
	r := d.cur
	r.m.Abort(reason)
	for _, rd := range r.pending {
		d.recordEventsLocked(ctx, drops(rd.Events), "")
	}
	r.pending = nil
	if err := s.st.setRoundStage(ctx, r.cfg.Round, stageAborted, "", reason, s.now()); err != nil {
		s.log.Printf("persist abort of round %d: %v", r.cfg.Round, err)
	}
	if _, err := s.record(ctx, Event{Kind: audit.RoundAborted, Round: u64p(r.cfg.Round), Outcome: audit.OutcomeAborted, Reason: reason}); err != nil {
		s.log.Printf("audit: %v", err)
	}
	d.endAbortedLocked(reason)
}

// drops returns the SiteDropped events of events.
func drops(events []round.Event) []round.Event {
	var out []round.Event
	for _, e := range events {
		if e.Kind == round.SiteDropped {
			out = append(out, e)
		}
	}
	return out
}

// endAbortedLocked forgets the aborted round once it is persisted and
// audited; sites that ask learn the reason.
func (d *roundDriver) endAbortedLocked(reason string) {
	s := d.s
	r := d.cur
	s.log.Printf("round %d aborted: %s", r.cfg.Round, reason)
	s.metrics.rounds.inc("aborted")
	d.last = &pb.RoundStatus{Round: r.cfg.Round, Stage: pb.Stage_STAGE_ABORTED, Config: r.cfg, AbortReason: reason}
	d.cur = nil
	d.notify()
}

// publishLocked decodes the unmasked sum, steps the global adapter and
// publishes it. Order: write the adapter directory, mark the round
// publishing in the database, append aggregate.produced and
// model.published, then complete the round in one transaction.
func (d *roundDriver) publishLocked(ctx context.Context, res *round.Result) {
	s := d.s
	r := d.cur
	sum, survivors := res.Sum, res.Survivors
	var seed [32]byte
	copy(seed[:], r.cfg.RoundSeed)
	total, err := aggregator.Decode(AggregatorConfig(r.cfg), sum, seed)
	if err != nil {
		d.abortLocked(ctx, fmt.Sprintf("decode: %v", err))
		return
	}
	avg := aggregator.Average(total, len(survivors))
	next := d.global.Clone()
	if err := d.opt.Step(next.Trainable(), avg); err != nil {
		d.abortLocked(ctx, fmt.Sprintf("server optimizer: %v", err))
		return
	}
	var names []string
	for _, id := range survivors {
		names = append(names, r.sites[id-1])
	}
	sort.Strings(names)
	ver := d.ver + 1
	dir := filepath.Join(s.cfg.DataDir, "published", fmt.Sprintf("v%d", ver))
	if err := d.writeVersion(ctx, next, dir, r, ver, names); err != nil {
		d.abortLocked(ctx, fmt.Sprintf("publish: %v", err))
		return
	}
	digest, err := DirDigest(dir)
	if err != nil {
		d.abortLocked(ctx, fmt.Sprintf("publish: %v", err))
		return
	}
	rnd := r.cfg.Round
	if _, err := s.st.db.ExecContext(ctx, `UPDATE rounds SET stage = ?, adapter_version = ?, participants = ? WHERE round = ?`,
		stagePublishing, ver, strings.Join(names, ","), rnd); err != nil {
		d.abortLocked(ctx, fmt.Sprintf("persist: %v", err))
		return
	}
	s.hook("publish.written")
	if _, err := s.record(ctx, Event{Kind: audit.AggregateProduced, Round: u64p(rnd),
		Objects: []audit.Object{{Type: "aggregate", ID: fmt.Sprintf("round-%d", rnd), Digest: digestOfVector(sum)}},
		Message: fmt.Sprintf("survivors=%s", strings.Join(names, ","))}); err != nil {
		s.log.Printf("audit: %v", err)
	}
	s.hook("aggregate.recorded")
	idx, err := s.record(ctx, Event{Kind: audit.ModelPublished, Round: u64p(rnd),
		Objects: []audit.Object{{Type: "adapter", ID: fmt.Sprintf("v%d", ver), Digest: digest}}})
	if err != nil {
		s.log.Printf("audit: %v (the round completes at the next start)", err)
		return
	}
	s.hook("published.recorded")
	// Sites cosign right after the round ends: let the log sign a
	// checkpoint that covers the publication first.
	if err := s.audit.AwaitCheckpoint(ctx, idx+1); err != nil {
		s.log.Printf("audit checkpoint: %v", err)
	}
	if o, ok := d.opt.(*aggregator.FedAdam); ok {
		if st, err := o.MarshalState(); err == nil {
			_ = s.st.putMeta(ctx, "optimizer", st)
		}
	}
	if err := s.st.completeRound(ctx, publishedRow{Version: ver, Round: rnd, Digest: digest, Dir: dir, AuditIndex: idx}, names, s.now()); err != nil {
		s.log.Printf("complete round %d: %v (the round completes at the next start)", rnd, err)
		return
	}
	d.global, d.ver = next, ver
	s.metrics.rounds.inc("completed")
	s.log.Printf("round %d complete: %d sites, published adapter v%d %s", rnd, len(names), ver, digest)
	d.last = &pb.RoundStatus{Round: rnd, Stage: pb.Stage_STAGE_DONE, Config: r.cfg, AdapterVersion: ver, Participants: names}
	d.cur = nil
	d.notify()
}

// await blocks until the site's output of stage is ready, the round ends,
// or wait elapses.
func (d *roundDriver) await(ctx context.Context, site string, round uint64, stage pb.Stage, wait time.Duration) (*pb.StageOutput, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		d.mu.Lock()
		ch := d.changed
		r := d.cur
		var res *pb.StageOutput
		switch {
		case r != nil && r.cfg.Round == round:
			if out, ok := r.outputs[stage]; ok {
				p, ok := out[site]
				if !ok {
					res = &pb.StageOutput{Round: round, Stage: stage, AbortReason: "site dropped from the round at stage " + stage.String()}
				} else {
					res = &pb.StageOutput{Round: round, Stage: stage, Ready: true, Payload: p}
				}
			}
		case d.last != nil && d.last.Round == round:
			if d.last.Stage == pb.Stage_STAGE_ABORTED {
				res = &pb.StageOutput{Round: round, Stage: stage, AbortReason: d.last.AbortReason}
			} else {
				res = &pb.StageOutput{Round: round, Stage: pb.Stage_STAGE_DONE, Ready: true}
			}
		default:
			res = &pb.StageOutput{Round: round, Stage: stage, AbortReason: fmt.Sprintf("round %d is not running", round)}
		}
		d.mu.Unlock()
		if res != nil {
			return res, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return &pb.StageOutput{Round: round, Stage: stage}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waitChange blocks until the round state changes, ctx is done or wait
// elapses, and returns the status then.
func (d *roundDriver) waitChange(ctx context.Context, known *pb.RoundStatus, wait time.Duration) *pb.RoundStatus {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		d.mu.Lock()
		st := d.statusLocked()
		ch := d.changed
		d.mu.Unlock()
		if known == nil || st.Round != known.Round || st.Stage != known.Stage {
			return st
		}
		select {
		case <-ch:
		case <-timer.C:
			return st
		case <-ctx.Done():
			return st
		}
	}
}

// roundStatus returns the stored status of a finished round.
func (d *roundDriver) roundStatus(ctx context.Context, round uint64) (*pb.RoundStatus, error) {
	var r roundRow
	err := d.s.st.db.QueryRowContext(ctx, `SELECT round, stage, config, participants, abort_reason, adapter_version FROM rounds WHERE round = ?`, round).
		Scan(&r.Round, &r.Stage, &r.Config, &r.Participants, &r.AbortReason, &r.AdapterVersion)
	if err != nil {
		return nil, err
	}
	var cfg pb.RoundConfig
	if err := proto.Unmarshal(r.Config, &cfg); err != nil {
		return nil, err
	}
	return &pb.RoundStatus{Round: r.Round, Stage: pb.Stage(r.Stage), Config: &cfg, AbortReason: r.AbortReason,
		AdapterVersion: r.AdapterVersion, Participants: splitList(r.Participants)}, nil
}
