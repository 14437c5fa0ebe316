package prg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSP80038A checks the keystream against NIST SP 800-38A, Appendix F.5.1
// (CTR-AES128.Encrypt): keystream = ciphertext XOR plaintext.
func TestSP80038A(t *testing.T) {
	key := mustHex(t, "2b7e151628aed2a6abf7158809cf4f3c")
	iv := mustHex(t, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
	pt := mustHex(t, "6bc1bee22e409f96e93d7e117393172a"+"ae2d8a571e03ac9c9eb76fac45af8e51"+
		"30c81c46a35ce411e5fbc1191a0a52ef"+"f69f2445df4f9b17ad2b417be66c3710")
	ct := mustHex(t, "874d6191b620e3261bef6864990db6ce"+"9806f66b7970fdff8617187bb9fffdff"+
		"5ae4df3edbd5d35e5b4f09020db03eab"+"1e031dda2fbe03d1792170a0f3009cee")
	var term Term
	copy(term.Key[:], key)
	var base [16]byte
	copy(base[:], iv)
	for _, workers := range []int{1, 2, 3} {
		// 15 words: the last AES block is used partially.
		dst := make([]uint32, 15)
		run(len(dst), dst, nil, []Term{term}, base, workers)
		for i, w := range dst {
			want := binary.LittleEndian.Uint32(ct[4*i:]) ^ binary.LittleEndian.Uint32(pt[4*i:])
			if w != want {
				t.Fatalf("workers=%d word %d = %08x, want %08x", workers, i, w, want)
			}
		}
	}
}

func TestCounterIVCarry(t *testing.T) {
	var base [16]byte
	for i := 8; i < 16; i++ {
		base[i] = 0xff
	}
	got := counterIV(base, 2)
	want := [16]byte{7: 1, 15: 1}
	if got != want {
		t.Fatalf("counterIV carry = %x, want %x", got, want)
	}
}

// reference is the definition in the package doc: one CTR stream per key over
// the whole vector, applied word by word.
func reference(dst []uint32, terms []Term) {
	for _, tm := range terms {
		b, _ := aes.NewCipher(tm.Key[:])
		ks := make([]byte, 4*len(dst))
		cipher.NewCTR(b, make([]byte, 16)).XORKeyStream(ks, ks)
		for i := range dst {
			w := binary.LittleEndian.Uint32(ks[4*i:])
			if tm.Neg {
				dst[i] -= w
			} else {
				dst[i] += w
			}
		}
	}
}

func TestApplyMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, m := range []int{1, 3, 4, 5, 17, ChunkWords - 1, ChunkWords, ChunkWords + 3, 3*ChunkWords + 7} {
		terms := make([]Term, 1+r.IntN(5))
		for i := range terms {
			for j := range terms[i].Key {
				terms[i].Key[j] = byte(r.Uint32())
			}
			terms[i].Neg = r.IntN(2) == 0
		}
		init := make([]uint32, m)
		for i := range init {
			init[i] = r.Uint32()
		}
		want := slices.Clone(init)
		reference(want, terms)
		for _, workers := range []int{1, 2, 4} {
			// Guard words around the destination must stay untouched.
			buf := make([]uint32, m+2)
			buf[0], buf[m+1] = 0xdeadbeef, 0xcafef00d
			copy(buf[1:], init)
			Apply(buf[1:m+1], terms, workers)
			if buf[0] != 0xdeadbeef || buf[m+1] != 0xcafef00d {
				t.Fatalf("m=%d workers=%d: guard words overwritten", m, workers)
			}
			if !slices.Equal(buf[1:m+1], want) {
				t.Fatalf("m=%d workers=%d: Apply differs from reference", m, workers)
			}
			// ApplyTo into a fresh buffer: same result, source untouched.
			src := slices.Clone(init)
			buf = make([]uint32, m+2)
			buf[0], buf[m+1] = 0xdeadbeef, 0xcafef00d
			ApplyTo(buf[1:m+1], src, terms, workers)
			if buf[0] != 0xdeadbeef || buf[m+1] != 0xcafef00d {
				t.Fatalf("m=%d workers=%d: ApplyTo overwrote guard words", m, workers)
			}
			if !slices.Equal(buf[1:m+1], want) {
				t.Fatalf("m=%d workers=%d: ApplyTo differs from reference", m, workers)
			}
			if !slices.Equal(src, init) {
				t.Fatalf("m=%d workers=%d: ApplyTo modified its source", m, workers)
			}
			// In place (dst and src the same slice) it is Apply.
			ApplyTo(src, src, terms, workers)
			if !slices.Equal(src, want) {
				t.Fatalf("m=%d workers=%d: in-place ApplyTo differs from reference", m, workers)
			}
		}
	}
}

