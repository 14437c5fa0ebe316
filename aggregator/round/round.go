// Package round is the aggregator's round state machine: it wraps the
// secure-aggregation server (crypto/secagg) with stage deadlines counted in
// ticks, a minimum number of participants, abort reasons, and an output
// batch that tells the driver what to persist, what to record and what to
// send, in that order.
//
// Like etcd's raft, the machine does no I/O and reads no clock. The driver
// calls Tick at a fixed interval (the tick length is the driver's choice),
// hands it each authenticated message with Receive, and after every call
// processes the returned Ready:
//
//  1. if Ready.Persist is set, make it durable (the round's stage, deadline
//     and expected sites) before doing anything else;
//  2. append Ready.Events to the audit log;
//  3. send Ready.Send to the sites;
//  4. if Ready.Result is set, decode and publish the aggregate; if
//     Ready.Abort is set, the round is over without a result.
//
// A driver that crashes between steps restarts from what it persisted: a
// round whose state says it was mid-protocol cannot be resumed (the secagg
// state machines hold their secrets in memory only) and is aborted cleanly,
// so no input is ever released twice or half-way.
package round

import (
	"errors"
	"fmt"

	"github.com/fedtune/fedtune/crypto/secagg"
)

// DefaultTicks is the deadline of a stage without one in Config.Deadlines.
const DefaultTicks = 100

// Config describes one round.
type Config struct {
	// Params and Roster are the secure-aggregation round parameters and the
	// sites' identity keys, in SiteID order.
	Params secagg.Params
	Roster secagg.Roster
	// MinSites is the fewest sites that may remain after any stage; it must
	// be at least Params.T. Fewer aborts the round with TooFewSites.
	MinSites int
	// Deadlines gives each stage's length in ticks, counted from the tick
	// the stage opened. The stage during which sites train locally needs a
	// deadline that covers the training: AdvertiseKeys for sites that
	// train before they advertise their keys, MaskedInput for sites that
	// train between ShareKeys and MaskedInput.
	Deadlines map[secagg.Stage]uint64
}

// AbortReason classifies why a round ended without a result.
type AbortReason string

// Abort reasons.
const (
	TooFewSites   AbortReason = "too_few_sites"  // fewer than MinSites (or T) answered a stage
	ProtocolError AbortReason = "protocol_error" // the secure-aggregation server aborted
	Operator      AbortReason = "operator"       // the driver called Abort
)

// Abort says why the round ended.
type Abort struct {
	Reason AbortReason
	Stage  secagg.Stage
	Detail string
}

// EventKind names an auditable event.
type EventKind string

// Events the machine reports.
const (
	StageOpened    EventKind = "stage.opened"
	SiteDropped    EventKind = "site.dropped"    // an expected site sent nothing before the deadline, or withdrew
	RoundAborted   EventKind = "round.aborted"   // see Ready.Abort
	RoundCompleted EventKind = "round.completed" // see Ready.Result
)

// Event is one auditable event.
type Event struct {
	Kind  EventKind
	Stage secagg.Stage
	Site  secagg.SiteID // for SiteDropped
	// Detail is free text; for SiteDropped it is NoMessage or the detail
	// given to Withdraw.
	Detail string
}

// NoMessage is the Detail of a SiteDropped event for a site that sent no
// valid message before the stage deadline.
const NoMessage = "no valid message before the stage deadline"

// State is what the driver persists.
type State struct {
	Round    uint64
	Stage    secagg.Stage
	Deadline uint64          // tick at which the stage closes
	Expected []secagg.SiteID // sites that may send in this stage
}

// Result is the outcome of a completed round.
type Result struct {
	Sum       []uint32        // modular sum of the survivors' inputs
	Survivors []secagg.SiteID // sites whose inputs are in Sum
}

// Ready is the batch the driver processes after each call, in field order.
type Ready struct {
	Persist *State
	Events  []Event
	Send    []secagg.Outgoing
	Result  *Result
	Abort   *Abort
}

// Machine is one round. It is not safe for concurrent use.
type Machine struct {
	cfg       Config
	sa        *secagg.Server
	now       uint64
	stage     secagg.Stage // the stage open now, kept when secagg aborts
	deadline  uint64
	done      bool
	withdrawn map[secagg.SiteID]string // site → detail given to Withdraw
}

