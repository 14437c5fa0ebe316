package secagg_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"

	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/crypto/secagg/sim"
)

var (
	corpusOnce sync.Once
	corpus     map[string][][]byte
)

// sampleMessages records the encoding of every message of a small round in
// both modes (with a drop-out, so both share lists of UnmaskShares are used).
func sampleMessages(t testing.TB) map[string][][]byte {
	corpusOnce.Do(func() {
		corpus = map[string][][]byte{}
		rec := func(m secagg.Message) {
			name := typeName(m)
			corpus[name] = append(corpus[name], m.Marshal())
			if mi, ok := m.(*secagg.MaskedInput); ok {
				corpus["MaskedInputHeader"] = append(corpus["MaskedInputHeader"], mi.MarshalHeader())
			}
		}
		for _, pq := range []bool{false, true} {
			f, err := sim.New(sim.Config{Params: params(4, 3, 9, pq), Seed: [32]byte{99},
				DropAt:   map[secagg.SiteID]secagg.Stage{4: secagg.StageMaskedInput},
				ToClient: func(_ secagg.SiteID, m secagg.Message) secagg.Message { rec(m); return m },
				ToServer: func(_ secagg.SiteID, m secagg.Message) secagg.Message { rec(m); return m },
			})
			if err != nil {
				panic(err)
			}
			if _, _, err := f.Run(); err != nil {
				panic(err)
			}
		}
	})
	return corpus
}

func typeName(m secagg.Message) string {
	switch m.(type) {
	case *secagg.AdvertiseKeys:
		return "AdvertiseKeys"
	case *secagg.KeyList:
		return "KeyList"
	case *secagg.ShareKeys:
		return "ShareKeys"
	case *secagg.ShareKeysRelay:
		return "ShareKeysRelay"
	case *secagg.MaskedInput:
		return "MaskedInput"
	case *secagg.SurvivorList:
		return "SurvivorList"
	case *secagg.ConsistencySig:
		return "ConsistencySig"
	case *secagg.ConsistencyCertificate:
		return "ConsistencyCertificate"
	case *secagg.UnmaskShares:
		return "UnmaskShares"
	}
	return "?"
}

type decodeFunc func([]byte) (interface{ Marshal() []byte }, error)

