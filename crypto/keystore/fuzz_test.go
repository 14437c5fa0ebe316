package keystore

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFile feeds arbitrary bytes to the file parser and the decryptor:
// they must return an error or a payload, never panic, and anything they
// accept must have been sealed with the test key.
func FuzzParseFile(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "k")
	s, err := InitFileStoreWith(dir, pass, testOpts)
	if err != nil {
		f.Fatal(err)
	}
	data, _ := os.ReadFile(s.Path())
	f.Add(data)
	f.Add([]byte("fedtune-keystore v1\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := parseFile("fuzz", data)
		if err != nil {
			return
		}
		if !sf.params.equal(s.keys.params) {
			return
		}
		pt, err := sf.open("fuzz", s.keys)
		if err != nil {
			return
		}
		if _, err := s.decode(pt); err != nil {
			return
		}
	})
}
