// Package client is the site side of a federation: it enrolls with the
// aggregator, waits for rounds, checks each round's configuration against
// the site's own policy, trains a LoRA adapter with DP-SGD on the site's
// records, submits the update through secure aggregation, signs its
// dp.spend audit entry, verifies and cosigns the audit log's checkpoints and
// downloads each published global adapter.
//
// # Guarantees
//
// The site's privacy ledger (dp/ledger) is the authority on its budget: a
// round is refused, with an audited reason, when its projected cumulative ε
// would exceed the ledger's cap or the policy's per-round limit, or when its
// base model is not on the site's allow list. The spend is recorded in the
// ledger before any record is read. A client restarted in the middle of a
// round does not train for that round again: it waits for the next one.
//
// # What the aggregator sees
//
// Only masked vectors (crypto/secagg), the site's signed dp.spend entry (ε,
// δ, the DP event) and cosignatures. Records, per-record gradients and the
// site's own update never leave the process.
package client

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/fedtune/fedtune/server"
)

// Config is a site's configuration file (JSON; `//` comments allowed).
type Config struct {
	// Site is this site's name in the federation.
	Site string `json:"site"`
	// Server is the aggregator's host:port; ServerName the name in its
	// certificate (default "localhost").
	Server     string `json:"server"`
	ServerName string `json:"server_name"`
	// CAFile is the federation CA certificate (PEM), obtained out of band
	// with the enrollment token.
	CAFile string `json:"ca_file"`
	// TokenFile holds the one-time enrollment token; used once.
	TokenFile string `json:"token_file"`
	// DataDir holds the site's keys (with keystore type file),
	// certificate, privacy ledger, witness state and downloaded adapters.
	DataDir string `json:"data_dir"`
	// Keystore says where the site's keys live.
	Keystore KeystoreConfig `json:"keystore"`
	// Data is the site's training records (JSONL); EvalData optional
	// held-out records.
	Data     string `json:"data"`
	EvalData string `json:"eval_data"`
	// BaseModel is the site's local copy of the base model; its digest
	// must match the round's and be in Policy.AllowedBaseModels.
	BaseModel string `json:"base_model"`
	Policy    Policy `json:"policy"`
	// MaxSeq is the longest tokenized record used in training.
	MaxSeq int `json:"max_seq"`
	// Rounds makes the client exit after it has taken part in (or refused)
	// this many rounds; 0 runs until stopped.
	Rounds int `json:"rounds"`
	// DropAt makes the site vanish at a stage of every round it joins:
	// "advertise_keys", "share_keys", "masked_input", "consistency_check"
	// or "unmask". For drills and demos only.
	DropAt string `json:"drop_at"`
}

// KeystoreConfig selects where the site's keys live.
type KeystoreConfig struct {
	// Type is "file" (DataDir/keys, encrypted under FEDTUNE_PASSPHRASE or
	// FEDTUNE_PASSPHRASE_FILE; the default) or "vault".
	Type string `json:"type"`
	// Vault says how to reach Vault; vault only.
	Vault server.VaultSettings `json:"vault"`
	// IdentityKey is the site's Ed25519 identity key (secure aggregation,
	// dp.spend entries, cosignatures); a Transit key with vault. Default
	// "site-identity" (file) or "fedtune-site-<site>" (vault). With vault
	// the site's secrets are KV entries named after it:
	// <identity_key>.tls-key (the mTLS private key, created on first
	// start) and <identity_key>.enrollment-token (read when token_file is
	// empty).
	IdentityKey string `json:"identity_key"`
}

// Policy is what the site accepts, enforced by the site.
type Policy struct {
	// AllowedBaseModels lists base model digests ("sha256:...") the site
	// trains; a round for any other model is refused.
	AllowedBaseModels []string `json:"allowed_base_models"`
	// MaxEpsilonPerRound bounds ε of one round's training (at EpsilonDelta).
	MaxEpsilonPerRound float64 `json:"max_epsilon_per_round"`
	// EpsilonCap and Delta create the privacy ledger on first start; later
	// the ledger's own cap is authoritative.
	EpsilonCap float64 `json:"epsilon_cap"`
	Delta      float64 `json:"delta"`
	// MaxRounds bounds how many rounds the site joins in its lifetime.
	MaxRounds int `json:"max_rounds"`
}

