package audit

import (
	"crypto/sha256"
	"testing"
)

func benchLine(b *testing.B) []byte {
	e := baseEntry(UpdateAccepted, 3)
	e.Round = u64(7)
	e.Actor = Actor{ID: "site:site-042", Auth: "mtls"}
	e.Objects = []Object{{Type: "update", ID: "r7-u1234", Digest: "sha256:00000000000000000000000000000000000000000000000000000000000004d2"}}
	d, err := e.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkParseEntry is the per-entry cost of verification; compare
// with BenchmarkSHA256Entry over the same bytes.
func BenchmarkParseEntry(b *testing.B) {
	d := benchLine(b)
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, err := ParseEntry(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSHA256Entry(b *testing.B) {
	d := benchLine(b)
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		sha256.Sum256(d)
	}
}
