package server

import (
	"errors"
	"math"
	"testing"
	"time"

	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
)

func TestTicks(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want uint64
	}{
		{0, 1}, {time.Millisecond, 1}, {tickInterval, 1}, {tickInterval + 1, 2},
		{5 * time.Second, 100}, {10 * time.Minute, 12000},
	} {
		if got := ticks(c.d); got != c.want {
			t.Errorf("ticks(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

// The noise settings reach the encoder; a round config without
// min_honest_sites assumes the threshold.
func TestAggregatorConfigNoise(t *testing.T) {
	cfg := &pb.RoundConfig{Params: 10, ClipNorm: 1, QuantScale: 1024, Sites: []string{"a", "b", "c"}, Threshold: 2,
		DistributedNoiseStd: 0.5, MinHonestSites: 3}
	a := AggregatorConfig(cfg)
	if a.NoiseStd != 0.5 || a.MinHonest != 3 || a.MaxSites != 3 || a.Dim != 10 {
		t.Fatalf("%+v", a)
	}
	cfg.MinHonestSites = 0
	if a := AggregatorConfig(cfg); a.MinHonest != 2 {
		t.Fatalf("MinHonest %d without min_honest_sites, want the threshold 2", a.MinHonest)
	}
}

func TestConfigValidateNoise(t *testing.T) {
	for _, c := range []struct {
		field string
		mut   func(*Config)
	}{
		{"round.distributed_noise_std", func(c *Config) { c.Round.DistributedNoiseStd = -1 }},
		{"round.distributed_noise_std", func(c *Config) { c.Round.DistributedNoiseStd = math.NaN() }},
		{"round.distributed_noise_std", func(c *Config) { c.Round.DistributedNoiseStd = math.Inf(1) }},
		{"round.min_honest_sites", func(c *Config) { c.Round.MinHonestSites = -1 }},
		{"round.min_honest_sites", func(c *Config) { c.Round.MinHonestSites = 3 }}, // min_sites is 2
	} {
		cfg := validConfig(t)
		c.mut(cfg)
		err := cfg.Validate()
		var fe *fieldError
		if !errors.As(err, &fe) || fe.field != c.field {
			t.Errorf("%s: got %v", c.field, err)
		}
	}
	cfg := validConfig(t)
	cfg.Round.DistributedNoiseStd, cfg.Round.MinHonestSites = 0.1, 2
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
