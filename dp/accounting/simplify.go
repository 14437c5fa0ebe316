package accounting

// Simplify rewrites e into an equivalent composition with one
// SelfComposed per distinct basic event (Gaussian or
// PoissonSampled(Gaussian)), in order of first appearance. Composition is
// commutative, so the privacy loss is unchanged; accountants get one FFT
// self-composition per distinct event instead of one convolution per
// recorded event (a site's ledger after many rounds with the same DP-SGD
// configuration is a single event).
func Simplify(e Event) Event {
	var order []Event
	counts := map[Event]int64{}
	var other []Event
	var walk func(e Event, mult int64) bool
	walk = func(e Event, mult int64) bool {
		switch e := e.(type) {
		case Gaussian:
			return add(&order, counts, e, mult)
		case PoissonSampled:
			if _, ok := e.Event.(Gaussian); ok {
				if e.SamplingRate == 0 {
					return true // no privacy loss
				}
				return add(&order, counts, e, mult)
			}
		case SelfComposed:
			if e.Count == 0 {
				return true
			}
			if mult > 1<<31/int64(e.Count) {
				return false
			}
			return walk(e.Event, mult*int64(e.Count))
		case Composed:
			for _, sub := range e.Events {
				if !walk(sub, mult) {
					return false
				}
			}
			return true
		}
		other = append(other, SelfComposed{Event: e, Count: int(mult)})
		return true
	}
	if !walk(e, 1) {
		return e
	}
	out := Composed{}
	for _, b := range order {
		n := counts[b]
		if n == 1 {
			out.Events = append(out.Events, b)
		} else {
			out.Events = append(out.Events, SelfComposed{Event: b, Count: int(n)})
		}
	}
	out.Events = append(out.Events, other...)
	if len(out.Events) == 1 {
		return out.Events[0]
	}
	return out
}

func add(order *[]Event, counts map[Event]int64, e Event, mult int64) bool {
	if _, ok := counts[e]; !ok {
		*order = append(*order, e)
	}
	counts[e] += mult
	return counts[e] <= 1<<31
}
