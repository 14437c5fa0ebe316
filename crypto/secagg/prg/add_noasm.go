//go:build !amd64 || purego

package prg

func addLEImpl(dst []uint32, src []byte) { addLEGeneric(dst, src) }
func subLEImpl(dst []uint32, src []byte) { subLEGeneric(dst, src) }

func add4LEImpl(dst []uint32, s *[4][]byte) { add4LEGeneric(dst, s) }
func sub4LEImpl(dst []uint32, s *[4][]byte) { sub4LEGeneric(dst, s) }
