// Package aggregator is what surrounds secure aggregation on both sides of a
// federated round: the site-side encoding of an adapter update into a vector
// over ℤ_{2^32} that secure aggregation can sum, its exact inverse on the
// aggregator after unmasking, and the server optimizers (FedAvg, FedAdam)
// that turn the average update into the next global adapter.
//
// # Encoding an update
//
// Encode follows the distributed discrete mechanisms of Kairouz, Liu and
// Steinke (ICML 2021) and Agarwal, Kairouz and Liu (NeurIPS 2021, the
// Skellam mechanism):
//
//  1. clip the whole update to L2 norm S;
//  2. pad to a power of two d' and rotate with a randomized Hadamard
//     transform y = H·D·x/√d', where the signs D come from public round
//     randomness (every site and the aggregator derive the same D), so that
//     no coordinate carries much of the norm and the modular sum does not
//     wrap;
//  3. scale by γ and round each coordinate to an integer at random,
//     unbiasedly, retrying until the rounded vector's norm is within the
//     conditional-rounding bound (Kairouz et al. 2021, Theorem 1);
//  4. optionally add Skellam noise Sk(μ) = Pois(μ) − Pois(μ) per coordinate,
//     with μ chosen so that any MinHonest honest contributions sum to the
//     target noise standard deviation;
//  5. reduce modulo 2^32 (two's complement).
//
// Decode undoes steps 5 to 1 on the modular sum of the survivors' vectors:
// centre the sum in [−2^31, 2^31), divide by γ, rotate back with D·H/√d'
// and drop the padding. The result is the sum of the clipped updates up to
// the rounding error bounded by ErrorBound, plus the distributed noise.
//
// # What it does not do
//
// Encoding does not validate a malicious site's input beyond its length:
// a site can submit any vector over ℤ_{2^32}. Record-level privacy comes
// from each site's DP-SGD; the distributed noise is an additional,
// site-level layer.
package aggregator