// LoadConfig reads and validates a client configuration file; relative
// paths are resolved against the file's directory.
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := server.DecodeJSONC(path, raw, &c); err != nil {
		return nil, err
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&c.CAFile, &c.TokenFile, &c.DataDir, &c.Data, &c.EvalData, &c.BaseModel} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	c.Keystore.Vault.ResolvePaths(base)
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, &server.ConfigError{File: path, Err: err}
	}
	return &c, nil
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.ServerName == "" {
		c.ServerName = "localhost"
	}
	if c.MaxSeq == 0 {
		c.MaxSeq = 64
	}
	if c.Policy.Delta == 0 {
		c.Policy.Delta = 1e-5
	}
	c.Keystore.setDefaults(c.Site)
}

func (k *KeystoreConfig) setDefaults(site string) {
	if k.Type == "" {
		k.Type = "file"
	}
	if k.IdentityKey == "" {
		k.IdentityKey = keyIdentity
		if k.Type == "vault" {
			k.IdentityKey = "fedtune-site-" + site
		}
	}
	if k.Type == "vault" {
		k.Vault.SetDefaults()
	}
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Site == "":
		return fmt.Errorf("site: is required")
	case c.Server == "":
		return fmt.Errorf("server: is required (host:port of the aggregator)")
	case c.CAFile == "":
		return fmt.Errorf("ca_file: is required (the federation CA certificate)")
	case c.DataDir == "":
		return fmt.Errorf("data_dir: is required")
	case c.Data == "":
		return fmt.Errorf("data: is required (the site's JSONL records)")
	case c.BaseModel == "":
		return fmt.Errorf("base_model: is required")
	case len(c.Policy.AllowedBaseModels) == 0:
		return fmt.Errorf("policy.allowed_base_models: list at least one base model digest")
	case c.Policy.MaxEpsilonPerRound <= 0:
		return fmt.Errorf("policy.max_epsilon_per_round: must be > 0")
	case c.Policy.EpsilonCap <= 0:
		return fmt.Errorf("policy.epsilon_cap: must be > 0")
	case c.Policy.Delta <= 0 || c.Policy.Delta >= 1:
		return fmt.Errorf("policy.delta: %g out of range (0,1)", c.Policy.Delta)
	case c.MaxSeq < 8 || c.MaxSeq > 8192:
		return fmt.Errorf("max_seq: %d out of range 8..8192", c.MaxSeq)
	case c.Rounds < 0:
		return fmt.Errorf("rounds: must be ≥ 0")
	}
	switch c.DropAt {
	case "", "advertise_keys", "share_keys", "masked_input", "consistency_check", "unmask":
	default:
		return fmt.Errorf("drop_at: %q is not a stage (advertise_keys, share_keys, masked_input, consistency_check, unmask)", c.DropAt)
	}
	switch c.Keystore.Type {
	case "file":
		if !c.Keystore.Vault.IsZero() {
			return fmt.Errorf("keystore.vault: is set but keystore.type is \"file\" (want type \"vault\")")
		}
		if c.Keystore.IdentityKey == keyTLS {
			return fmt.Errorf("keystore.identity_key: %q is the name of the site's TLS key", keyTLS)
		}
	case "vault":
		if err := c.Keystore.Vault.Check("keystore.vault"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("keystore.type: %q (want file or vault)", c.Keystore.Type)
	}
	if !keyNameRE.MatchString(c.Keystore.IdentityKey) {
		return fmt.Errorf("keystore.identity_key: %q is not a key name (want 1-100 of [A-Za-z0-9._-], starting with a letter or digit)", c.Keystore.IdentityKey)
	}
	if _, err := os.Stat(c.Data); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return nil
}

// backoff returns the n-th reconnect delay: exponential from 200 ms, capped
// at 10 s.
func backoff(n int) time.Duration {
	d := 200 * time.Millisecond << min(n, 6)
	return min(d, 10*time.Second)
}

// keyNameRE leaves room for the ".tls-key" and ".enrollment-token" suffixes
// of the site's secrets within the key store's 128-character names.
var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
