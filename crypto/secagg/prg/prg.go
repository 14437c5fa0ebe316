// Package prg expands 16-byte keys into pseudorandom vectors over ℤ_{2^32}
// and adds or subtracts them into an accumulator: the masking kernel of
// secure aggregation.
//
// # Definition
//
// The mask of key k and length m is the vector w with
//
//	w[i] = LE32(AES-128-CTR_k(IV = 0^128)[4i : 4i+4])   for 0 ≤ i < m
//
// that is, the AES-128 counter-mode keystream (NIST SP 800-38A §6.5, counter
// blocks as 128-bit big-endian integers starting at zero) read as
// little-endian uint32 words. Arithmetic is modulo 2^32 (wrap-around).
//
// # Parallelism
//
// The word range is cut into chunks of [ChunkWords] words (a multiple of 4,
// so each chunk starts on an AES block boundary, at counter i/4), and each
// worker takes a contiguous run of chunks. For each chunk every key's
// keystream is generated into a small cache-resident buffer and added into
// the chunk of the accumulator, four keys per pass, so the accumulator is
// read and written once per four keys, not once per key. The result does not
// depend on the number of workers.
package prg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// ChunkWords is the number of words a worker processes per key before moving
// to the next key. 2048 words = 8 KiB: the keystream buffer, the zero source
// and the accumulator chunk (24 KiB together) stay in a 32 KiB L1 data cache,
// which measured faster than 1024, 4096 or 8192 words.
const ChunkWords = 2048

// Term is one mask to apply: the keystream of Key, added (Neg false) or
// subtracted (Neg true) modulo 2^32.
type Term struct {
	Key [16]byte
	Neg bool
}

type expanded struct {
	block cipher.Block
	neg   bool
}

func expand(terms []Term) []expanded {
	out := make([]expanded, len(terms))
	for i, t := range terms {
		b, err := aes.NewCipher(t.Key[:])
		if err != nil {
			// aes.NewCipher fails only for a key length other than 16, 24, 32.
			panic(fmt.Sprintf("prg: %v", err))
		}
		out[i] = expanded{block: b, neg: t.Neg}
	}
	return out
}

// counterIV returns the big-endian 128-bit counter block for block index n
// added to base (NIST SP 800-38A §B.1 standard incrementing function).
func counterIV(base [16]byte, n uint64) [16]byte {
	iv := base
	lo := binary.BigEndian.Uint64(iv[8:])
	hi := binary.BigEndian.Uint64(iv[:8])
	lo2 := lo + n
	if lo2 < lo {
		hi++
	}
	binary.BigEndian.PutUint64(iv[8:], lo2)
	binary.BigEndian.PutUint64(iv[:8], hi)
	return iv
}

// Workers returns w if positive, else runtime.GOMAXPROCS(0).
func Workers(w int) int {
	if w > 0 {
		return w
	}
	return runtime.GOMAXPROCS(0)
}

// Apply adds (or subtracts) the mask of every term into dst:
//
//	for each term t: for i := range dst { dst[i] ±= w_t[i] }   (mod 2^32)
//
// using up to workers goroutines (0 means GOMAXPROCS).
func Apply(dst []uint32, terms []Term, workers int) {
	run(len(dst), dst, nil, terms, [16]byte{}, workers)
}

// ApplyTo sets dst to src plus (or minus) the mask of every term:
//
//	copy(dst, src); Apply(dst, terms, workers)
//
// but copies each chunk of src inside the worker that masks it, right before
// its keystreams are added, so the copy runs in parallel and the chunk is
// still in cache when the additions read it. dst and src must have the same
// length and must not overlap unless they are the same slice.
func ApplyTo(dst, src []uint32, terms []Term, workers int) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("prg: ApplyTo with %d destination words and %d source words", len(dst), len(src)))
	}
	if len(terms) == 0 {
		copy(dst, src)
		return
	}
	run(len(dst), dst, src, terms, [16]byte{}, workers)
}

// Keystream generates the same keystream words as Apply for a vector of m
// words, with the same chunk schedule and workers, but discards them instead
// of adding them into an accumulator. It is the baseline that Apply's cost is
// measured against: raw AES-128-CTR over the same number of mask words.
func Keystream(m int, terms []Term, workers int) {
	run(m, nil, nil, terms, [16]byte{}, workers)
}

// run applies terms to dst[:m], or only generates the keystream when dst is
// nil. If src is not nil, each chunk of dst is first set from src. base is the initial counter block (zero in the protocol; the
// known-answer tests use the SP 800-38A one).
func run(m int, dst, src []uint32, terms []Term, base [16]byte, workers int) {
	if m == 0 || len(terms) == 0 {
		return
	}
	ex := expand(terms)
	// Same-sign terms are applied four at a time: four keystreams into four
	// buffers, then one pass dst ±= k0+k1+k2+k3, so the accumulator chunk is
	// loaded and stored once per four keys.
	slices.SortStableFunc(ex, func(a, b expanded) int {
		switch {
		case a.neg == b.neg:
			return 0
		case !a.neg:
			return -1
		}
		return 1
	})
	nchunks := (m + ChunkWords - 1) / ChunkWords
	w := min(Workers(workers), nchunks)
	var wg sync.WaitGroup
	zeros := make([]byte, 4*ChunkWords)
	for k := range w {
		// Worker k owns a contiguous run of chunks, so one CTR stream per
		// key carries on from chunk to chunk (every chunk but the last is a
		// whole number of AES blocks) instead of being set up per chunk.
		first, last := k*nchunks/w, (k+1)*nchunks/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bufs [4][]byte
			for i := range bufs {
				bufs[i] = make([]byte, 4*ChunkWords)
			}
			iv := counterIV(base, uint64(first*ChunkWords/4))
			streams := make([]cipher.Stream, len(ex))
			for j := range ex {
				streams[j] = cipher.NewCTR(ex[j].block, iv[:])
			}
			for c := first; c < last; c++ {
				start := c * ChunkWords
				end := min(start+ChunkWords, m)
				n := end - start
				if src != nil {
					copy(dst[start:end], src[start:end])
				}
				for i := 0; i < len(ex); {
					// A group: up to four consecutive terms of one sign.
					g := 1
					for g < 4 && i+g < len(ex) && ex[i+g].neg == ex[i].neg {
						g++
					}
					for j := range g {
						streams[i+j].XORKeyStream(bufs[j][:4*n], zeros[:4*n])
					}
					if dst != nil {
						d := dst[start:end]
						switch {
						case g == 4 && ex[i].neg:
							sub4LE(d, &bufs)
						case g == 4:
							add4LE(d, &bufs)
						default:
							for j := range g {
								if ex[i].neg {
									subLE(d, bufs[j][:4*n])
								} else {
									addLE(d, bufs[j][:4*n])
								}
							}
						}
					}
					i += g
				}
			}
		}()
	}
	wg.Wait()
}
