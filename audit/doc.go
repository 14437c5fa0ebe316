// Package audit is fedtune's tamper-evident audit trail: what happened in
// a federation, recorded so that a compliance officer can verify it
// offline without trusting the aggregator.
//
// # Entries
//
// An [Entry] is one event (a round opened, an update accepted, a site's
// privacy spend, a model published, a review performed). Its leaf data is
// RFC 8785 canonical JSON with a schema version; [ParseEntry] accepts
// nothing else. Entries carry pseudonymous actor ids, object ids and
// digests, never record contents or personal data.
//
// A site signs its own dp.spend entries ([Entry.SignAsSite]) with the
// Ed25519 key it announced in its site.enrolled entry, so the aggregator,
// which appends them, cannot forge or alter them.
//
// # The log
//
// Entries are leaves of an RFC 6962 Merkle tree (package audit/merkle).
// The log signs checkpoints in the C2SP tlog-checkpoint and signed-note
// formats with an Ed25519 key held behind [Signer] ([NoteSigner] adapts it
// to the note.Signer that tessera takes). Sites act as witnesses
// ([Witness]): each checks a consistency proof from the last checkpoint it
// cosigned and returns a C2SP tlog-cosignature (cosignature/v1). A
// [Policy] names the log key, the witness keys and how many witnesses make
// a checkpoint final. Package audit/posixlog stores the log on disk with
// tessera's POSIX driver.
//
// # Verification
//
// [Verify] checks an exported [Bundle]: every entry, the tree against every
// signed checkpoint, all signatures and cosignatures, the witness quorum,
// equivocation, the sites' signatures, and each site's cumulative ε
// recomputed from its DP events. It returns every problem with the entry
// index or file it concerns.
//
// # What is not guaranteed
//
// The log orders entries; it does not vouch for the times written in them.
// It proves that a bundle is what the log key signed and the witnesses saw,
// not that the aggregator recorded every event: an event never appended is
// invisible. A verifier that takes the keys from the bundle itself learns
// only that the bundle is self-consistent; trust comes from keys obtained
// independently.
//
// The package does no I/O and takes time and keys as parameters.
package audit

import (
	"context"
	"crypto"
)

// Signer signs messages with a key that may live outside this process. It
// has the method set of keystore.Signer, so every key-store signer (file,
// Vault Transit) is one; audit needs an Ed25519 key.
type Signer interface {
	// Public returns the public key: an ed25519.PublicKey here.
	Public() crypto.PublicKey
	// Sign returns the 64-byte RFC 8032 signature over message.
	Sign(ctx context.Context, message []byte) ([]byte, error)
}
