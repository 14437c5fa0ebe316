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
