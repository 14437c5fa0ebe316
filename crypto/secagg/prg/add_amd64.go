//go:build amd64 && !purego

package prg

// addLEAsm and subLEAsm process len(dst) words with SSE2 (part of the amd64
// baseline, so no CPU feature check is needed). The caller guarantees
// len(src) >= 4*len(dst).
//
//go:noescape
func addLEAsm(dst []uint32, src []byte)

//go:noescape
func subLEAsm(dst []uint32, src []byte)

func addLEImpl(dst []uint32, src []byte) { addLEAsm(dst, src) }
func subLEImpl(dst []uint32, src []byte) { subLEAsm(dst, src) }

// add4LEAsm and sub4LEAsm add (subtract) the sum of four little-endian word
// sources into dst; each source holds at least 4·len(dst) bytes.
//
//go:noescape
func add4LEAsm(dst []uint32, a, b, c, d *byte)

//go:noescape
func sub4LEAsm(dst []uint32, a, b, c, d *byte)

func add4LEImpl(dst []uint32, s *[4][]byte) { add4LEAsm(dst, &s[0][0], &s[1][0], &s[2][0], &s[3][0]) }
func sub4LEImpl(dst []uint32, s *[4][]byte) { sub4LEAsm(dst, &s[0][0], &s[1][0], &s[2][0], &s[3][0]) }
