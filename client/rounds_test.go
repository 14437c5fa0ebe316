package client

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/server"
)

func fastRounds(c *server.Config) {
	c.Schedule.Rounds = 1
	c.Round.StageTimeout = server.Duration(5 * time.Second)
	c.Round.TrainTimeout = server.Duration(25 * time.Second)
}

// A site that vanishes at any stage does not stop the round: the other
// sites (≥ t) finish it, the dropout is audited, and a site that dropped
// after its masked input was accepted still counts in the aggregate.
func TestDropAtEachStage(t *testing.T) {
	stages := []string{"advertise_keys", "share_keys", "masked_input", "consistency_check", "unmask"}
	for _, stage := range stages {
		t.Run(stage, func(t *testing.T) {
			sites := []string{"site-a", "site-b", "site-c"}
			f := newFederation(t, sites, fastRounds)
			var cfgs []*Config
			for _, s := range sites {
				c := f.siteConfig(s, 40)
				if s == "site-c" {
					c.DropAt = stage
				}
				cfgs = append(cfgs, c)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sums, errs := runSites(t, ctx, cfgs)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: %v", sites[i], err)
				}
			}
			for i, s := range sums {
				want := "completed"
				if sites[i] == "site-c" {
					want = "dropped"
				}
				if got := s.Rounds[0].Outcome; got != want {
					t.Fatalf("%s: outcome %s (%s), want %s", sites[i], got, s.Rounds[0].Reason, want)
				}
			}
			es := f.auditEntries(t)
			if count(es, audit.ModelPublished) != 1 {
				t.Fatalf("no model.published")
			}
			if count(es, audit.SecAggDropout) < 1 {
				t.Fatalf("no secagg.dropout entry")
			}
			var agg *audit.Entry
			for _, e := range es {
				if e.Kind == audit.AggregateProduced {
					agg = e
				}
			}
			// Sites in U3 (masked input accepted) are in the sum even if
			// they vanish later; the self mask is rebuilt from shares.
			inSum := strings.Contains(agg.Message, "site-c")
			wantInSum := stage == "consistency_check" || stage == "unmask"
			if inSum != wantInSum {
				t.Fatalf("aggregate %q: site-c in sum = %v, want %v", agg.Message, inSum, wantInSum)
			}
		})
	}
}

// A round whose DP configuration breaks a site's policy is refused by that
// site with an audited reason, and the others complete it.
func TestPolicyRefusal(t *testing.T) {
	sites := []string{"site-a", "site-b", "site-c"}
	f := newFederation(t, sites, fastRounds)
	var cfgs []*Config
	for _, s := range sites {
		c := f.siteConfig(s, 40)
		if s == "site-b" {
			c.Policy.MaxEpsilonPerRound = 0.01
		}
		if s == "site-c" {
			c.Policy.AllowedBaseModels = []string{"sha256:" + strings.Repeat("0", 64)}
		}
		cfgs = append(cfgs, c)
	}
	// With two of three refusing, t = 2 cannot be met: the round aborts
	// cleanly and nothing is published.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sums, errs := runSites(t, ctx, cfgs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", sites[i], err)
		}
	}
	if o := sums[1].Rounds[0]; o.Outcome != "refused" || !strings.Contains(o.Reason, "max_epsilon_per_round") {
		t.Fatalf("site-b: %+v", o)
	}
	if o := sums[2].Rounds[0]; o.Outcome != "refused" || !strings.Contains(o.Reason, "allowed_base_models") {
		t.Fatalf("site-c: %+v", o)
	}
	if sums[1].EpsilonSpent != 0 || sums[2].EpsilonSpent != 0 {
		t.Fatalf("refusing sites spent budget: %g %g", sums[1].EpsilonSpent, sums[2].EpsilonSpent)
	}
	es := f.auditEntries(t)
	if n := count(es, audit.RoundRefused); n != 2 {
		t.Fatalf("%d round.refused entries, want 2", n)
	}
	for _, e := range es {
		if e.Kind == audit.RoundRefused && (e.Reason == "" || e.Outcome != audit.OutcomeRefused) {
			t.Fatalf("refusal without reason: %+v", e)
		}
	}
	if count(es, audit.RoundAborted) != 1 || count(es, audit.ModelPublished) != 0 {
		t.Fatalf("round with too few sites was not aborted cleanly")
	}
	if sums[0].Rounds[0].Outcome != "aborted" {
		t.Fatalf("site-a: %+v", sums[0].Rounds[0])
	}
}

// Sites are restartable: a client process that stops after round 1 and
// starts again (same data directory) does not enroll again, joins round 2
// from the published adapter and its ledger holds both spends.
func TestRestartBetweenRounds(t *testing.T) {
	sites := []string{"site-a", "site-b"}
	f := newFederation(t, sites, func(c *server.Config) {
		fastRounds(c)
		c.Schedule.Rounds = 2
		c.Schedule.Interval = server.Duration(2 * time.Second)
	})
	var cfgs []*Config
	for _, s := range sites {
		cfgs = append(cfgs, f.siteConfig(s, 40))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for round := 1; round <= 2; round++ {
		sums, errs := runSites(t, ctx, cfgs)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("run %d, %s: %v", round, sites[i], err)
			}
			r := sums[i].Rounds[len(sums[i].Rounds)-1]
			if r.Round != uint64(round) || r.Outcome != "completed" || sums[i].AdapterVersion != uint64(round) {
				t.Fatalf("run %d, %s: %+v (adapter v%d)", round, sites[i], r, sums[i].AdapterVersion)
			}
		}
		if round == 2 && !(sums[0].EpsilonSpent > sums[0].Rounds[0].Epsilon) {
			t.Fatalf("ledger after two rounds: spent %g, one round %g", sums[0].EpsilonSpent, sums[0].Rounds[0].Epsilon)
		}
	}
	es := f.auditEntries(t)
	if count(es, audit.SiteEnrolled) != 2 || count(es, audit.DPSpendKind) != 4 || count(es, audit.ModelPublished) != 2 {
		t.Fatalf("enrolled %d, dp.spend %d, published %d", count(es, audit.SiteEnrolled), count(es, audit.DPSpendKind), count(es, audit.ModelPublished))
	}
}
