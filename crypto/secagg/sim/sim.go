// Package sim runs a whole secure-aggregation round in memory: one
// secagg.Server, N secagg.Clients, every message passed through its wire
// encoding, with scripted drop-outs and hooks to tamper with messages. Tests
// and the benchmark use it; it does no I/O and reads no clock.
package sim

import (
	"fmt"
	"io"

	"github.com/fedtune/fedtune/crypto/secagg"
	"golang.org/x/crypto/chacha20"
)

// DRBG is a deterministic cryptographically secure generator: the ChaCha20
// keystream (RFC 8439) under a 32-byte seed. Simulations use it so a run
// can be replayed; production uses crypto/rand.
type DRBG struct{ c *chacha20.Cipher }

// NewDRBG returns the generator for seed; label separates streams drawn from
// the same seed.
func NewDRBG(seed [32]byte, label uint64) *DRBG {
	var nonce [12]byte
	for i := range 8 {
		nonce[i] = byte(label >> (8 * i))
	}
	c, err := chacha20.NewUnauthenticatedCipher(seed[:], nonce[:])
	if err != nil {
		panic(err) // fixed sizes above
	}
	return &DRBG{c: c}
}

// Read fills p with keystream. It never fails.
func (d *DRBG) Read(p []byte) (int, error) {
	clear(p)
	d.c.XORKeyStream(p, p)
	return len(p), nil
}

// Config describes a simulated round.
type Config struct {
	Params secagg.Params
	// Seed makes the run reproducible (identity keys, round secrets, inputs).
	Seed [32]byte
	// Inputs are the sites' vectors (index site-1); nil draws them from Seed.
	Inputs [][]uint32
	// DropAt makes a site go silent from the given stage on: it sends
	// nothing in that stage or later.
	DropAt map[secagg.SiteID]secagg.Stage
	// ToClient, if set, sees every server→client message (after decoding)
	// and returns the one to deliver (nil: drop it).
	ToClient func(to secagg.SiteID, m secagg.Message) secagg.Message
	// ToServer, if set, does the same for client→server messages.
	ToServer func(from secagg.SiteID, m secagg.Message) secagg.Message
}

// Federation is a running simulated round.
type Federation struct {
	cfg     Config
	Server  *secagg.Server
	Clients []*secagg.Client
	Inputs  [][]uint32
	// Identities holds each site's identity key (index site-1).
	Identities []*secagg.Identity
	Roster     secagg.Roster

	inbox map[secagg.SiteID]secagg.Message
	// ClientErrs records the error each aborted client returned.
	ClientErrs map[secagg.SiteID]error
	// Rejected records the server's rejections of client messages.
	Rejected []error
	// BytesUp and BytesDown count encoded bytes per site, client→server and
	// server→client.
	BytesUp, BytesDown map[secagg.SiteID]int
}

// New creates the identities, clients and server of a round.
func New(cfg Config) (*Federation, error) {
	p := cfg.Params
	if err := p.Validate(); err != nil {
		return nil, err
	}
	f := &Federation{
		cfg: cfg, inbox: map[secagg.SiteID]secagg.Message{},
		ClientErrs: map[secagg.SiteID]error{},
		BytesUp:    map[secagg.SiteID]int{}, BytesDown: map[secagg.SiteID]int{},
	}
	idRand := NewDRBG(cfg.Seed, 1)
	for range p.N {
		id, err := secagg.NewIdentity(p.SigAlg, idRand)
		if err != nil {
			return nil, err
		}
		f.Identities = append(f.Identities, id)
		f.Roster = append(f.Roster, id.Public())
	}
	f.Inputs = cfg.Inputs
	if f.Inputs == nil {
		in := NewDRBG(cfg.Seed, 2)
		buf := make([]byte, 4*p.VectorLen)
		for range p.N {
			in.Read(buf)
			v := make([]uint32, p.VectorLen)
			secagg.DecodeWords(v, buf)
			f.Inputs = append(f.Inputs, v)
		}
	}
	if len(f.Inputs) != p.N {
		return nil, fmt.Errorf("sim: %d inputs for %d sites", len(f.Inputs), p.N)
	}
	var err error
	if f.Server, err = secagg.NewServer(p, f.Roster, nil); err != nil {
		return nil, err
	}
	for i := range p.N {
		c, err := secagg.NewClient(p, secagg.SiteID(i+1), f.Identities[i], f.Roster, NewDRBG(cfg.Seed, 100+uint64(i)))
		if err != nil {
			return nil, err
		}
		f.Clients = append(f.Clients, c)
	}
	return f, nil
}

func (f *Federation) dropped(site secagg.SiteID, st secagg.Stage) bool {
	d, ok := f.cfg.DropAt[site]
	return ok && st >= d
}

// Wire round-trips m through its encoding and decoder, returning the decoded
// copy and the encoded size.
func Wire(m secagg.Message) (secagg.Message, int, error) {
	b := m.Marshal()
	var out secagg.Message
	var err error
	switch m.(type) {
	case *secagg.AdvertiseKeys:
		out, err = secagg.UnmarshalAdvertiseKeys(b)
	case *secagg.KeyList:
		out, err = secagg.UnmarshalKeyList(b)
	case *secagg.ShareKeys:
		out, err = secagg.UnmarshalShareKeys(b)
	case *secagg.ShareKeysRelay:
		out, err = secagg.UnmarshalShareKeysRelay(b)
	case *secagg.MaskedInput:
		out, err = secagg.UnmarshalMaskedInput(b)
	case *secagg.SurvivorList:
		out, err = secagg.UnmarshalSurvivorList(b)
	case *secagg.ConsistencySig:
		out, err = secagg.UnmarshalConsistencySig(b)
	case *secagg.ConsistencyCertificate:
		out, err = secagg.UnmarshalConsistencyCertificate(b)
	case *secagg.UnmaskShares:
		out, err = secagg.UnmarshalUnmaskShares(b)
	default:
		return nil, 0, fmt.Errorf("sim: unknown message type %T", m)
	}
	return out, len(b), err
}

