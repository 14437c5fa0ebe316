package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Config is the aggregator's configuration file (JSON; `//` line comments
// are allowed). Load validates it once; the server never re-reads it.
type Config struct {
	// Federation names the federation; it is bound into every round,
	// secure-aggregation message and audit entry.
	Federation string `json:"federation"`
	// Listen is the gRPC address (host:port).
	Listen string `json:"listen"`
	// MetricsListen serves /metrics (Prometheus text format) over plain
	// HTTP; empty turns it off.
	MetricsListen string `json:"metrics_listen"`
	// DataDir holds the SQLite state, the audit log, the key store and the
	// published adapters.
	DataDir string `json:"data_dir"`
	// BaseModel is the Hugging Face model directory every site fine-tunes;
	// its digest is computed at start and pinned in each round.
	BaseModel string `json:"base_model"`
	// ServerNames are the DNS names and IP addresses in the server's TLS
	// certificate (default: localhost, 127.0.0.1, ::1).
	ServerNames []string       `json:"server_names"`
	Keystore    KeystoreConfig `json:"keystore"`
	Round       RoundConfig    `json:"round"`
	Limits      LimitsConfig   `json:"limits"`
	Schedule    ScheduleConfig `json:"schedule"`
	// CertTTL is the lifetime of site certificates issued at enrollment and
	// renewal.
	CertTTL Duration `json:"cert_ttl"`
	// TokenTTL is how long an enrollment token stays valid.
	TokenTTL Duration `json:"token_ttl"`
	// Sites are invited at first start; their one-time enrollment tokens are
	// written to DataDir/tokens/<site>.token (mode 0600).
	Sites []string `json:"sites"`
}

// KeystoreConfig selects where the server's keys live.
type KeystoreConfig struct {
	// Type is "file" (encrypted key files; the passphrase comes from
	// FEDTUNE_PASSPHRASE or FEDTUNE_PASSPHRASE_FILE) or "vault" (signing
	// keys in Vault Transit, certificates from a Vault PKI role instead
	// of the built-in federation CA).
	Type string `json:"type"`
	// Dir is the file store directory (default DataDir/keys); file only.
	Dir string `json:"dir"`
	// Vault says how to reach Vault; vault only.
	Vault VaultSettings `json:"vault"`
	// CheckpointKey signs the audit log's checkpoints (Ed25519; default
	// "audit-checkpoint"); ProvenanceKey signs the provenance record of
	// each published adapter (default "provenance").
	CheckpointKey string `json:"checkpoint_key"`
	ProvenanceKey string `json:"provenance_key"`
}

// RoundConfig is the training and protocol configuration of every round.
type RoundConfig struct {
	LoraRank          int      `json:"lora_rank"`
	LoraAlpha         float64  `json:"lora_alpha"`
	TargetModules     []string `json:"target_modules"`
	FFA               bool     `json:"ffa"`
	ASeed             int64    `json:"a_seed"`
	NoiseMultiplier   float64  `json:"noise_multiplier"`
	ExpectedBatchSize int      `json:"expected_batch_size"`
	Steps             int      `json:"steps"`
	MaxGradNorm       float64  `json:"max_grad_norm"`
	Delta             float64  `json:"delta"`
	LearningRate      float64  `json:"learning_rate"`
	// ClipNorm is the client-level L2 bound S on a site's whole update.
	ClipNorm float64 `json:"clip_norm"`
	// Threshold is the secure-aggregation threshold t: at least t sites
	// must survive every stage, and fewer than t colluding sites learn
	// nothing about an honest site's update.
	Threshold int `json:"threshold"`
	// MinSites is the number of enrolled sites needed to open a round.
	MinSites int `json:"min_sites"`
	// StageTimeout bounds each secure-aggregation stage of a round.
	StageTimeout Duration `json:"stage_timeout"`
	// TrainTimeout bounds the first stage, in which sites train locally
	// before they advertise their keys.
	TrainTimeout Duration `json:"train_timeout"`
	// ServerOptimizer is "fedavg" or "fedadam"; ServerLR its step size.
	ServerOptimizer string  `json:"server_optimizer"`
	ServerLR        float64 `json:"server_lr"`
	// DistributedNoiseStd is the standard deviation, in update units, of
	// the distributed Skellam noise on the sum of any MinHonestSites honest
	// sites' updates (each site adds its share before masking); 0 turns
	// distributed noise off.
	DistributedNoiseStd float64 `json:"distributed_noise_std"`
	// MinHonestSites is how many honest sites the noise budget assumes: if
	// only that many sites add their share, the sum still carries noise of
	// DistributedNoiseStd. 0 means the round's secure-aggregation threshold.
	MinHonestSites int `json:"min_honest_sites"`
}

