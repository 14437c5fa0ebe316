// Package dp holds the mechanics of DP-SGD (Abadi et al. 2016, "Deep
// Learning with Differential Privacy", Algorithm 1): Poisson sampling of
// records, per-example clipping of the flat L2 norm over all trainable
// parameters, and the noisy average.
//
// The privacy unit is one record (one JSONL line of a site's data). With
// Poisson rate q = B/N, clipping norm C and noise multiplier σ, each step is
// the event PoissonSampled(q, Gaussian(σ)) of package
// [github.com/fedtune/fedtune/dp/accounting]; the average is divided by the
// configured expected batch size B, never by the realised one, which would
// leak the batch size.
//
// Randomness comes in as a [noise.Sampler] (a CSPRNG keyed from crypto/rand
// in production). Subpackages: accounting (RDP and PLD accountants,
// calibration), noise (the sampler), ledger (the site's privacy ledger).
package dp