// clientStep runs site's method for stage st on its inbox message.
func (f *Federation) clientStep(site secagg.SiteID, st secagg.Stage) (secagg.Message, error) {
	c := f.Clients[site-1]
	in := f.inbox[site]
	switch st {
	case secagg.StageAdvertiseKeys:
		return c.AdvertiseKeys()
	case secagg.StageShareKeys:
		if m, ok := in.(*secagg.KeyList); ok {
			return c.ShareKeys(m)
		}
	case secagg.StageMaskedInput:
		if m, ok := in.(*secagg.ShareKeysRelay); ok {
			return c.MaskedInput(m, f.Inputs[site-1])
		}
	case secagg.StageConsistencyCheck:
		if m, ok := in.(*secagg.SurvivorList); ok {
			return c.ConsistencyCheck(m)
		}
	case secagg.StageUnmask:
		if m, ok := in.(*secagg.ConsistencyCertificate); ok {
			return c.Unmask(m)
		}
	}
	return nil, nil // nothing received: nothing to answer
}

// Answer runs site's method for the server's current stage on the message
// the site last received and returns its answer: nil if the site has dropped
// out, has aborted or received nothing. A client error is recorded in
// ClientErrs.
func (f *Federation) Answer(site secagg.SiteID) secagg.Message {
	st := f.Server.Stage()
	if f.dropped(site, st) || f.ClientErrs[site] != nil {
		return nil
	}
	m, err := f.clientStep(site, st)
	if err != nil {
		f.ClientErrs[site] = err
		return nil
	}
	return m
}

// ClientsStep runs every live site's method for the server's current stage
// and delivers the answers to the server. It does not call Finish.
func (f *Federation) ClientsStep() error {
	for i := range f.Clients {
		site := secagg.SiteID(i + 1)
		m := f.Answer(site)
		if m == nil {
			continue
		}
		if f.cfg.ToServer != nil {
			if m = f.cfg.ToServer(site, m); m == nil {
				continue
			}
		}
		if err := f.Deliver(site, m); err != nil {
			return err
		}
	}
	return nil
}

// Deliver passes a client's message to the server through the wire encoding.
// A rejection by the server is recorded in Rejected, not returned; decoding
// failures are returned.
func (f *Federation) Deliver(from secagg.SiteID, m secagg.Message) error {
	dm, n, err := Wire(m)
	if err != nil {
		return fmt.Errorf("sim: message of site %d does not decode: %w", from, err)
	}
	f.BytesUp[from] += n
	switch m := dm.(type) {
	case *secagg.AdvertiseKeys:
		err = f.Server.ReceiveAdvertiseKeys(m)
	case *secagg.ShareKeys:
		err = f.Server.ReceiveShareKeys(m)
	case *secagg.MaskedInput:
		err = f.Server.ReceiveMaskedInput(m)
	case *secagg.ConsistencySig:
		err = f.Server.ReceiveConsistency(m)
	case *secagg.UnmaskShares:
		err = f.Server.ReceiveUnmask(m)
	default:
		return fmt.Errorf("sim: site %d sent a %T", from, m)
	}
	if err != nil {
		f.Rejected = append(f.Rejected, err)
	}
	return nil
}

// ServerStep calls Finish and queues its messages for the sites.
func (f *Federation) ServerStep() error {
	out, err := f.Server.Finish()
	if err != nil {
		return err
	}
	clear(f.inbox)
	for _, o := range out {
		m := o.Msg
		if f.cfg.ToClient != nil {
			if m = f.cfg.ToClient(o.To, m); m == nil {
				continue
			}
		}
		dm, n, err := Wire(m)
		if err != nil {
			return fmt.Errorf("sim: message to site %d does not decode: %w", o.To, err)
		}
		f.BytesDown[o.To] += n
		f.inbox[o.To] = dm
	}
	return nil
}

// Step runs one stage: the sites answer, then the server finishes the stage.
func (f *Federation) Step() error {
	if err := f.ClientsStep(); err != nil {
		return err
	}
	return f.ServerStep()
}

// Run steps until the round is done or aborts, and returns the result.
func (f *Federation) Run() ([]uint32, []secagg.SiteID, error) {
	for f.Server.Stage() < secagg.StageDone {
		if err := f.Step(); err != nil {
			return nil, nil, err
		}
	}
	return f.Server.Result()
}

// PlainSum is Σ_{u∈sites} x_u mod 2^32, computed directly from the inputs.
func (f *Federation) PlainSum(sites []secagg.SiteID) []uint32 {
	out := make([]uint32, f.cfg.Params.VectorLen)
	for _, s := range sites {
		for i, w := range f.Inputs[s-1] {
			out[i] += w
		}
	}
	return out
}

var _ io.Reader = (*DRBG)(nil)