// LimitsConfig bounds what one caller may send.
type LimitsConfig struct {
	// MaxMessageBytes is the largest message the server accepts; masked
	// vectors are streamed in chunks below it.
	MaxMessageBytes int `json:"max_message_bytes"`
	// RatePerSecond and Burst bound the RPCs of one identity.
	RatePerSecond float64 `json:"rate_per_second"`
	Burst         int     `json:"burst"`
}

// ScheduleConfig makes the server open rounds by itself.
type ScheduleConfig struct {
	// Rounds is the number of rounds to run automatically (0: rounds are
	// opened only through Admin.OpenRound).
	Rounds int `json:"rounds"`
	// Interval is the pause between automatic rounds.
	Interval Duration `json:"interval"`
}

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &valueError{value: string(b), err: fmt.Errorf("want a duration like \"30s\" or \"2m\", got %s", b)}
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ConfigError names the file, and where known the line and field, of a
// configuration problem.
type ConfigError struct {
	File  string
	Line  int
	Field string
	Err   error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads, defaults and validates a server configuration file.
// Relative paths in it are resolved against the file's directory.
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := DecodeJSONC(path, raw, &c); err != nil {
		return nil, err
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&c.DataDir, &c.BaseModel, &c.Keystore.Dir} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	c.Keystore.Vault.ResolvePaths(base)
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return nil, &ConfigError{File: path, Line: fieldLine(raw, fe.field), Field: fe.field, Err: fe.err}
		}
		return nil, &ConfigError{File: path, Err: err}
	}
	return &c, nil
}

// DecodeJSONC decodes JSON with `//` line comments into v, rejecting unknown
// fields. Errors name the file, line and column.
func DecodeJSONC(name string, raw []byte, v any) error {
	clean := stripComments(raw)
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		line := 0
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		field := ""
		switch {
		case errors.As(err, &se):
			line = lineOf(clean, se.Offset)
		case errors.As(err, &te):
			line = lineOf(clean, te.Offset)
			field = te.Field
			err = fmt.Errorf("want %v, got JSON %s", te.Type, te.Value)
		default:
			var ve *valueError
			if errors.As(err, &ve) {
				// Find the value in the file to name its line and key.
				if i := bytes.Index(clean, []byte(ve.value)); i >= 0 {
					line = lineOf(clean, int64(i))
					start := bytes.LastIndexByte(clean[:i], '\n') + 1
					if ms := keyRe.FindAllSubmatch(clean[start:i], -1); len(ms) > 0 {
						field = string(ms[len(ms)-1][1])
					}
				}
				err = ve.err
			} else if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				field = strings.Trim(f, `"`)
				line = fieldLine(raw, field)
				err = errors.New("unknown field")
			}
		}
		return &ConfigError{File: name, Line: line, Field: field, Err: err}
	}
	if dec.More() {
		return &ConfigError{File: name, Line: lineOf(clean, dec.InputOffset()), Err: errors.New("trailing data after the JSON object")}
	}
	return nil
}

// stripComments blanks `//` comments outside strings, keeping offsets.
func stripComments(b []byte) []byte {
	out := bytes.Clone(b)
	inStr, esc := false, false
	for i := 0; i < len(out); i++ {
		c := out[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		if c == '"' {
			inStr = true
			continue
		}
		if c == '/' && i+1 < len(out) && out[i+1] == '/' {
			for i < len(out) && out[i] != '\n' {
				out[i] = ' '
				i++
			}
		}
	}
	return out
}

func lineOf(b []byte, off int64) int {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	return bytes.Count(b[:off], []byte("\n")) + 1
}

// fieldLine finds the line of the last path element of field ("round.threshold").
func fieldLine(raw []byte, field string) int {
	if field == "" {
		return 0
	}
	name := field
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		name = field[i+1:]
	}
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	i := bytes.Index(raw, []byte(`"`+name+`"`))
	if i < 0 {
		return 0
	}
	return lineOf(raw, int64(i))
}

// valueError is a bad value that a custom decoder rejected; the loader
// finds it in the file to report its line and key.
type valueError struct {
	value string
	err   error
}

func (e *valueError) Error() string { return e.err.Error() }

var keyRe = regexp.MustCompile(`"([A-Za-z0-9_]+)"\s*:`)

