package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fedtune/fedtune/audit/canonjson"
)

// SchemaVersion is the value of every entry's "schema" member.
const SchemaVersion = "fedtune.audit/v1"

// Kind says what happened.
type Kind string

// The entry kinds.
const (
	FederationCreated Kind = "federation.created"
	SiteAdded         Kind = "site.added"
	SiteEnrolled      Kind = "site.enrolled" // carries the site's Ed25519 public key
	SiteRevoked       Kind = "site.revoked"
	KeyCreated        Kind = "key.created"
	KeyRotated        Kind = "key.rotated"
	RoundOpened       Kind = "round.opened"
	RoundClosed       Kind = "round.closed"
	RoundAborted      Kind = "round.aborted"
	RoundRefused      Kind = "round.refused" // a site refused the round's configuration
	UpdateAccepted    Kind = "update.accepted"
	UpdateRejected    Kind = "update.rejected"
	SecAggDropout     Kind = "secagg.dropout"
	DPSpendKind       Kind = "dp.spend" // signed by the site itself
	AggregateProduced Kind = "aggregate.produced"
	ModelPublished    Kind = "model.published"
	ModelWithdrawn    Kind = "model.withdrawn"
	AccessDenied      Kind = "access.denied"
	ExportPerformed   Kind = "export.performed"
	ReviewPerformed   Kind = "review.performed"
)

// Kinds lists every kind in a stable order.
var Kinds = []Kind{
	FederationCreated, SiteAdded, SiteEnrolled, SiteRevoked, KeyCreated, KeyRotated,
	RoundOpened, RoundClosed, RoundAborted, RoundRefused, UpdateAccepted, UpdateRejected,
	SecAggDropout, DPSpendKind, AggregateProduced, ModelPublished, ModelWithdrawn,
	AccessDenied, ExportPerformed, ReviewPerformed,
}

// Outcome is the result of the recorded action.
type Outcome string

// The outcomes.
const (
	OutcomeOK      Outcome = "ok"
	OutcomeDenied  Outcome = "denied"
	OutcomeRefused Outcome = "refused"
	OutcomeFailed  Outcome = "failed"
	OutcomeAborted Outcome = "aborted"
)

// Actor is who caused the entry, by pseudonymous id, and how that actor
// authenticated.
type Actor struct {
	// ID is "<type>:<name>" with type one of user, site, service, witness
	// and a name of 1 to 64 characters from [A-Za-z0-9._-]: a pseudonym,
	// never a person's name or e-mail address.
	ID string `json:"id"`
	// Auth is how the actor proved its identity: "mtls", "signature"
	// (an Ed25519 signature in the entry), "local" (a local operator on
	// the aggregator host), "token" or "none".
	Auth string `json:"auth"`
}

// Object is a thing an entry is about, identified and optionally pinned
// by digest.
type Object struct {
	Type   string `json:"type"`             // model, adapter, aggregate, update, round, key, export, policy, ...
	ID     string `json:"id"`               // its identifier
	Digest string `json:"digest,omitempty"` // "sha256:<64 lowercase hex>"
}

// Site is the site an entry of a site.* kind concerns.
type Site struct {
	ID string `json:"id"`
	// PublicKey is the site's Ed25519 identity key, standard base64, in
	// site.enrolled entries: the key that signs the site's dp.spend entries.
	PublicKey string `json:"public_key,omitempty"`
}

// Key is the key an entry of a key.* kind concerns (never key material
// other than the public key).
type Key struct {
	Name      string `json:"name"`
	Version   int    `json:"version"`
	Algorithm string `json:"algorithm"`
	PublicKey string `json:"public_key,omitempty"` // standard base64 of the raw or PKIX public key
}

// DPSpend is a site's privacy spend: the DP events of its local training
// in the round and the site's own running total.
type DPSpend struct {
	Site string `json:"site"`
	// Events is the JSON of the DP event algebra for this spend (for
	// DP-SGD: a self-composed Poisson-sampled Gaussian), as the dp package
	// serializes it.
	Events            json.RawMessage `json:"events"`
	Delta             float64         `json:"delta"`
	EpsilonCumulative float64         `json:"epsilon_cumulative"` // ε of everything the site spent so far, at Delta
	EpsilonCap        float64         `json:"epsilon_cap"`        // the site's lifetime cap
}

