package accounting

import (
	"encoding/json"
	"fmt"
)

// EpsilonFromEventsJSON recomputes, with the PLD accountant and default
// options, the ε at delta of the composition of the serialised events, in
// order. It is what an auditor runs on the events a site's ledger or the
// audit log recorded: a pure function of its inputs.
func EpsilonFromEventsJSON(events []json.RawMessage, delta float64) (float64, error) {
	c := Composed{Events: make([]Event, 0, len(events))}
	for i, raw := range events {
		e, err := UnmarshalEvent(raw)
		if err != nil {
			return 0, fmt.Errorf("event %d: %w", i, err)
		}
		c.Events = append(c.Events, e)
	}
	if len(c.Events) == 0 {
		return 0, nil
	}
	var e Event = c
	if len(c.Events) == 1 {
		e = c.Events[0]
	}
	return EpsilonPLD(e, delta, nil)
}
