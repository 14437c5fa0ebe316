package prg

import "encoding/binary"

// addLE adds the little-endian uint32 words of src into dst modulo 2^32:
//
//	for i := range dst { dst[i] += LE32(src[4i:]) }
//
// It panics if len(src) < 4*len(dst).
func addLE(dst []uint32, src []byte) {
	if len(src) < 4*len(dst) {
		panic("prg: addLE: source shorter than destination")
	}
	addLEImpl(dst, src)
}

// subLE subtracts the little-endian uint32 words of src from dst modulo 2^32:
//
//	for i := range dst { dst[i] -= LE32(src[4i:]) }
//
// It panics if len(src) < 4*len(dst).
func subLE(dst []uint32, src []byte) {
	if len(src) < 4*len(dst) {
		panic("prg: subLE: source shorter than destination")
	}
	subLEImpl(dst, src)
}

func addLEGeneric(dst []uint32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] += binary.LittleEndian.Uint32(src[4*i:])
	}
}

func subLEGeneric(dst []uint32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] -= binary.LittleEndian.Uint32(src[4*i:])
	}
}

// add4LE adds the sum of four little-endian word sources into dst:
//
//	for i := range dst { dst[i] += LE32(s[0][4i:]) + LE32(s[1][4i:]) + LE32(s[2][4i:]) + LE32(s[3][4i:]) }
//
// It panics if a source is shorter than 4·len(dst) bytes.
func add4LE(dst []uint32, s *[4][]byte) {
	check4(dst, s)
	if len(dst) > 0 {
		add4LEImpl(dst, s)
	}
}

// sub4LE is add4LE with subtraction.
func sub4LE(dst []uint32, s *[4][]byte) {
	check4(dst, s)
	if len(dst) > 0 {
		sub4LEImpl(dst, s)
	}
}

func check4(dst []uint32, s *[4][]byte) {
	for _, b := range s {
		if len(b) < 4*len(dst) {
			panic("prg: add4LE: source shorter than destination")
		}
	}
}

func sum4(s *[4][]byte, i int) uint32 {
	return binary.LittleEndian.Uint32(s[0][4*i:]) + binary.LittleEndian.Uint32(s[1][4*i:]) +
		binary.LittleEndian.Uint32(s[2][4*i:]) + binary.LittleEndian.Uint32(s[3][4*i:])
}

func add4LEGeneric(dst []uint32, s *[4][]byte) {
	for i := range dst {
		dst[i] += sum4(s, i)
	}
}

func sub4LEGeneric(dst []uint32, s *[4][]byte) {
	for i := range dst {
		dst[i] -= sum4(s, i)
	}
}
