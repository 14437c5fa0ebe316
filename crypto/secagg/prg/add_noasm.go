//go:build !amd64 || purego

package prg

func addLEImpl(dst []uint32, src []byte) { addLEGeneric(dst, src) }
func subLEImpl(dst []uint32, src []byte) { subLEGeneric(dst, src) }
