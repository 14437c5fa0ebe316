package audit

import (
	"strconv"
	"unicode/utf8"
	"unsafe"
)

var kindNames = func() []string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return s
}()

// unsafeString views b as a string for the duration of a switch on a
// member name; the name is never retained.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// decoder reads an entry from JSON without reflection. It accepts a
// superset of canonical JSON of the schema and stops (ok == false) at
// anything else; ParseEntry then re-encodes what it read and compares
// bytes, so the decoder only has to be right on canonical input, and falls
// back to the slow, precise path for everything it does not understand.
type decoder struct {
	b  []byte
	i  int
	ok bool
}

func (d *decoder) fail() { d.ok = false }

func (d *decoder) byte(c byte) {
	if d.ok && d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return
	}
	d.fail()
}

func (d *decoder) peek(c byte) bool { return d.ok && d.i < len(d.b) && d.b[d.i] == c }

// rawStr returns the bytes of a string without escapes (nil, and the
// position unchanged, if it has any).
func (d *decoder) rawStr() []byte {
	if !d.peek('"') {
		d.fail()
		return nil
	}
	for j := d.i + 1; j < len(d.b); j++ {
		c := d.b[j]
		if c == '"' {
			s := d.b[d.i+1 : j]
			d.i = j + 1
			return s
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			return nil
		}
	}
	d.fail()
	return nil
}

// interned returns one of the given constants for a string value, so that
// enumerated members (kind, outcome, auth, schema) are not allocated.
func (d *decoder) interned(values ...string) string {
	save := d.i
	if raw := d.rawStr(); raw != nil {
		for _, v := range values {
			if string(raw) == v {
				return v
			}
		}
		d.i = save
	}
	return d.str()
}

func (d *decoder) str() string {
	d.byte('"')
	if !d.ok {
		return ""
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			s := string(d.b[start:d.i])
			d.i++
			return s
		}
		if c == '\\' || c < 0x20 {
			break
		}
		d.i++
	}
	buf := append([]byte(nil), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(buf) {
				d.fail()
			}
			return string(buf)
		case c < 0x20:
			d.fail()
			return ""
		case c == '\\' && d.i+1 < len(d.b):
			e := d.b[d.i+1]
			d.i += 2
			switch e {
			case '"', '\\':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u': // canonical JSON escapes only U+0000..U+001F this way
				if d.i+4 > len(d.b) || d.b[d.i] != '0' || d.b[d.i+1] != '0' {
					d.fail()
					return ""
				}
				v, err := strconv.ParseUint(string(d.b[d.i+2:d.i+4]), 16, 8)
				if err != nil {
					d.fail()
					return ""
				}
				buf = append(buf, byte(v))
				d.i += 4
			default:
				d.fail()
				return ""
			}
		case c == '\\':
			d.fail()
			return ""
		default:
			buf = append(buf, c)
			d.i++
		}
	}
	d.fail()
	return ""
}

func (d *decoder) numberSpan() []byte {
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			d.i++
			continue
		}
		break
	}
	if d.i == start {
		d.fail()
	}
	return d.b[start:d.i]
}

func (d *decoder) uint() uint64 {
	s := d.numberSpan()
	if !d.ok {
		return 0
	}
	v, err := strconv.ParseUint(string(s), 10, 64)
	if err != nil {
		d.fail()
	}
	return v
}

func (d *decoder) float() float64 {
	s := d.numberSpan()
	if !d.ok {
		return 0
	}
	v, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		d.fail()
	}
	return v
}

// skipValue returns the bytes of the next JSON value (for dp.events).
func (d *decoder) skipValue() []byte {
	start := d.i
	depth := 0
	for d.ok && d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.str()
		case c == '{' || c == '[':
			depth++
			d.i++
		case c == '}' || c == ']':
			if depth == 0 {
				d.fail()
				return nil
			}
			depth--
			d.i++
		default:
			if depth == 0 && (c == ',') {
				d.fail()
				return nil
			}
			d.i++
		}
		if depth == 0 && d.ok {
			// A scalar ends at the next ',' or '}' of the enclosing object.
			if d.i > start && (d.b[d.i-1] == '}' || d.b[d.i-1] == ']' || d.b[d.i-1] == '"') {
				return d.b[start:d.i]
			}
			if d.i < len(d.b) && (d.b[d.i] == ',' || d.b[d.i] == '}') {
				return d.b[start:d.i]
			}
		}
	}
	d.fail()
	return nil
}

