package secagg_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/crypto/secagg/sim"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected transcripts in testdata/scenarios")

// TestScenarios runs the golden scenario scripts in testdata/scenarios. A
// script is a list of directives, a line "----", and the expected
// transcript; `go test -run TestScenarios -rewrite` regenerates transcripts.
//
// Directives (one per line, # starts a comment):
//
//	params n=5 t=3 m=100 [pq] [mldsa] [round=7]
//	drop SITE STAGE            site goes silent from STAGE on
//	late SITE STAGE            site's STAGE message arrives after the deadline
//	forge SITE STAGE           flip a bit of the signature of site's STAGE message
//	relabel SITE STAGE ROUND   rewrite the round number of site's STAGE message
//	replay SITE STAGE          deliver site's STAGE message twice
//	split SITE                 show SITE a survivor set without the last survivor,
//	                           then a certificate over it carrying the others' signatures
//	hide SITE PEER             drop PEER's envelope from SITE's relay
//	forge-envelope SITE PEER   flip a bit of the signature of PEER's envelope
//	                           in SITE's relay (may repeat)
//	substitute SITE PEER       replace PEER's encryption key in SITE's key list
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			script, want, ok := strings.Cut(string(raw), "\n----\n")
			if !ok {
				t.Fatalf("%s: no ---- line", file)
			}
			got, err := runScenario(script)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if *rewrite {
				if err := os.WriteFile(file, []byte(script+"\n----\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: transcript differs\n--- got\n%s--- want\n%s", file, got, want)
			}
		})
	}
}

func parseStage(s string) (secagg.Stage, error) {
	for st := secagg.StageAdvertiseKeys; st <= secagg.StageUnmask; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown stage %q", s)
}

func stageOf(m secagg.Message) secagg.Stage { return m.Stage() }

// withRound and withSig return copies of a client message with the round
// or the signature changed.
func withRound(m secagg.Message, round uint64) secagg.Message {
	switch m := m.(type) {
	case *secagg.AdvertiseKeys:
		c := *m
		c.Round = round
		return &c
	case *secagg.ShareKeys:
		c := *m
		c.Round = round
		return &c
	case *secagg.MaskedInput:
		c := *m
		c.Round = round
		return &c
	case *secagg.ConsistencySig:
		c := *m
		c.Round = round
		return &c
	case *secagg.UnmaskShares:
		c := *m
		c.Round = round
		return &c
	}
	return m
}

func flipSig(sig []byte) []byte {
	s := slices.Clone(sig)
	s[len(s)/2] ^= 0x10
	return s
}

func withForgedSig(m secagg.Message) secagg.Message {
	switch m := m.(type) {
	case *secagg.AdvertiseKeys:
		c := *m
		c.Sig = flipSig(m.Sig)
		return &c
	case *secagg.ShareKeys:
		c := *m
		c.Envelopes = slices.Clone(m.Envelopes)
		e := *c.Envelopes[0]
		e.Sig = flipSig(e.Sig)
		c.Envelopes[0] = &e
		return &c
	case *secagg.MaskedInput:
		c := *m
		c.Sig = flipSig(m.Sig)
		return &c
	case *secagg.ConsistencySig:
		c := *m
		c.Sig = flipSig(m.Sig)
		return &c
	case *secagg.UnmaskShares:
		c := *m
		c.Sig = flipSig(m.Sig)
		return &c
	}
	return m
}

type clientRule struct {
	site  secagg.SiteID
	stage secagg.Stage
	do    string
	round uint64
}