// New validates cfg and opens the round's first stage; the returned Ready
// carries the state to persist and the StageOpened event.
func New(cfg Config) (*Machine, Ready, error) {
	if cfg.MinSites < cfg.Params.T {
		return nil, Ready{}, fmt.Errorf("round: MinSites %d is below the secure-aggregation threshold %d", cfg.MinSites, cfg.Params.T)
	}
	if cfg.MinSites > cfg.Params.N {
		return nil, Ready{}, fmt.Errorf("round: MinSites %d exceeds the %d sites of the roster", cfg.MinSites, cfg.Params.N)
	}
	for st, d := range cfg.Deadlines {
		if d == 0 {
			return nil, Ready{}, fmt.Errorf("round: stage %v has a zero deadline", st)
		}
	}
	sa, err := secagg.NewServer(cfg.Params, cfg.Roster, nil)
	if err != nil {
		return nil, Ready{}, err
	}
	m := &Machine{cfg: cfg, sa: sa, withdrawn: map[secagg.SiteID]string{}}
	var rd Ready
	m.open(&rd)
	return m, rd, nil
}

func (m *Machine) ticks(st secagg.Stage) uint64 {
	if d, ok := m.cfg.Deadlines[st]; ok {
		return d
	}
	return DefaultTicks
}

func (m *Machine) open(rd *Ready) {
	st := m.sa.Stage()
	m.stage = st
	m.deadline = m.now + m.ticks(st)
	rd.Persist = &State{Round: m.cfg.Params.Round, Stage: st, Deadline: m.deadline, Expected: m.sa.Expected()}
	rd.Events = append(rd.Events, Event{Kind: StageOpened, Stage: st})
}

// Now returns the current tick.
func (m *Machine) Now() uint64 { return m.now }

// Stage returns the stage being collected, StageDone or StageAborted.
func (m *Machine) Stage() secagg.Stage { return m.sa.Stage() }

// Done reports whether the round has ended (completed or aborted).
func (m *Machine) Done() bool { return m.done }

// Expected returns the sites that may send in the current stage.
func (m *Machine) Expected() []secagg.SiteID { return m.sa.Expected() }

// Arrived returns the sites whose message for the current stage was
// accepted, sorted.
func (m *Machine) Arrived() []secagg.SiteID { return m.sa.Arrived() }

// Deadline returns the tick at which the current stage closes.
func (m *Machine) Deadline() uint64 { return m.deadline }

// Tick advances time by one tick; the current stage closes when its
// deadline is reached.
func (m *Machine) Tick() Ready {
	var rd Ready
	if m.done {
		return rd
	}
	m.now++
	if m.now >= m.deadline {
		m.finish(&rd)
	}
	return rd
}

// ErrNotSender is returned when a message names a site other than the
// authenticated sender.
var ErrNotSender = errors.New("round: message names another site than its sender")

// ErrWithdrawn is returned for a message from a site that withdrew.
var ErrWithdrawn = errors.New("round: site withdrew from the round")

// Receive hands the machine a message from site, authenticated by the
// transport. A rejected message (wrong stage, forged, duplicate, late)
// returns an error and changes nothing. When the last expected message of a
// stage arrives the stage closes at once, without waiting for its deadline.
func (m *Machine) Receive(site secagg.SiteID, msg secagg.Message) (Ready, error) {
	var rd Ready
	if m.done {
		return rd, fmt.Errorf("round %d is over: %w", m.cfg.Params.Round, secagg.ErrLate)
	}
	var claimed secagg.SiteID
	var recv func() error
	switch v := msg.(type) {
	case *secagg.AdvertiseKeys:
		claimed, recv = v.Site, func() error { return m.sa.ReceiveAdvertiseKeys(v) }
	case *secagg.ShareKeys:
		claimed, recv = v.Site, func() error { return m.sa.ReceiveShareKeys(v) }
	case *secagg.MaskedInput:
		claimed, recv = v.Site, func() error { return m.sa.ReceiveMaskedInput(v) }
	case *secagg.ConsistencySig:
		claimed, recv = v.Site, func() error { return m.sa.ReceiveConsistency(v) }
	case *secagg.UnmaskShares:
		claimed, recv = v.Site, func() error { return m.sa.ReceiveUnmask(v) }
	default:
		return rd, fmt.Errorf("round: sites do not send %T", msg)
	}
	if claimed != site {
		return rd, fmt.Errorf("%w: sender %d, message names %d", ErrNotSender, site, claimed)
	}
	if _, ok := m.withdrawn[site]; ok {
		return rd, fmt.Errorf("%w: site %d", ErrWithdrawn, site)
	}
	if err := recv(); err != nil {
		return rd, err
	}
	if m.allIn() {
		m.finish(&rd)
	}
	return rd, nil
}