// Entry is one audit log leaf. Its leaf data is [Entry.Marshal]: RFC 8785
// canonical JSON. Entries never hold record contents or personal data:
// actors are pseudonyms, objects are ids and digests, free text is for
// short operational notes.
type Entry struct {
	Schema     string   `json:"schema"`
	Kind       Kind     `json:"kind"`
	Federation string   `json:"federation"`
	Round      *uint64  `json:"round,omitempty"`
	Actor      Actor    `json:"actor"`
	Time       string   `json:"time"` // RFC 3339 UTC ("2026-11-28T14:00:00Z", optional fraction), as the appender's clock read it
	Outcome    Outcome  `json:"outcome"`
	Reason     string   `json:"reason,omitempty"`
	Objects    []Object `json:"objects,omitempty"`
	Refs       []uint64 `json:"refs,omitempty"` // indices of earlier entries this one refers to
	Message    string   `json:"message,omitempty"`
	Site       *Site    `json:"site,omitempty"`
	Key        *Key     `json:"key,omitempty"`
	DP         *DPSpend `json:"dp,omitempty"`
	// SiteSignature is the site's Ed25519 signature (standard base64) over
	// [Entry.SignedPayload]; required on dp.spend entries.
	SiteSignature string `json:"site_signature,omitempty"`
}

// Limits on entry fields.
const (
	MaxEntrySize   = 1<<16 - 1 // C2SP tlog-tiles entry limit
	maxReason      = 512
	maxMessage     = 4096
	maxObjects     = 64
	maxRefs        = 64
	maxSafeInteger = 1<<53 - 1 // integers beyond this do not survive RFC 8785 (IEEE 754 doubles)
)

var (
	idRE     = matcher(isID)     // [A-Za-z0-9][A-Za-z0-9._-]{0,63}
	actorRE  = matcher(isActor)  // (user|site|service|witness):<id>
	typeRE   = matcher(isType)   // [a-z][a-z0-9.-]{0,31}
	digestRE = matcher(isDigest) // sha256:<64 lowercase hex>
	authOK   = map[string]bool{"mtls": true, "signature": true, "local": true, "token": true, "none": true}
	kindOK   = func() map[Kind]bool {
		m := map[Kind]bool{}
		for _, k := range Kinds {
			m[k] = true
		}
		return m
	}()
	needRound = map[Kind]bool{RoundOpened: true, RoundClosed: true, RoundAborted: true, RoundRefused: true,
		UpdateAccepted: true, UpdateRejected: true, SecAggDropout: true, DPSpendKind: true, AggregateProduced: true}
	outcomeOK = map[Outcome]bool{OutcomeOK: true, OutcomeDenied: true, OutcomeRefused: true, OutcomeFailed: true, OutcomeAborted: true}
)

// FormatTime formats t the way entries carry it: RFC 3339, UTC, with the
// shortest fraction of a second.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ParsedTime returns the entry's time.
func (e *Entry) ParsedTime() (time.Time, error) { return time.Parse(time.RFC3339Nano, e.Time) }

func freeText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, at most %d allowed", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if (r < 0x20 && r != '\n') || r == 0x7f {
			return fmt.Errorf("%s contains control character %U", field, r)
		}
	}
	return nil
}

func validB64Key(field, s string, size int) error {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s || (size > 0 && len(b) != size) || len(b) == 0 {
		if size > 0 {
			return fmt.Errorf("%s: want canonical standard base64 of %d bytes", field, size)
		}
		return fmt.Errorf("%s: want canonical standard base64", field)
	}
	return nil
}

func finiteNonNeg(field string, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return fmt.Errorf("%s = %v, want a finite number >= 0", field, f)
	}
	return nil
}