type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }

func ferr(field, format string, args ...any) error {
	return &fieldError{field: field, err: fmt.Errorf(format, args...)}
}

// SetDefaults fills unset fields with the documented defaults.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7443"
	}
	if len(c.ServerNames) == 0 {
		c.ServerNames = []string{"localhost", "127.0.0.1", "::1"}
	}
	if c.Keystore.Type == "" {
		c.Keystore.Type = "file"
	}
	if c.Keystore.Dir == "" && c.DataDir != "" && c.Keystore.Type == "file" {
		c.Keystore.Dir = filepath.Join(c.DataDir, "keys")
	}
	if c.Keystore.Type == "vault" {
		c.Keystore.Vault.SetDefaults()
	}
	if c.Keystore.CheckpointKey == "" {
		c.Keystore.CheckpointKey = keyAudit
	}
	if c.Keystore.ProvenanceKey == "" {
		c.Keystore.ProvenanceKey = keyProv
	}
	r := &c.Round
	if r.LoraRank == 0 {
		r.LoraRank = 4
	}
	if r.LoraAlpha == 0 {
		r.LoraAlpha = 2 * float64(r.LoraRank)
	}
	if len(r.TargetModules) == 0 {
		r.TargetModules = []string{"q_proj", "v_proj"}
	}
	if r.ExpectedBatchSize == 0 {
		r.ExpectedBatchSize = 16
	}
	if r.MaxGradNorm == 0 {
		r.MaxGradNorm = 1
	}
	if r.Delta == 0 {
		r.Delta = 1e-5
	}
	if r.LearningRate == 0 {
		r.LearningRate = 1e-3
	}
	if r.ClipNorm == 0 {
		r.ClipNorm = 1
	}
	if r.StageTimeout == 0 {
		r.StageTimeout = Duration(60 * time.Second)
	}
	if r.TrainTimeout == 0 {
		r.TrainTimeout = Duration(10 * time.Minute)
	}
	if r.ServerOptimizer == "" {
		r.ServerOptimizer = "fedavg"
	}
	if r.ServerLR == 0 {
		r.ServerLR = 1
	}
	if c.Limits.MaxMessageBytes == 0 {
		c.Limits.MaxMessageBytes = 1 << 20
	}
	if c.Limits.RatePerSecond == 0 {
		c.Limits.RatePerSecond = 50
	}
	if c.Limits.Burst == 0 {
		c.Limits.Burst = 200
	}
	if c.CertTTL == 0 {
		c.CertTTL = Duration(24 * time.Hour)
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = Duration(7 * 24 * time.Hour)
	}
}