// Withdraw records that site will send nothing more in this round (it
// refused the round's configuration, say); its later messages are
// rejected with ErrWithdrawn. From then on a stage closes as soon as every
// expected site has either sent its message or withdrawn, and each
// withdrawn site that a stage expected is reported in a SiteDropped event
// with detail as its Detail. A site's message already accepted for the
// current stage stays in. Withdrawing twice changes nothing.
func (m *Machine) Withdraw(site secagg.SiteID, detail string) (Ready, error) {
	var rd Ready
	if m.done {
		return rd, fmt.Errorf("round %d is over: %w", m.cfg.Params.Round, secagg.ErrLate)
	}
	if site < 1 || int(site) > m.cfg.Params.N {
		return rd, fmt.Errorf("round: site %d is not in the roster of %d sites", site, m.cfg.Params.N)
	}
	if _, ok := m.withdrawn[site]; ok {
		return rd, nil
	}
	m.withdrawn[site] = detail
	if m.allIn() {
		m.finish(&rd)
	}
	return rd, nil
}

// allIn reports whether every site expected in the current stage has sent
// its message or withdrawn.
func (m *Machine) allIn() bool {
	arrived := map[secagg.SiteID]bool{}
	for _, id := range m.sa.Arrived() {
		arrived[id] = true
	}
	for _, id := range m.sa.Expected() {
		if _, w := m.withdrawn[id]; !arrived[id] && !w {
			return false
		}
	}
	return true
}

// Abort ends the round without a result (an operator's decision, or the
// driver shutting down).
func (m *Machine) Abort(detail string) Ready {
	var rd Ready
	if !m.done {
		m.abort(&rd, Operator, detail)
	}
	return rd
}

func (m *Machine) abort(rd *Ready, reason AbortReason, detail string) {
	st := m.stage
	m.done = true
	rd.Abort = &Abort{Reason: reason, Stage: st, Detail: detail}
	rd.Persist = &State{Round: m.cfg.Params.Round, Stage: secagg.StageAborted, Deadline: m.now}
	rd.Events = append(rd.Events, Event{Kind: RoundAborted, Stage: st, Detail: fmt.Sprintf("%s: %s", reason, detail)})
	rd.Send = nil
}

// finish closes the current stage.
func (m *Machine) finish(rd *Ready) {
	st := m.sa.Stage()
	expected := m.sa.Expected()
	arrived := map[secagg.SiteID]bool{}
	for _, id := range m.sa.Arrived() {
		arrived[id] = true
	}
	for _, id := range expected {
		if !arrived[id] {
			detail, ok := m.withdrawn[id]
			if !ok {
				detail = NoMessage
			}
			rd.Events = append(rd.Events, Event{Kind: SiteDropped, Stage: st, Site: id, Detail: detail})
		}
	}
	if len(arrived) < m.cfg.MinSites {
		m.abort(rd, TooFewSites, fmt.Sprintf("%d of %d expected sites answered stage %v, at least %d required", len(arrived), len(expected), st, m.cfg.MinSites))
		return
	}
	out, err := m.sa.Finish()
	if err != nil {
		reason := ProtocolError
		if errors.Is(err, secagg.ErrTooFewSites) {
			reason = TooFewSites
		}
		m.abort(rd, reason, err.Error())
		return
	}
	if m.sa.Stage() == secagg.StageDone {
		sum, survivors, err := m.sa.Result()
		if err != nil {
			m.abort(rd, ProtocolError, err.Error())
			return
		}
		m.done = true
		rd.Persist = &State{Round: m.cfg.Params.Round, Stage: secagg.StageDone, Deadline: m.now}
		rd.Events = append(rd.Events, Event{Kind: RoundCompleted, Stage: st, Detail: fmt.Sprintf("%d survivors", len(survivors))})
		rd.Result = &Result{Sum: sum, Survivors: survivors}
		return
	}
	m.open(rd)
	rd.Send = out
}