// Validate checks the entry against the schema: known kind and outcome,
// well-formed ids, times and digests, and the members each kind requires
// or forbids. The messages name the JSON member at fault.
func (e *Entry) Validate() error {
	if e.Schema != SchemaVersion {
		return fmt.Errorf("schema: %q, want %q", e.Schema, SchemaVersion)
	}
	if !kindOK[e.Kind] {
		return fmt.Errorf("kind: unknown kind %q", e.Kind)
	}
	if !idRE.MatchString(e.Federation) {
		return fmt.Errorf("federation: %q is not an id (1-64 of [A-Za-z0-9._-])", e.Federation)
	}
	if e.Round != nil && *e.Round > maxSafeInteger {
		return fmt.Errorf("round: %d exceeds 2^53-1", *e.Round)
	}
	if !actorRE.MatchString(e.Actor.ID) {
		return fmt.Errorf("actor.id: %q, want user|site|service|witness:<pseudonym>", e.Actor.ID)
	}
	if !authOK[e.Actor.Auth] {
		return fmt.Errorf("actor.auth: %q, want mtls, signature, local, token or none", e.Actor.Auth)
	}
	t, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil || FormatTime(t) != e.Time {
		return fmt.Errorf("time: %q is not RFC 3339 UTC in canonical form (like %q)", e.Time, "2026-11-28T14:00:00Z")
	}
	if !outcomeOK[e.Outcome] {
		return fmt.Errorf("outcome: %q, want ok, denied, refused, failed or aborted", e.Outcome)
	}
	if err := freeText("reason", e.Reason, maxReason); err != nil {
		return err
	}
	if err := freeText("message", e.Message, maxMessage); err != nil {
		return err
	}
	if len(e.Objects) > maxObjects {
		return fmt.Errorf("objects: %d objects, at most %d allowed", len(e.Objects), maxObjects)
	}
	for i, o := range e.Objects {
		if !typeRE.MatchString(o.Type) {
			return fmt.Errorf("objects[%d].type: %q is not a type name", i, o.Type)
		}
		if o.ID == "" || len(o.ID) > 256 || strings.ContainsAny(o.ID, "\n\r\t") || !utf8.ValidString(o.ID) {
			return fmt.Errorf("objects[%d].id: want 1-256 bytes of UTF-8 without control characters", i)
		}
		if o.Digest != "" && !digestRE.MatchString(o.Digest) {
			return fmt.Errorf("objects[%d].digest: %q, want sha256:<64 lowercase hex>", i, o.Digest)
		}
	}
	if len(e.Refs) > maxRefs {
		return fmt.Errorf("refs: %d references, at most %d allowed", len(e.Refs), maxRefs)
	}
	for i, r := range e.Refs {
		if r > maxSafeInteger {
			return fmt.Errorf("refs[%d]: %d exceeds 2^53-1", i, r)
		}
	}
	if needRound[e.Kind] && e.Round == nil {
		return fmt.Errorf("round: required for %s", e.Kind)
	}
	isSite := e.Kind == SiteAdded || e.Kind == SiteEnrolled || e.Kind == SiteRevoked
	switch {
	case isSite && e.Site == nil:
		return fmt.Errorf("site: required for %s", e.Kind)
	case !isSite && e.Site != nil:
		return fmt.Errorf("site: not allowed for %s", e.Kind)
	case isSite:
		if !idRE.MatchString(e.Site.ID) {
			return fmt.Errorf("site.id: %q is not an id", e.Site.ID)
		}
		if e.Kind == SiteEnrolled {
			if err := validB64Key("site.public_key", e.Site.PublicKey, ed25519.PublicKeySize); err != nil {
				return err
			}
		} else if e.Site.PublicKey != "" {
			return fmt.Errorf("site.public_key: only allowed in %s", SiteEnrolled)
		}
	}
	isKey := e.Kind == KeyCreated || e.Kind == KeyRotated
	switch {
	case isKey && e.Key == nil:
		return fmt.Errorf("key: required for %s", e.Kind)
	case !isKey && e.Key != nil:
		return fmt.Errorf("key: not allowed for %s", e.Kind)
	case isKey:
		if !idRE.MatchString(e.Key.Name) {
			return fmt.Errorf("key.name: %q is not an id", e.Key.Name)
		}
		if e.Key.Version < 1 || e.Key.Version > 1<<30 {
			return fmt.Errorf("key.version: %d, want >= 1", e.Key.Version)
		}
		if !typeRE.MatchString(e.Key.Algorithm) {
			return fmt.Errorf("key.algorithm: %q is not an algorithm name", e.Key.Algorithm)
		}
		if e.Key.PublicKey != "" {
			if err := validB64Key("key.public_key", e.Key.PublicKey, 0); err != nil {
				return err
			}
		}
	}
	switch {
	case e.Kind == DPSpendKind && e.DP == nil:
		return errors.New("dp: required for dp.spend")
	case e.Kind != DPSpendKind && e.DP != nil:
		return fmt.Errorf("dp: not allowed for %s", e.Kind)
	case e.Kind != DPSpendKind && e.SiteSignature != "":
		return fmt.Errorf("site_signature: not allowed for %s", e.Kind)
	case e.Kind == DPSpendKind:
		d := e.DP
		if !idRE.MatchString(d.Site) {
			return fmt.Errorf("dp.site: %q is not an id", d.Site)
		}
		if e.Actor.ID != "site:"+d.Site || e.Actor.Auth != "signature" {
			return fmt.Errorf("actor: a dp.spend is made by site:%s with auth \"signature\", not %s (%s)", d.Site, e.Actor.ID, e.Actor.Auth)
		}
		if len(d.Events) == 0 || !json.Valid(d.Events) {
			return errors.New("dp.events: want the JSON of the spend's DP events")
		}
		if err := finiteNonNeg("dp.delta", d.Delta); err != nil {
			return err
		}
		if d.Delta >= 1 {
			return fmt.Errorf("dp.delta = %v, want < 1", d.Delta)
		}
		if err := finiteNonNeg("dp.epsilon_cumulative", d.EpsilonCumulative); err != nil {
			return err
		}
		if err := finiteNonNeg("dp.epsilon_cap", d.EpsilonCap); err != nil {
			return err
		}
		if err := validB64Key("site_signature", e.SiteSignature, ed25519.SignatureSize); err != nil {
			return err
		}
	}
	return nil
}