// object calls member for each member name, which must consume the value.
func (d *decoder) object(member func(name string)) {
	d.byte('{')
	if d.peek('}') {
		d.i++
		return
	}
	for d.ok {
		// Member names never need escapes; an escaped one fails here and
		// the entry takes the slow path.
		name := d.rawStr()
		if name == nil {
			d.fail()
			return
		}
		d.byte(':')
		if !d.ok {
			return
		}
		member(unsafeString(name))
		if d.peek(',') {
			d.i++
			continue
		}
		d.byte('}')
		return
	}
}

func (d *decoder) array(elem func()) {
	d.byte('[')
	if d.peek(']') {
		d.i++
		return
	}
	for d.ok {
		elem()
		if d.peek(',') {
			d.i++
			continue
		}
		d.byte(']')
		return
	}
}

// decodeEntry reads e from data; ok is false if data is not something
// the fast path understands.
func decodeEntry(data []byte, e *Entry) bool {
	d := &decoder{b: data, ok: true}
	d.object(func(name string) {
		switch name {
		case "actor":
			d.object(func(n string) {
				switch n {
				case "auth":
					e.Actor.Auth = d.interned("mtls", "signature", "local", "token", "none")
				case "id":
					e.Actor.ID = d.str()
				default:
					d.fail()
				}
			})
		case "dp":
			e.DP = &DPSpend{}
			d.object(func(n string) {
				switch n {
				case "delta":
					e.DP.Delta = d.float()
				case "epsilon_cap":
					e.DP.EpsilonCap = d.float()
				case "epsilon_cumulative":
					e.DP.EpsilonCumulative = d.float()
				case "events":
					e.DP.Events = append([]byte(nil), d.skipValue()...)
				case "site":
					e.DP.Site = d.str()
				default:
					d.fail()
				}
			})
		case "federation":
			e.Federation = d.str()
		case "key":
			e.Key = &Key{}
			d.object(func(n string) {
				switch n {
				case "algorithm":
					e.Key.Algorithm = d.str()
				case "name":
					e.Key.Name = d.str()
				case "public_key":
					e.Key.PublicKey = d.str()
				case "version":
					v := d.uint()
					if v > 1<<30 {
						d.fail()
					}
					e.Key.Version = int(v)
				default:
					d.fail()
				}
			})
		case "kind":
			e.Kind = Kind(d.interned(kindNames...))
		case "message":
			e.Message = d.str()
		case "objects":
			d.array(func() {
				var o Object
				d.object(func(n string) {
					switch n {
					case "digest":
						o.Digest = d.str()
					case "id":
						o.ID = d.str()
					case "type":
						o.Type = d.str()
					default:
						d.fail()
					}
				})
				e.Objects = append(e.Objects, o)
			})
		case "outcome":
			e.Outcome = Outcome(d.interned("ok", "denied", "refused", "failed", "aborted"))
		case "reason":
			e.Reason = d.str()
		case "refs":
			d.array(func() { e.Refs = append(e.Refs, d.uint()) })
		case "round":
			r := d.uint()
			e.Round = &r
		case "schema":
			e.Schema = d.interned(SchemaVersion)
		case "site":
			e.Site = &Site{}
			d.object(func(n string) {
				switch n {
				case "id":
					e.Site.ID = d.str()
				case "public_key":
					e.Site.PublicKey = d.str()
				default:
					d.fail()
				}
			})
		case "site_signature":
			e.SiteSignature = d.str()
		case "time":
			e.Time = d.str()
		default:
			d.fail()
		}
	})
	return d.ok && d.i == len(d.b)
}