func TestApplyToWithoutTermsCopies(t *testing.T) {
	src := []uint32{1, 2, 3}
	dst := make([]uint32, 3)
	ApplyTo(dst, src, nil, 2)
	if !slices.Equal(dst, src) {
		t.Fatalf("ApplyTo without terms = %v, want a copy of %v", dst, src)
	}
}

func TestApplyToLengthMismatchPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("ApplyTo accepted slices of different lengths")
		}
	}()
	ApplyTo(make([]uint32, 4), make([]uint32, 5), []Term{{}}, 1)
}

func TestAddThenSubIsIdentity(t *testing.T) {
	var k Term
	k.Key[0] = 7
	x := []uint32{0, 1, 0xffffffff, 42, 5, 6, 7, 8, 9}
	y := slices.Clone(x)
	Apply(y, []Term{k, {Key: k.Key, Neg: true}}, 2)
	if !slices.Equal(x, y) {
		t.Fatalf("mask then unmask = %v, want %v", y, x)
	}
}

func TestAddSubKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 70; n++ {
		dst := make([]uint32, n+2)
		for i := range dst {
			dst[i] = r.Uint32()
		}
		src := make([]byte, 4*n+4)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		for _, op := range []struct {
			name      string
			fast, ref func([]uint32, []byte)
		}{{"add", addLE, addLEGeneric}, {"sub", subLE, subLEGeneric}} {
			a, b := slices.Clone(dst), slices.Clone(dst)
			op.fast(a[1:n+1], src)
			op.ref(b[1:n+1], src)
			if !slices.Equal(a, b) {
				t.Fatalf("%s n=%d: kernel differs from generic loop", op.name, n)
			}
		}
	}
}

func TestShortSourcePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("addLE with short source did not panic")
		}
	}()
	addLE(make([]uint32, 4), make([]byte, 15))
}

func benchTerms(n int) []Term {
	terms := make([]Term, n)
	for i := range terms {
		terms[i].Key[0] = byte(i)
		terms[i].Key[1] = byte(i >> 8)
		terms[i].Neg = i%2 == 0
	}
	return terms
}

func BenchmarkApply(b *testing.B) {
	terms := benchTerms(8)
	dst := make([]uint32, 1<<20)
	b.SetBytes(int64(4 * len(dst) * len(terms)))
	for b.Loop() {
		Apply(dst, terms, 1)
	}
}

func BenchmarkKeystream(b *testing.B) {
	terms := benchTerms(8)
	b.SetBytes(int64(4 * (1 << 20) * len(terms)))
	for b.Loop() {
		Keystream(1<<20, terms, 1)
	}
}

func TestAdd4Kernels(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 40; n++ {
		dst := make([]uint32, n+2)
		for i := range dst {
			dst[i] = r.Uint32()
		}
		var src [4][]byte
		for j := range src {
			src[j] = make([]byte, 4*n+4)
			for i := range src[j] {
				src[j][i] = byte(r.Uint32())
			}
		}
		for _, op := range []struct {
			name      string
			fast, ref func([]uint32, *[4][]byte)
		}{{"add4", add4LE, add4LEGeneric}, {"sub4", sub4LE, sub4LEGeneric}} {
			a, b := slices.Clone(dst), slices.Clone(dst)
			op.fast(a[1:n+1], &src)
			op.ref(b[1:n+1], &src)
			if !slices.Equal(a, b) {
				t.Fatalf("%s n=%d: kernel differs from generic loop", op.name, n)
			}
			// and from four single passes
			c := slices.Clone(dst)
			for j := range src {
				if op.name == "add4" {
					addLEGeneric(c[1:n+1], src[j])
				} else {
					subLEGeneric(c[1:n+1], src[j])
				}
			}
			if !slices.Equal(a, c) {
				t.Fatalf("%s n=%d: differs from four single passes", op.name, n)
			}
		}
	}
}
