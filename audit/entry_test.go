package audit

import (
	"context"
	"crypto/ed25519"
	"regexp"
	"strings"
	"testing"
)

func TestEntryGolden(t *testing.T) {
	e := baseEntry(ModelPublished, 0)
	e.Objects = []Object{{Type: "adapter", ID: "v1 <prod>", Digest: "sha256:" + strings.Repeat("ab", 32)}}
	e.Refs = []uint64{3}
	got, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"actor":{"auth":"local","id":"service:aggregator"},"federation":"fed-1","kind":"model.published","objects":[{"digest":"sha256:` +
		strings.Repeat("ab", 32) + `","id":"v1 <prod>","type":"adapter"}],"outcome":"ok","refs":[3],"schema":"fedtune.audit/v1","time":"2026-11-28T14:00:00Z"}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	p, err := ParseEntry(got)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := p.Marshal()
	if string(again) != want {
		t.Fatalf("round trip %s", again)
	}
}

func TestEntryValidation(t *testing.T) {
	for _, c := range []struct {
		mut  func(e *Entry)
		want string
	}{
		{func(e *Entry) { e.Schema = "v0" }, "schema"},
		{func(e *Entry) { e.Kind = "round.exploded" }, "unknown kind"},
		{func(e *Entry) { e.Federation = "" }, "federation"},
		{func(e *Entry) { e.Actor.ID = "alice@example.com" }, "actor.id"},
		{func(e *Entry) { e.Actor.Auth = "password" }, "actor.auth"},
		{func(e *Entry) { e.Time = "2026-11-28T15:00:00+01:00" }, "time"},
		{func(e *Entry) { e.Outcome = "meh" }, "outcome"},
		{func(e *Entry) { e.Message = "a\x00b" }, "control character"},
		{func(e *Entry) { e.Objects = []Object{{Type: "model", ID: "x", Digest: "md5:00"}} }, "objects[0].digest"},
		{func(e *Entry) { e.Kind = RoundOpened }, "round: required"},
		{func(e *Entry) { e.Kind = SiteEnrolled; e.Site = &Site{ID: "s"} }, "site.public_key"},
		{func(e *Entry) { e.Site = &Site{ID: "s"} }, "site: not allowed"},
		{func(e *Entry) { e.Kind = KeyRotated }, "key: required"},
		{func(e *Entry) { e.Kind = DPSpendKind; e.Round = u64(1) }, "dp: required"},
		{func(e *Entry) { e.SiteSignature = "AAAA" }, "site_signature: not allowed"},
		{func(e *Entry) { r := uint64(1 << 60); e.Round = &r }, "2^53"},
	} {
		e := baseEntry(ReviewPerformed, 0)
		c.mut(e)
		_, err := e.Marshal()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", err, c.want)
		}
	}
}

func TestParseEntryStrict(t *testing.T) {
	good, _ := baseEntry(ReviewPerformed, 0).Marshal()
	for _, c := range []struct{ in, want string }{
		{strings.Replace(string(good), `{"actor"`, `{ "actor"`, 1), "canonical form"},
		{string(good[:len(good)-1]) + `,"zzz":1}`, "unknown field"},
		{strings.Replace(string(good), `"outcome":"ok"`, `"message":"","outcome":"ok"`, 1), "omits"},
		{strings.Replace(string(good), `"outcome":"ok"`, `"outcome":"ok","round":null`, 1), "omits"},
		{string(good[:len(good)-1]), "not JSON"},
		{`[]`, "schema"},
	} {
		_, err := ParseEntry([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseEntry(%s) = %v, want error containing %q", c.in, err, c.want)
		}
	}
}

func TestSiteSignature(t *testing.T) {
	ctx := context.Background()
	s := seededSigner("site")
	e := baseEntry(DPSpendKind, 0)
	e.Round = u64(1)
	e.Actor = Actor{ID: "site:a", Auth: "signature"}
	e.DP = &DPSpend{Site: "a", Events: pureEvents(1), Delta: 1e-6, EpsilonCumulative: 1, EpsilonCap: 8}
	if err := e.SignAsSite(ctx, s); err != nil {
		t.Fatal(err)
	}
	data, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	pub := s.Public().(ed25519.PublicKey)
	if err := p.VerifySiteSignature(pub); err != nil {
		t.Fatal(err)
	}
	p.DP.EpsilonCumulative = 0.5
	if err := p.VerifySiteSignature(pub); err == nil {
		t.Error("altered spend verified")
	}
}

func FuzzParseEntry(f *testing.F) {
	l := newTestLog(f, 0, 0)
	l.federationN(1, 2)
	for _, line := range l.lines {
		f.Add(line)
	}
	f.Add([]byte(`{"schema":"fedtune.audit/v1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEntry(data)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatalf("parsed entry does not marshal: %v", err)
		}
		if string(again) != string(data) {
			t.Fatalf("ParseEntry(%q) re-encodes as %q", data, again)
		}
		var fast Entry
		if !decodeEntry(data, &fast) {
			t.Fatalf("fast decoder refused valid entry %q", data)
		}
		if ref, err := e.marshalViaReflection(); err != nil || string(ref) != string(data) {
			t.Fatalf("reference encoding of %q is %q, %v", data, ref, err)
		}
	})
}

// TestCanonicalEncoderMatches holds the hand-written encoder to the
// reference (encoding/json, then RFC 8785) for every kind of entry the
// tests build, and for the signed payload.
func TestCanonicalEncoderMatches(t *testing.T) {
	l := newTestLog(t, 0, 0)
	l.federation()
	var entries []*Entry
	for _, line := range l.lines {
		e, err := ParseEntry(line)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	k := baseEntry(KeyRotated, 5)
	k.Key = &Key{Name: "audit-checkpoint", Version: 2, Algorithm: "ed25519", PublicKey: "AAAA"}
	k.Reason = "scheduled \"rotation\"\n\u2028é"
	k.Refs = []uint64{0, 1 << 52}
	entries = append(entries, k)
	for i, e := range entries {
		got, err := e.appendCanonical(nil, true)
		if err != nil {
			t.Fatal(err)
		}
		want, err := e.marshalViaReflection()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("entry %d:\n got  %s\n want %s", i, got, want)
		}
	}
}

// TestMatchers compares the hand-written field checks with the regular
// expressions that define them.
func TestMatchers(t *testing.T) {
	for _, c := range []struct {
		m  matcher
		re string
	}{
		{isID, `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`},
		{isActor, `^(user|site|service|witness):[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`},
		{isType, `^[a-z][a-z0-9.-]{0,31}$`},
		{isDigest, `^sha256:[0-9a-f]{64}$`},
	} {
		re := regexp.MustCompile(c.re)
		alphabet := []string{"a", "Z", "0", ".", "_", "-", ":", "user:", "site:", "sha256:", "f", "g", " ", "é", strings.Repeat("a", 31), strings.Repeat("0", 63)}
		var inputs []string
		for _, a := range alphabet {
			for _, b := range alphabet {
				for _, d := range alphabet {
					inputs = append(inputs, a+b+d, a+b, b)
				}
			}
		}
		inputs = append(inputs, "", "sha256:"+strings.Repeat("ab", 32), "sha256:"+strings.Repeat("AB", 32), "witness:w-1", "service:"+strings.Repeat("x", 65))
		for _, s := range inputs {
			if c.m(s) != re.MatchString(s) {
				t.Errorf("%s on %q: got %v", c.re, s, c.m(s))
			}
		}
	}
}
