package secagg

import (
	"encoding/binary"
	"fmt"
)

// Wire format. Every message starts with a version byte (1), a type byte and
// the round number (uint64); integers are big-endian, byte strings carry a
// uint32 length prefix, lists a uint32 count. Vector words are little-endian
// uint32. Decoders accept exactly the encodings Marshal produces: no trailing
// bytes, no unknown versions or types, no zero site IDs.
const wireVersion = 1

// Message type bytes.
const (
	typeAdvertiseKeys  = 1
	typeKeyList        = 2
	typeShareKeys      = 3
	typeEnvelope       = 4 // only inside signatures; envelopes travel in lists
	typeShareKeysRelay = 5
	typeMaskedInput    = 6
	typeSurvivorList   = 7
	typeConsistency    = 8
	typeCertificate    = 9
	typeUnmask         = 10
)

// maxField bounds a single byte string (keys, ciphertexts, signatures).
const maxField = 1 << 16

// DecodeError is a precise decoding failure. It wraps ErrMalformed.
type DecodeError struct {
	Message string // message type being decoded, e.g. "ShareKeys"
	Field   string // field path, e.g. "envelopes[3].sealed"
	Offset  int    // byte offset where the field starts
	Reason  string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("secagg: decoding %s: field %s at byte %d: %s", e.Message, e.Field, e.Offset, e.Reason)
}

func (e *DecodeError) Unwrap() error { return ErrMalformed }

type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)     { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32)   { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)   { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) fixed(v []byte) { e.b = append(e.b, v...) }
func (e *encoder) site(v SiteID)  { e.u32(uint32(v)) }
func (e *encoder) bytes(v []byte) { e.u32(uint32(len(v))); e.b = append(e.b, v...) }
func (e *encoder) header(typ uint8, round uint64) {
	e.u8(wireVersion)
	e.u8(typ)
	e.u64(round)
}

type decoder struct {
	b   []byte
	off int
	msg string
	err error
}

func (d *decoder) fail(field string, format string, args ...any) {
	if d.err == nil {
		d.err = &DecodeError{Message: d.msg, Field: field, Offset: d.off, Reason: fmt.Sprintf(format, args...)}
	}
}

func (d *decoder) need(field string, n int) bool {
	if d.err != nil {
		return false
	}
	if n > len(d.b)-d.off {
		d.fail(field, "need %d bytes, %d left", n, len(d.b)-d.off)
		return false
	}
	return true
}

func (d *decoder) u8(field string) uint8 {
	if !d.need(field, 1) {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) u32(field string) uint32 {
	if !d.need(field, 4) {
		return 0
	}
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *decoder) u64(field string) uint64 {
	if !d.need(field, 8) {
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) fixed32(field string) (v [32]byte) {
	if !d.need(field, 32) {
		return v
	}
	copy(v[:], d.b[d.off:])
	d.off += 32
	return v
}

func (d *decoder) site(field string) SiteID {
	start := d.off
	v := d.u32(field)
	if d.err == nil && (v == 0 || v > MaxSites) {
		d.off = start
		d.fail(field, "site ID %d outside 1..%d", v, MaxSites)
	}
	return SiteID(v)
}

func (d *decoder) bytes(field string) []byte {
	start := d.off
	n := d.u32(field + ".length")
	if d.err != nil {
		return nil
	}
	if n > maxField {
		d.off = start
		d.fail(field, "length %d exceeds the limit of %d bytes", n, maxField)
		return nil
	}
	if !d.need(field, int(n)) {
		return nil
	}
	v := append([]byte(nil), d.b[d.off:d.off+int(n)]...)
	d.off += int(n)
	return v
}

// count reads a list length and checks that at most max elements follow,
// each at least minSize bytes, so a short input cannot make us allocate much.
func (d *decoder) count(field string, max, minSize int) int {
	start := d.off
	n := d.u32(field + ".count")
	if d.err != nil {
		return 0
	}
	if n > uint32(max) {
		d.off = start
		d.fail(field, "count %d exceeds the limit of %d", n, max)
		return 0
	}
	if int(n)*minSize > len(d.b)-d.off {
		d.off = start
		d.fail(field, "count %d needs at least %d bytes, %d left", n, int(n)*minSize, len(d.b)-d.off)
		return 0
	}
	return int(n)
}

func (d *decoder) header(typ uint8) (round uint64) {
	if v := d.u8("version"); d.err == nil && v != wireVersion {
		d.off--
		d.fail("version", "version %d, want %d", v, wireVersion)
	}
	if v := d.u8("type"); d.err == nil && v != typ {
		d.off--
		d.fail("type", "type byte %d, want %d (%s)", v, typ, d.msg)
	}
	return d.u64("round")
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("end", "%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}