func wrap[T interface{ Marshal() []byte }](f func([]byte) (T, error)) decodeFunc {
	return func(b []byte) (interface{ Marshal() []byte }, error) {
		m, err := f(b)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}

type headerOnly struct{ *secagg.MaskedInput }

func (h headerOnly) Marshal() []byte { return h.MarshalHeader() }

var decoders = map[string]decodeFunc{
	"AdvertiseKeys":          wrap(secagg.UnmarshalAdvertiseKeys),
	"KeyList":                wrap(secagg.UnmarshalKeyList),
	"ShareKeys":              wrap(secagg.UnmarshalShareKeys),
	"ShareKeysRelay":         wrap(secagg.UnmarshalShareKeysRelay),
	"MaskedInput":            wrap(secagg.UnmarshalMaskedInput),
	"SurvivorList":           wrap(secagg.UnmarshalSurvivorList),
	"ConsistencySig":         wrap(secagg.UnmarshalConsistencySig),
	"ConsistencyCertificate": wrap(secagg.UnmarshalConsistencyCertificate),
	"UnmaskShares":           wrap(secagg.UnmarshalUnmaskShares),
	"MaskedInputHeader": func(b []byte) (interface{ Marshal() []byte }, error) {
		m, err := secagg.UnmarshalMaskedInputHeader(b)
		if err != nil {
			return nil, err
		}
		return headerOnly{m}, nil
	},
}

func TestRoundTripAndTruncation(t *testing.T) {
	c := sampleMessages(t)
	for name, dec := range decoders {
		if len(c[name]) == 0 {
			t.Fatalf("no sample of %s", name)
		}
		for _, b := range c[name] {
			m, err := dec(b)
			if err != nil {
				t.Fatalf("%s: valid encoding rejected: %v", name, err)
			}
			if !bytes.Equal(m.Marshal(), b) {
				t.Fatalf("%s: re-encoding differs", name)
			}
			// Every strict prefix and one extra byte must be rejected with a
			// DecodeError.
			for _, bad := range [][]byte{b[:len(b)-1], b[:len(b)/2], b[:1], {}, append(bytes.Clone(b), 0)} {
				_, err := dec(bad)
				var de *secagg.DecodeError
				if !errors.As(err, &de) || !errors.Is(err, secagg.ErrMalformed) {
					t.Fatalf("%s: %d-byte corruption gave %v, want a DecodeError", name, len(bad), err)
				}
			}
		}
	}
}

func TestDecodeErrorIsPrecise(t *testing.T) {
	b := sampleMessages(t)["SurvivorList"][0]
	bad := bytes.Clone(b)
	bad[len(bad)-1] = 0 // last site ID 0
	_, err := secagg.UnmarshalSurvivorList(bad)
	var de *secagg.DecodeError
	if !errors.As(err, &de) || de.Field != "sites[2]" || de.Offset != len(b)-4 {
		t.Fatalf("error %v (%+v), want field sites[2] at byte %d", err, de, len(b)-4)
	}
	want := "secagg: decoding SurvivorList: field sites[2] at byte 22: site ID 0 outside 1..16384"
	if err.Error() != want {
		t.Fatalf("error text\n%q, want\n%q", err.Error(), want)
	}
}

// Flipping any byte of a signed message makes it fail to decode or be
// rejected by the server.
func TestFlipEveryByteOfSignedMessages(t *testing.T) {
	var ak []*secagg.AdvertiseKeys
	f, err := sim.New(sim.Config{Params: params(3, 2, 5, false), Seed: [32]byte{98},
		ToServer: func(_ secagg.SiteID, m secagg.Message) secagg.Message {
			if a, ok := m.(*secagg.AdvertiseKeys); ok {
				ak = append(ak, a)
				return nil // delivered below
			}
			return m
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ClientsStep(); err != nil {
		t.Fatal(err)
	}
	good := ak[0].Marshal()
	for i := range good {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(good)
			bad[i] ^= bit
			m, err := secagg.UnmarshalAdvertiseKeys(bad)
			if err != nil {
				continue
			}
			if err := f.Server.ReceiveAdvertiseKeys(m); err == nil {
				t.Fatalf("byte %d ^ %#x: tampered AdvertiseKeys accepted", i, bit)
			}
		}
	}
	if err := f.Server.ReceiveAdvertiseKeys(ak[0]); err != nil {
		t.Fatalf("untampered message rejected after the flips: %v", err)
	}
}

func fuzzDecoder(f *testing.F, name string) {
	for _, b := range sampleMessages(f)[name] {
		f.Add(b)
	}
	dec := decoders[name]
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dec(b)
		if err != nil {
			if !errors.Is(err, secagg.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(m.Marshal(), b) {
			t.Fatalf("accepted a non-canonical encoding")
		}
	})
}

func FuzzAdvertiseKeys(f *testing.F)          { fuzzDecoder(f, "AdvertiseKeys") }
func FuzzKeyList(f *testing.F)                { fuzzDecoder(f, "KeyList") }
func FuzzShareKeys(f *testing.F)              { fuzzDecoder(f, "ShareKeys") }
func FuzzShareKeysRelay(f *testing.F)         { fuzzDecoder(f, "ShareKeysRelay") }
func FuzzMaskedInput(f *testing.F)            { fuzzDecoder(f, "MaskedInput") }
func FuzzMaskedInputHeader(f *testing.F)      { fuzzDecoder(f, "MaskedInputHeader") }
func FuzzSurvivorList(f *testing.F)           { fuzzDecoder(f, "SurvivorList") }
func FuzzConsistencySig(f *testing.F)         { fuzzDecoder(f, "ConsistencySig") }
func FuzzConsistencyCertificate(f *testing.F) { fuzzDecoder(f, "ConsistencyCertificate") }
func FuzzUnmaskShares(f *testing.F)           { fuzzDecoder(f, "UnmaskShares") }

func FuzzDecodeWords(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 2)
	f.Add([]byte{1, 2, 3}, 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 1<<12 {
			return
		}
		dst := make([]uint32, n)
		err := secagg.DecodeWords(dst, b)
		if (err == nil) != (len(b) == 4*n) {
			t.Fatalf("DecodeWords(%d bytes, %d words) = %v", len(b), n, err)
		}
		if err == nil && !bytes.Equal(secagg.AppendWords(nil, dst), b) {
			t.Fatal("AppendWords(DecodeWords(b)) != b")
		}
	})
}

// TestVectorDigestKnownAnswer pins the encoding: SHA-256 of the bytes
// 01 00 00 00 ff ff ff ff (words 1 and 0xffffffff, little-endian).
func TestVectorDigestKnownAnswer(t *testing.T) {
	got := secagg.VectorDigest([]uint32{1, 0xffffffff})
	want := sha256.Sum256([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	if got != want {
		t.Fatalf("VectorDigest = %x, want %x", got, want)
	}
	if b := secagg.AppendWords([]byte{9}, []uint32{0x04030201}); !bytes.Equal(b, []byte{9, 1, 2, 3, 4}) {
		t.Fatalf("AppendWords = %x", b)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, list := range sampleMessages(f) {
		for _, b := range list {
			f.Add(b)
		}
	}
	f.Add([]byte{1, 99, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := secagg.Unmarshal(b)
		if err != nil {
			if !errors.Is(err, secagg.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(m.Marshal(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
	})
}

func TestUnmarshalDispatch(t *testing.T) {
	for name, list := range sampleMessages(t) {
		if name == "MaskedInputHeader" {
			if _, err := secagg.Unmarshal(list[0]); err == nil {
				t.Fatal("Unmarshal accepted a MaskedInput header without its vector")
			}
			continue
		}
		m, err := secagg.Unmarshal(list[0])
		if err != nil || typeName(m) != name {
			t.Fatalf("%s: Unmarshal gave %T, %v", name, m, err)
		}
	}
}
