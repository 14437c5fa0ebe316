package noise

import "time"

// Throughput is a noise-sampler measurement: samples per second of
// AddGaussian and of the raw generator (the baseline, in the same run).
type Throughput struct {
	SamplesPerSecond         float64 `json:"samples_per_second"`
	BaselineUint64PerSecond  float64 `json:"chacha8_uint64_per_second"`
	SamplerOverChaCha8Uint64 float64 `json:"sampler_time_over_chacha8_uint64"`
}

// MeasureThroughput times AddGaussian on n values and ChaCha8's Uint64 on n
// draws, on one goroutine, with the monotonic clock now.
func MeasureThroughput(n int, now func() time.Time) Throughput {
	s := NewSeeded(SeedFromUint64(1))
	x := make([]float64, 1<<16)
	var sampler, base time.Duration
	for done := 0; done < n; done += len(x) {
		clear(x)
		t0 := now()
		if _, err := s.AddGaussian(x, 1); err != nil {
			panic(err) // zeros are always in range
		}
		sampler += now().Sub(t0)
		t0 = now()
		var acc uint64
		for range x {
			acc += s.rng.Uint64()
		}
		base += now().Sub(t0)
		x[0] += float64(acc & 1)
	}
	total := float64((n + len(x) - 1) / len(x) * len(x))
	return Throughput{
		SamplesPerSecond:         total / sampler.Seconds(),
		BaselineUint64PerSecond:  total / base.Seconds(),
		SamplerOverChaCha8Uint64: sampler.Seconds() / base.Seconds(),
	}
}