func runScenario(script string) (string, error) {
	p := secagg.Params{FederationID: "fed-scenario", Round: 7, SigAlg: secagg.Ed25519, Workers: 2}
	drop := map[secagg.SiteID]secagg.Stage{}
	var rules []clientRule
	var splitSite, hideSite, hidePeer, subSite, subPeer secagg.SiteID
	forgedEnv := map[[2]secagg.SiteID]bool{} // {site, peer}
	for ln, line := range strings.Split(script, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("line %d (%q): %s", ln+1, line, fmt.Sprintf(format, args...))
		}
		num := func(s string) (int, error) {
			v, err := strconv.Atoi(s)
			if err != nil {
				return 0, bad("want a number, got %q", s)
			}
			return v, nil
		}
		switch f[0] {
		case "params":
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				var err error
				var x int
				switch k {
				case "n":
					x, err = num(v)
					p.N = x
				case "t":
					x, err = num(v)
					p.T = x
				case "m":
					x, err = num(v)
					p.VectorLen = x
				case "round":
					x, err = num(v)
					p.Round = uint64(x)
				case "pq":
					p.PQ = true
				case "mldsa":
					p.SigAlg = secagg.MLDSA65
				default:
					return "", bad("unknown parameter %q", k)
				}
				if err != nil {
					return "", err
				}
			}
		case "drop", "late", "forge", "replay", "relabel":
			if len(f) < 3 {
				return "", bad("want %s SITE STAGE", f[0])
			}
			site, err := num(f[1])
			if err != nil {
				return "", err
			}
			st, err := parseStage(f[2])
			if err != nil {
				return "", bad("%v", err)
			}
			if f[0] == "drop" {
				drop[secagg.SiteID(site)] = st
				continue
			}
			r := clientRule{site: secagg.SiteID(site), stage: st, do: f[0]}
			if f[0] == "relabel" {
				if len(f) != 4 {
					return "", bad("want relabel SITE STAGE ROUND")
				}
				x, err := num(f[3])
				if err != nil {
					return "", err
				}
				r.round = uint64(x)
			}
			rules = append(rules, r)
		case "split":
			if len(f) != 2 {
				return "", bad("want split SITE")
			}
			x, err := num(f[1])
			if err != nil {
				return "", err
			}
			splitSite = secagg.SiteID(x)
		case "hide", "substitute", "forge-envelope":
			if len(f) != 3 {
				return "", bad("want %s SITE PEER", f[0])
			}
			a, err := num(f[1])
			if err != nil {
				return "", err
			}
			b, err := num(f[2])
			if err != nil {
				return "", err
			}
			switch f[0] {
			case "hide":
				hideSite, hidePeer = secagg.SiteID(a), secagg.SiteID(b)
			case "forge-envelope":
				forgedEnv[[2]secagg.SiteID{secagg.SiteID(a), secagg.SiteID(b)}] = true
			default:
				subSite, subPeer = secagg.SiteID(a), secagg.SiteID(b)
			}
		default:
			return "", bad("unknown directive %q", f[0])
		}
	}

	var out strings.Builder
	var held []struct {
		site secagg.SiteID
		m    secagg.Message
	}
	var replays []struct {
		site secagg.SiteID
		m    secagg.Message
	}
	var splitCert *secagg.ConsistencyCertificate
	fed, err := sim.New(sim.Config{Params: p, Seed: [32]byte{0x5c}, DropAt: drop,
		ToServer: func(from secagg.SiteID, m secagg.Message) secagg.Message {
			for _, r := range rules {
				if r.site != from || r.stage != stageOf(m) {
					continue
				}
				switch r.do {
				case "late":
					held = append(held, struct {
						site secagg.SiteID
						m    secagg.Message
					}{from, m})
					return nil
				case "forge":
					return withForgedSig(m)
				case "relabel":
					return withRound(m, r.round)
				case "replay":
					replays = append(replays, struct {
						site secagg.SiteID
						m    secagg.Message
					}{from, m})
				}
			}
			return m
		},
		ToClient: func(to secagg.SiteID, m secagg.Message) secagg.Message {
			switch m := m.(type) {
			case *secagg.KeyList:
				if to == subSite {
					c := *m
					c.Entries = slices.Clone(m.Entries)
					for i, e := range c.Entries {
						if e.Site == subPeer {
							ce := *e
							ce.EncPK = slices.Clone(c.Entries[0].EncPK)
							if c.Entries[0].Site == subPeer {
								ce.EncPK = slices.Clone(c.Entries[1].EncPK)
							}
							c.Entries[i] = &ce
						}
					}
					return &c
				}
			case *secagg.ShareKeysRelay:
				c := *m
				c.Envelopes = slices.Clone(m.Envelopes)
				if to == hideSite {
					c.Envelopes = slices.DeleteFunc(c.Envelopes, func(e *secagg.Envelope) bool { return e.From == hidePeer })
				}
				for i, e := range c.Envelopes {
					if forgedEnv[[2]secagg.SiteID{to, e.From}] {
						ce := *e
						ce.Sig = flipSig(e.Sig)
						c.Envelopes[i] = &ce
					}
				}
				return &c
			case *secagg.SurvivorList:
				if to == splitSite {
					return &secagg.SurvivorList{Round: m.Round, Sites: m.Sites[:len(m.Sites)-1]}
				}
			case *secagg.ConsistencyCertificate:
				splitCert = m
			}
			return m
		}})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&out, "round: N=%d T=%d M=%d pq=%v sig=%v\n", p.N, p.T, p.VectorLen, p.PQ, p.SigAlg)
	nRejected := 0
	report := func() {
		for _, e := range fed.Rejected[nRejected:] {
			fmt.Fprintf(&out, "  rejected: %v\n", e)
		}
		nRejected = len(fed.Rejected)
	}
	aborted := map[secagg.SiteID]bool{}
	reportClients := func() {
		for _, s := range slices.Sorted(func(yield func(secagg.SiteID) bool) {
			for s := range fed.ClientErrs {
				if !yield(s) {
					return
				}
			}
		}) {
			if !aborted[s] {
				aborted[s] = true
				fmt.Fprintf(&out, "  site %d aborted: %v\n", s, fed.ClientErrs[s])
			}
		}
	}
	for fed.Server.Stage() < secagg.StageDone {
		st := fed.Server.Stage()
		if err := fed.ClientsStep(); err != nil {
			return "", err
		}
		for _, r := range replays {
			if err := fed.Deliver(r.site, r.m); err != nil {
				return "", err
			}
		}
		replays = nil
		fmt.Fprintf(&out, "%v: arrived %v of expected %v\n", st, fed.Server.Arrived(), fed.Server.Expected())
		report()
		reportClients()
		err := fed.ServerStep()
		for _, h := range held {
			if err := fed.Deliver(h.site, h.m); err != nil {
				return "", err
			}
		}
		held = nil
		report()
		if st == secagg.StageConsistencyCheck && splitSite != 0 && splitCert != nil {
			// The malicious server now shows the split site a certificate
			// for the survivor set it signed, with the others' signatures.
			c := *fed.Clients[splitSite-1]
			_, uerr := c.Unmask(&secagg.ConsistencyCertificate{Round: splitCert.Round, Survivors: splitCert.Survivors[:len(splitCert.Survivors)-1], Sigs: splitCert.Sigs})
			fmt.Fprintf(&out, "  site %d shown a forged certificate: %v\n", splitSite, uerr)
		}
		if err != nil {
			fmt.Fprintf(&out, "server: %v\n", err)
			break
		}
	}
	reportClients()
	sum, surv, err := fed.Server.Result()
	if err != nil {
		fmt.Fprintf(&out, "result: none (%v released)\n", map[bool]string{true: "nothing", false: "a sum"}[sum == nil])
		return out.String(), nil
	}
	fmt.Fprintf(&out, "result: survivors %v, exact %v\n", surv, slices.Equal(sum, fed.PlainSum(surv)))
	return out.String(), nil
}
