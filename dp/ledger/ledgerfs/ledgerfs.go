// Package ledgerfs stores a site's privacy ledger in a directory: the log in
// privacy-ledger.jsonl, the head in privacy-ledger.head, and an advisory lock
// in privacy-ledger.lock that serialises writers across processes.
//
// Appends are durable before Update returns: the log is written with
// O_APPEND and fsynced, then the head is replaced by writing a temporary file,
// fsyncing it, renaming it over the old head and fsyncing the directory.
package ledgerfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fedtune/fedtune/dp/ledger"
)

const (
	LogFile  = "privacy-ledger.jsonl"
	HeadFile = "privacy-ledger.head"
	LockFile = "privacy-ledger.lock"
)

// Dir is a ledger.Storage in a directory.
type Dir struct {
	Path string
}

var _ ledger.Storage = Dir{}

// Load implements ledger.Storage.
func (d Dir) Load() ([]byte, []byte, error) {
	log, err := os.ReadFile(filepath.Join(d.Path, LogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w in %s (create one with `fedtune dp ledger init --site-dir %s`)", ledger.ErrNotExist, d.Path, d.Path)
	}
	if err != nil {
		return nil, nil, err
	}
	head, err := os.ReadFile(filepath.Join(d.Path, HeadFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, &ledger.CorruptError{Reason: fmt.Sprintf("%s is missing", filepath.Join(d.Path, HeadFile))}
	}
	if err != nil {
		return nil, nil, err
	}
	return log, head, nil
}

// Update implements ledger.Storage.
func (d Dir) Update(fn func(log, head []byte) ([]byte, []byte, error)) error {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return err
	}
	unlock, err := lock(filepath.Join(d.Path, LockFile))
	if err != nil {
		return fmt.Errorf("locking ledger: %w", err)
	}
	defer unlock()
	log, err := os.ReadFile(filepath.Join(d.Path, LogFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	head, err := os.ReadFile(filepath.Join(d.Path, HeadFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	rec, newHead, err := fn(log, head)
	if err != nil || rec == nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(d.Path, LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(rec); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	tmp := filepath.Join(d.Path, HeadFile+".tmp")
	if err := os.WriteFile(tmp, newHead, 0o600); err != nil {
		return err
	}
	tf, err := os.Open(tmp)
	if err != nil {
		return err
	}
	serr := tf.Sync()
	tf.Close()
	if serr != nil {
		return serr
	}
	if err := os.Rename(tmp, filepath.Join(d.Path, HeadFile)); err != nil {
		return err
	}
	return syncDir(d.Path)
}

func syncDir(path string) error {
	df, err := os.Open(path)
	if err != nil {
		return err
	}
	defer df.Close()
	return df.Sync()
}
