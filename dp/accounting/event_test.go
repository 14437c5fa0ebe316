package accounting

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestEventJSONGolden(t *testing.T) {
	b, err := MarshalEvent(DPSGD(0.01, 1.1, 100))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"self_composed","count":100,"event":{"type":"poisson_sampled","sampling_probability":0.01,"event":{"type":"gaussian","noise_multiplier":1.1}}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	e, err := UnmarshalEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if e != DPSGD(0.01, 1.1, 100) {
		t.Fatalf("round trip: %#v", e)
	}
}

func TestEventJSONErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"type":"gaussian"}`, "needs noise_multiplier"},
		{`{"type":"gaussian","noise_multiplier":-1}`, "noise_multiplier must be"},
		{`{"type":"laplace","noise_multiplier":1}`, `unknown type "laplace"`},
		{`{"type":"poisson_sampled","sampling_probability":2,"event":{"type":"gaussian","noise_multiplier":1}}`, "sampling_probability must be in [0, 1]"},
		{`{"type":"composed","events":[{"type":"gaussian","noise_multiplier":1},{"type":"gaussian"}]}`, "event.events[1]: gaussian needs noise_multiplier"},
		{`{"type":"self_composed","count":-3,"event":{"type":"gaussian","noise_multiplier":1}}`, "count must be"},
		{`{"type":"gaussian","noise_multiplier":1,"extra":1}`, "unknown field"},
		{`{"type":"gaussian","noise_multiplier":1} {}`, "trailing data"},
		{``, "EOF"},
	} {
		_, err := UnmarshalEvent([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want error containing %q", c.in, err, c.want)
		}
	}
}

func TestEpsilonFromEventsJSON(t *testing.T) {
	a, _ := MarshalEvent(DPSGD(0.02, 1.0, 100))
	b, _ := MarshalEvent(DPSGD(0.02, 1.0, 200))
	got, err := EpsilonFromEventsJSON([]json.RawMessage{a, b}, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := EpsilonPLD(DPSGD(0.02, 1.0, 300), 1e-6, nil)
	if math.Abs(got-want) > 1e-3 {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := EpsilonFromEventsJSON([]json.RawMessage{a, []byte(`{"type":"x"}`)}, 1e-6); err == nil || !strings.Contains(err.Error(), "event 1") {
		t.Errorf("bad event: %v", err)
	}
}

func FuzzUnmarshalEvent(f *testing.F) {
	for _, e := range []Event{
		DPSGD(0.01, 1.1, 100),
		Gaussian{NoiseMultiplier: 2},
		Composed{Events: []Event{DPSGD(0.1, 1, 3), Gaussian{NoiseMultiplier: 5}}},
	} {
		b, _ := MarshalEvent(e)
		f.Add(b)
	}
	f.Add([]byte(`{"type":"composed","events":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := UnmarshalEvent(data)
		if err != nil {
			return
		}
		b, err := MarshalEvent(e)
		if err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
		e2, err := UnmarshalEvent(b)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		b2, _ := MarshalEvent(e2)
		if !bytes.Equal(b, b2) {
			t.Fatalf("not stable: %s vs %s", b, b2)
		}
	})
}
