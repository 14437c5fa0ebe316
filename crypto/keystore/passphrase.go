package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// ErrNoPassphrase reports that neither FEDTUNE_PASSPHRASE nor
// FEDTUNE_PASSPHRASE_FILE is set.
var ErrNoPassphrase = errors.New("keystore: no passphrase: set FEDTUNE_PASSPHRASE or FEDTUNE_PASSPHRASE_FILE")

// PassphraseFromEnv returns the file store passphrase from the environment:
// FEDTUNE_PASSPHRASE, or else the contents of the file named by
// FEDTUNE_PASSPHRASE_FILE without one trailing newline ("\n" or "\r\n").
// The file must not be readable by other users. Setting both is an error,
// as is an empty passphrase.
func PassphraseFromEnv() ([]byte, error) {
	p, hasP := os.LookupEnv("FEDTUNE_PASSPHRASE")
	file, hasF := os.LookupEnv("FEDTUNE_PASSPHRASE_FILE")
	switch {
	case hasP && hasF:
		return nil, errors.New("keystore: both FEDTUNE_PASSPHRASE and FEDTUNE_PASSPHRASE_FILE are set; set one")
	case hasP:
		if p == "" {
			return nil, errors.New("keystore: FEDTUNE_PASSPHRASE is empty")
		}
		return []byte(p), nil
	case hasF:
		st, err := os.Stat(file)
		if err != nil {
			return nil, fmt.Errorf("keystore: FEDTUNE_PASSPHRASE_FILE: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, &PermissionError{Path: file, Mode: st.Mode()}
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("keystore: FEDTUNE_PASSPHRASE_FILE: %w", err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(b) == 0 {
			return nil, fmt.Errorf("keystore: passphrase file %s is empty", file)
		}
		return b, nil
	}
	return nil, ErrNoPassphrase
}
