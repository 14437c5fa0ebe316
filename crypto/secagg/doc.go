// Package secagg is secure aggregation for federated learning: N sites each
// hold a vector over ℤ_{2^32}; the server learns the sum over the surviving
// sites and nothing else about any one site's vector, even if it deviates
// from the protocol (threat model in the SECURITY document). It implements the protocol of Bonawitz et al.,
// "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
// (CCS 2017), in its malicious-server variant (Fig. 4 with the signatures of
// §6 and the ConsistencyCheck round), as two pure state machines: [Client]
// and [Server] take typed messages in and return typed messages out; they do
// no I/O, read no clock and take their randomness as an io.Reader.
//
// # Stages
//
//	AdvertiseKeys     site → server: encryption key, mask key, self-mask commitment (signed)
//	                  server → U1:   KeyList
//	ShareKeys         site → server: for every other site, an HPKE envelope with
//	                                 Shamir shares of s_u and b_u (signed)
//	                  server → U2:   ShareKeysRelay (the envelopes addressed to that site)
//	MaskedInput       site → server: y_u = x_u + PRG(b_u) ± Σ PRG(s_{u,v}) (signed digest)
//	                  server → U3:   SurvivorList
//	ConsistencyCheck  site → server: signature over U3
//	                  server → U4:   ConsistencyCertificate (≥ T signatures over U3)
//	Unmask            site → server: shares of s_u for u ∈ U2\U3, of b_u for u ∈ U3
//	                  server:        rebuilds the secrets, removes the masks, Result()
//
// Each stage continues only with at least T sites; otherwise the server
// aborts with [ErrTooFewSites] and releases nothing.
//
// # Driving the server
//
// The driver (gRPC server, simulator) feeds every arriving message to the
// Receive method of the current [Server.Stage]. A Receive error rejects that
// message only (forged, late, duplicate, wrong round); the state is
// unchanged. When [Server.Complete] is true or the stage's deadline passes,
// the driver calls [Server.Finish], sends the returned [Outgoing] messages,
// and persists what it must before sending. [Server.Expected] and
// [Server.Arrived] say who is still missing.
//
// # Secrets and keys
//
// Each site draws two per-round secrets, uniformly random Ristretto255
// scalars: s_u (mask-key secret) and b_u (self-mask secret), and shares each
// T-of-|U1| with circl's secretsharing. All key material is derived from a
// secret's 32-byte encoding with HKDF-SHA256 salted with the round context
// (federation, round, N, T, vector length, mode, roster), so a secret rebuilt
// from shares yields the same keys:
//
//   - classical mode: the mask key pair is X25519 with private key
//     HKDF(s_u); pairwise secrets are X25519 agreements;
//   - PQ mode: the mask key pair is X25519+ML-KEM-768 derived
//     deterministically from HKDF(s_u). For sites u < v, u encapsulates to v
//     with encapsulation randomness HKDF(s_u, u, v) and sends the ciphertext
//     in its ShareKeys envelope to v; v decapsulates. If u drops, the server
//     rebuilds s_u and repeats the encapsulation; if v drops, it rebuilds
//     v's private key and decapsulates the ciphertext it relayed.
//
// Shares travel in HPKE (RFC 9180) envelopes — DHKEM(X25519) or X-Wing in PQ
// mode, HKDF-SHA256, AES-128-GCM — bound by the info string to the round, the
// two sites and the KeyList transcript, so the server relays them without
// reading them.
//
// # Masks
//
// Masks are AES-128-CTR keystreams read as little-endian uint32 words
// (package prg), expanded in parallel across cores and added in place with
// wrap-around; see [prg.Apply]. Vectors may be large: [MaskedInput] signs a
// SHA-256 digest of the vector, so a transport can stream the words in chunks
// ([MaskedInput.MarshalHeader], [AppendWords], [DecodeWords]).
//
// # Signatures and transcript
//
// Every message a site sends is signed with its identity key (Ed25519, or
// ML-DSA-65 with [MLDSA65]) over "fedtune/secagg/v1 sig" ‖ context hash ‖
// the message's encoding without its signature; from ShareKeys on, messages
// carry the hash of the KeyList the site saw. A message from another round,
// another federation or another key list therefore fails verification.
//
// # What a client enforces
//
//   - every KeyList entry is signed by its roster key, and its own entry is
//     unchanged;
//   - every relayed envelope is signed by its sender, made under the same
//     KeyList, and decrypts. MaskedInput checks only what needs no
//     public-key operation and keeps the envelopes; Unmask verifies and
//     opens them before revealing any share (Bonawitz et al. 2017, Fig. 4).
//     In PQ mode an envelope whose KEM ciphertext the mask depends on
//     (from a lower-numbered peer) is verified in MaskedInput, before use;
//   - the survivor set U3 is a subset of the U2 it saw, and the certificate
//     carries at least T valid signatures over exactly the U3 it signed; if
//     not, it aborts with [ErrInconsistent] before revealing anything;
//   - it answers Unmask at most once, revealing for each peer either a share
//     of s_u (dropped after ShareKeys) or of b_u (survivor), never both.
//
// Randomness: everything a client draws comes from the reader passed to
// [NewClient], except the Shamir polynomial coefficients, which circl draws
// from crypto/rand itself for Ristretto255.
package secagg
