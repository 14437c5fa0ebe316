// Package accounting computes the privacy loss of DP-SGD style mechanisms.
//
// # Events
//
// A privacy event describes what a mechanism did, in the algebra of Google's
// dp_accounting library: [Gaussian] (the Gaussian mechanism with a noise
// multiplier, sensitivity 1), [PoissonSampled] (run the inner event on a
// Poisson sample with rate q), [SelfComposed] (repeat n times) and [Composed]
// (a sequence of different events). Events serialise to JSON with
// [MarshalEvent] and [UnmarshalEvent], so that every spend can be recomputed
// by anyone from its record.
//
// # Accountants
//
// Two accountants turn an event into (ε, δ):
//
//   - [RDP]: Rényi DP of the Poisson-subsampled Gaussian (Mironov, Talwar and
//     Zhang 2019) at a list of orders, converted with Balle et al. 2020,
//     Theorem 21. Matches Opacus and dp_accounting.
//   - [PLD]: privacy loss distributions, discretised pessimistically by
//     connect-the-dots (Doroshenko et al. 2022) and composed by FFT (Koskela
//     et al. 2020). Tighter than RDP; the discretisation only ever
//     overestimates ε.
//
// # Guarantees
//
// The neighbouring relation is add/remove-one record; ε is in nats; δ is a
// probability. Both accountants return upper bounds: results never
// understate the privacy loss of the event they are given. [Calibrate]
// returns the safe end of its search, so ε(σ) ≤ target always holds for the
// returned σ.
//
// The package does no I/O and uses no randomness.
package accounting