// Validate checks every field; the error names the first bad field.
func (c *Config) Validate() error {
	if !validName(c.Federation) {
		return ferr("federation", "%q is not a valid name (want 1-64 of [a-z0-9._-])", c.Federation)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return ferr("listen", "%v", err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return ferr("metrics_listen", "%v", err)
		}
	}
	if c.DataDir == "" {
		return ferr("data_dir", "is required")
	}
	if c.BaseModel == "" {
		return ferr("base_model", "is required (a Hugging Face model directory)")
	}
	if st, err := os.Stat(c.BaseModel); err != nil {
		return ferr("base_model", "%v", err)
	} else if !st.IsDir() {
		return ferr("base_model", "%s is not a directory", c.BaseModel)
	}
	if err := c.Keystore.validate(); err != nil {
		return err
	}
	r := c.Round
	switch {
	case r.LoraRank < 1 || r.LoraRank > 256:
		return ferr("round.lora_rank", "%d out of range 1..256", r.LoraRank)
	case r.LoraAlpha <= 0:
		return ferr("round.lora_alpha", "must be > 0")
	case r.NoiseMultiplier <= 0:
		return ferr("round.noise_multiplier", "must be > 0 (DP-SGD noise σ)")
	case r.ExpectedBatchSize < 1:
		return ferr("round.expected_batch_size", "must be ≥ 1")
	case r.Steps < 1:
		return ferr("round.steps", "must be ≥ 1")
	case r.MaxGradNorm <= 0:
		return ferr("round.max_grad_norm", "must be > 0")
	case r.Delta <= 0 || r.Delta >= 1:
		return ferr("round.delta", "%g out of range (0,1)", r.Delta)
	case r.LearningRate <= 0:
		return ferr("round.learning_rate", "must be > 0")
	case r.ClipNorm <= 0:
		return ferr("round.clip_norm", "must be > 0")
	case r.Threshold < 2:
		return ferr("round.threshold", "%d: secure aggregation needs t ≥ 2", r.Threshold)
	case r.MinSites < r.Threshold:
		return ferr("round.min_sites", "%d is below round.threshold %d", r.MinSites, r.Threshold)
	case r.StageTimeout.D() < 100*time.Millisecond:
		return ferr("round.stage_timeout", "%v is too short (minimum 100ms)", r.StageTimeout.D())
	case r.TrainTimeout.D() < r.StageTimeout.D():
		return ferr("round.train_timeout", "%v is shorter than round.stage_timeout %v", r.TrainTimeout.D(), r.StageTimeout.D())
	case r.ServerOptimizer != "fedavg" && r.ServerOptimizer != "fedadam":
		return ferr("round.server_optimizer", "%q (want fedavg or fedadam)", r.ServerOptimizer)
	case r.ServerLR <= 0:
		return ferr("round.server_lr", "must be > 0")
	case !(r.DistributedNoiseStd >= 0) || math.IsInf(r.DistributedNoiseStd, 0):
		return ferr("round.distributed_noise_std", "%v: want a finite value ≥ 0 (0 turns distributed noise off)", r.DistributedNoiseStd)
	case r.MinHonestSites < 0:
		return ferr("round.min_honest_sites", "%d: want ≥ 1, or 0 for the secure-aggregation threshold", r.MinHonestSites)
	case r.MinHonestSites > 0 && r.MinHonestSites > r.MinSites:
		return ferr("round.min_honest_sites", "%d exceeds round.min_sites %d: a round may have only that many sites", r.MinHonestSites, r.MinSites)
	}
	for i, m := range r.TargetModules {
		switch m {
		case "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj":
		default:
			return ferr(fmt.Sprintf("round.target_modules[%d]", i), "unknown module %q", m)
		}
	}
	if c.Limits.MaxMessageBytes < 4096 || c.Limits.MaxMessageBytes > 64<<20 {
		return ferr("limits.max_message_bytes", "%d out of range 4096..64MiB", c.Limits.MaxMessageBytes)
	}
	if c.Limits.RatePerSecond <= 0 {
		return ferr("limits.rate_per_second", "must be > 0")
	}
	if c.Limits.Burst < 1 {
		return ferr("limits.burst", "must be ≥ 1")
	}
	if c.CertTTL.D() < time.Minute || c.CertTTL.D() > 90*24*time.Hour {
		return ferr("cert_ttl", "%v out of range 1m..90 days", c.CertTTL.D())
	}
	if c.TokenTTL.D() < time.Minute {
		return ferr("token_ttl", "%v is shorter than 1m", c.TokenTTL.D())
	}
	if c.Schedule.Rounds < 0 {
		return ferr("schedule.rounds", "must be ≥ 0")
	}
	seen := map[string]bool{}
	for i, s := range c.Sites {
		if !validName(s) {
			return ferr(fmt.Sprintf("sites[%d]", i), "%q is not a valid site name (want 1-64 of [a-z0-9._-])", s)
		}
		if seen[s] {
			return ferr(fmt.Sprintf("sites[%d]", i), "duplicate site %q", s)
		}
		seen[s] = true
	}
	return nil
}

// validName reports whether s is a federation or site name: 1–64 bytes of
// lower-case letters, digits, '.', '_' and '-'.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (k *KeystoreConfig) validate() error {
	switch k.Type {
	case "file":
		if !k.Vault.IsZero() {
			return ferr("keystore.vault", "is set but keystore.type is \"file\" (want type \"vault\")")
		}
	case "vault":
		if k.Dir != "" {
			return ferr("keystore.dir", "is set but keystore.type is \"vault\" (the file store directory is for type \"file\")")
		}
		if err := k.Vault.Check("keystore.vault"); err != nil {
			return err
		}
	default:
		return ferr("keystore.type", "%q (want file or vault)", k.Type)
	}
	for _, f := range []struct{ field, name string }{{"keystore.checkpoint_key", k.CheckpointKey}, {"keystore.provenance_key", k.ProvenanceKey}} {
		if !validKeyName(f.name) {
			return ferr(f.field, "%q is not a key name (want 1-128 of [A-Za-z0-9._-], starting with a letter or digit)", f.name)
		}
	}
	if k.CheckpointKey == k.ProvenanceKey {
		return ferr("keystore.provenance_key", "%q is also keystore.checkpoint_key: each key has one purpose", k.ProvenanceKey)
	}
	return nil
}