// Marshal validates e and returns its leaf data: RFC 8785 canonical JSON.
func (e *Entry) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("audit: invalid %s entry: %w", e.Kind, err)
	}
	return e.marshal()
}

func (e *Entry) marshal() ([]byte, error) {
	c, err := e.appendCanonical(make([]byte, 0, 512), true)
	if err != nil {
		return nil, fmt.Errorf("audit: encoding entry: %w", err)
	}
	if len(c) > MaxEntrySize {
		return nil, fmt.Errorf("audit: entry is %d bytes, at most %d allowed", len(c), MaxEntrySize)
	}
	return c, nil
}

// marshalViaReflection is the reference encoding: encoding/json, then
// RFC 8785 canonicalization. appendCanonical must agree with it.
func (e *Entry) marshalViaReflection() ([]byte, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return canonjson.Canonicalize(raw)
}

// ParseEntry parses leaf data strictly: it must be canonical JSON (RFC
// 8785) with exactly the members of the schema, valid for its kind, and
// its re-encoding must give back the same bytes. The error names the
// offending member or position.
func ParseEntry(data []byte) (*Entry, error) {
	if len(data) > MaxEntrySize {
		return nil, fmt.Errorf("entry is %d bytes, at most %d allowed", len(data), MaxEntrySize)
	}
	// Fast path: decode, validate, re-encode canonically and compare. Equal
	// bytes prove the input canonical and free of unknown, null or empty
	// members, since the encoder writes only canonical JSON of the schema.
	var e Entry
	if decodeEntry(data, &e) {
		if err := e.Validate(); err != nil {
			return nil, err
		}
		if again, err := e.appendCanonical(make([]byte, 0, len(data)), true); err == nil && bytes.Equal(again, data) {
			return &e, nil
		}
	}
	// Slow path: find the precise reason.
	c, err := canonjson.Canonicalize(data)
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if !bytes.Equal(c, data) {
		i := 0
		for i < len(c) && i < len(data) && c[i] == data[i] {
			i++
		}
		return nil, fmt.Errorf("not in RFC 8785 canonical form (first difference at byte %d)", i)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	e = Entry{}
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("does not match the entry schema: %w", err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if again, err := e.appendCanonical(nil, true); err == nil && bytes.Equal(again, data) {
		return &e, nil
	}
	return nil, errors.New("has members with empty or null values that the schema omits")
}

// siteSignatureContext separates site entry signatures from every other
// use of a site's identity key.
const siteSignatureContext = "fedtune audit site-signed entry v1\n"

// SignedPayload returns the bytes a site signs: a context string and the
// canonical JSON of the entry without its site_signature member.
func (e *Entry) SignedPayload() ([]byte, error) {
	return e.appendCanonical([]byte(siteSignatureContext), false)
}

// SignAsSite sets e.SiteSignature to the site's Ed25519 signature over
// e.SignedPayload(). Sites call it on their own dp.spend entries before
// handing them to the aggregator.
func (e *Entry) SignAsSite(ctx context.Context, s Signer) error {
	if _, ok := s.Public().(ed25519.PublicKey); !ok {
		return fmt.Errorf("audit: site signer has a %T key, want Ed25519", s.Public())
	}
	p, err := e.SignedPayload()
	if err != nil {
		return err
	}
	sig, err := s.Sign(ctx, p)
	if err != nil {
		return fmt.Errorf("audit: site signature: %w", err)
	}
	e.SiteSignature = base64.StdEncoding.EncodeToString(sig)
	return nil
}

// VerifySiteSignature checks e.SiteSignature with the site's public key.
func (e *Entry) VerifySiteSignature(pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.Strict().DecodeString(e.SiteSignature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: site_signature is not a base64 Ed25519 signature", ErrBadSignature)
	}
	p, err := e.SignedPayload()
	if err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, p, sig) {
		return ErrBadSignature
	}
	return nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// matcher adapts a predicate to the MatchString call sites.
type matcher func(string) bool

func (m matcher) MatchString(s string) bool { return m(s) }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isID(s string) bool {
	if len(s) == 0 || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isActor(s string) bool {
	for _, p := range []string{"user:", "site:", "service:", "witness:"} {
		if len(s) > len(p) && s[:len(p)] == p {
			return isID(s[len(p):])
		}
	}
	return false
}

func isType(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func isDigest(s string) bool {
	const p = "sha256:"
	if len(s) != len(p)+64 || s[:len(p)] != p {
		return false
	}
	for i := len(p); i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
