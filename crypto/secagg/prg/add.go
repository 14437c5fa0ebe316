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
