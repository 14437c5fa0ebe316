package accounting

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Event is a privacy event: a description of a randomised mechanism that an
// accountant can turn into (ε, δ). The implementations are [Gaussian],
// [PoissonSampled], [SelfComposed] and [Composed].
type Event interface {
	// validate reports whether the parameters are in range.
	validate() error
	isEvent()
}

// Gaussian is the Gaussian mechanism with L2 sensitivity 1 and noise standard
// deviation NoiseMultiplier.
type Gaussian struct {
	NoiseMultiplier float64
}

// PoissonSampled runs Event on a Poisson sample of the records in which each
// record is included independently with probability SamplingRate.
type PoissonSampled struct {
	SamplingRate float64
	Event        Event
}

// SelfComposed runs Event Count times, adaptively.
type SelfComposed struct {
	Event Event
	Count int
}

// Composed runs Events in sequence, adaptively.
type Composed struct {
	Events []Event
}

func (Gaussian) isEvent()       {}
func (PoissonSampled) isEvent() {}
func (SelfComposed) isEvent()   {}
func (Composed) isEvent()       {}

func (g Gaussian) validate() error {
	if !(g.NoiseMultiplier > 0) || math.IsInf(g.NoiseMultiplier, 0) {
		return fmt.Errorf("gaussian: noise_multiplier must be finite and > 0, got %v", g.NoiseMultiplier)
	}
	return nil
}

func (p PoissonSampled) validate() error {
	if !(p.SamplingRate >= 0 && p.SamplingRate <= 1) {
		return fmt.Errorf("poisson_sampled: sampling_probability must be in [0, 1], got %v", p.SamplingRate)
	}
	if p.Event == nil {
		return errors.New("poisson_sampled: missing event")
	}
	return p.Event.validate()
}

func (s SelfComposed) validate() error {
	if s.Count < 0 || s.Count > 1<<31 {
		return fmt.Errorf("self_composed: count must be in [0, 2^31], got %d", s.Count)
	}
	if s.Event == nil {
		return errors.New("self_composed: missing event")
	}
	return s.Event.validate()
}

func (c Composed) validate() error {
	for i, e := range c.Events {
		if e == nil {
			return fmt.Errorf("composed: event %d is missing", i)
		}
		if err := e.validate(); err != nil {
			return fmt.Errorf("composed: event %d: %w", i, err)
		}
	}
	return nil
}

// Validate reports whether every parameter in e is in range.
func Validate(e Event) error {
	if e == nil {
		return errors.New("missing event")
	}
	return e.validate()
}

// DPSGD is the event of T steps of DP-SGD with Poisson sampling rate q and
// noise multiplier sigma: SelfComposed(PoissonSampled(q, Gaussian(sigma)), T).
func DPSGD(q, sigma float64, steps int) Event {
	return SelfComposed{Event: PoissonSampled{SamplingRate: q, Event: Gaussian{NoiseMultiplier: sigma}}, Count: steps}
}

// wireEvent is the JSON form of an event. Field names follow dp_accounting's
// DpEvent classes.
type wireEvent struct {
	Type                string            `json:"type"`
	NoiseMultiplier     *float64          `json:"noise_multiplier,omitempty"`
	SamplingProbability *float64          `json:"sampling_probability,omitempty"`
	Count               *int              `json:"count,omitempty"`
	Event               json.RawMessage   `json:"event,omitempty"`
	Events              []json.RawMessage `json:"events,omitempty"`
}

// MarshalEvent encodes e as JSON, for example
//
//	{"type":"self_composed","count":100,"event":{"type":"poisson_sampled",
//	 "sampling_probability":0.01,"event":{"type":"gaussian","noise_multiplier":1.1}}}
func MarshalEvent(e Event) ([]byte, error) {
	if err := Validate(e); err != nil {
		return nil, err
	}
	return marshalEvent(e)
}

func marshalEvent(e Event) ([]byte, error) {
	var w wireEvent
	switch e := e.(type) {
	case Gaussian:
		w.Type = "gaussian"
		w.NoiseMultiplier = &e.NoiseMultiplier
	case PoissonSampled:
		w.Type = "poisson_sampled"
		w.SamplingProbability = &e.SamplingRate
		inner, err := marshalEvent(e.Event)
		if err != nil {
			return nil, err
		}
		w.Event = inner
	case SelfComposed:
		w.Type = "self_composed"
		w.Count = &e.Count
		inner, err := marshalEvent(e.Event)
		if err != nil {
			return nil, err
		}
		w.Event = inner
	case Composed:
		w.Type = "composed"
		w.Events = make([]json.RawMessage, 0, len(e.Events))
		for _, sub := range e.Events {
			b, err := marshalEvent(sub)
			if err != nil {
				return nil, err
			}
			w.Events = append(w.Events, b)
		}
	default:
		return nil, fmt.Errorf("unknown event type %T", e)
	}
	return json.Marshal(w)
}

// maxDepth bounds the nesting of decoded events.
const maxDepth = 64

// UnmarshalEvent decodes an event written by [MarshalEvent]. Unknown fields,
// unknown types and out-of-range parameters are errors that name the path to
// the offending field.
func UnmarshalEvent(data []byte) (Event, error) {
	e, err := unmarshalEvent(data, "event", 0)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func unmarshalEvent(data []byte, path string, depth int) (Event, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: events nested deeper than %d", path, maxDepth)
	}
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after event", path)
	}
	var e Event
	switch w.Type {
	case "gaussian":
		if w.NoiseMultiplier == nil {
			return nil, fmt.Errorf("%s: gaussian needs noise_multiplier", path)
		}
		if w.SamplingProbability != nil || w.Count != nil || w.Event != nil || w.Events != nil {
			return nil, fmt.Errorf("%s: gaussian takes only noise_multiplier", path)
		}
		e = Gaussian{NoiseMultiplier: *w.NoiseMultiplier}
	case "poisson_sampled":
		if w.SamplingProbability == nil || w.Event == nil {
			return nil, fmt.Errorf("%s: poisson_sampled needs sampling_probability and event", path)
		}
		if w.NoiseMultiplier != nil || w.Count != nil || w.Events != nil {
			return nil, fmt.Errorf("%s: poisson_sampled takes only sampling_probability and event", path)
		}
		inner, err := unmarshalEvent(w.Event, path+".event", depth+1)
		if err != nil {
			return nil, err
		}
		e = PoissonSampled{SamplingRate: *w.SamplingProbability, Event: inner}
	case "self_composed":
		if w.Count == nil || w.Event == nil {
			return nil, fmt.Errorf("%s: self_composed needs count and event", path)
		}
		if w.NoiseMultiplier != nil || w.SamplingProbability != nil || w.Events != nil {
			return nil, fmt.Errorf("%s: self_composed takes only count and event", path)
		}
		inner, err := unmarshalEvent(w.Event, path+".event", depth+1)
		if err != nil {
			return nil, err
		}
		e = SelfComposed{Event: inner, Count: *w.Count}
	case "composed":
		if w.NoiseMultiplier != nil || w.SamplingProbability != nil || w.Count != nil || w.Event != nil {
			return nil, fmt.Errorf("%s: composed takes only events", path)
		}
		c := Composed{Events: make([]Event, 0, len(w.Events))}
		for i, raw := range w.Events {
			inner, err := unmarshalEvent(raw, fmt.Sprintf("%s.events[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			c.Events = append(c.Events, inner)
		}
		e = c
	case "":
		return nil, fmt.Errorf("%s: missing type", path)
	default:
		return nil, fmt.Errorf("%s: unknown type %q (want gaussian, poisson_sampled, self_composed or composed)", path, w.Type)
	}
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}
