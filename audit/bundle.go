package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Bundle file names.
const (
	BundleEntries     = "entries.jsonl" // one canonical entry per line, in log order
	BundleCheckpoints = "checkpoints"   // directory of signed checkpoint notes, cosignatures included
	BundlePolicy      = "policy.json"   // the log's key, the witnesses' keys and the quorum
)

// Bundle is an exported audit trail: everything a verifier needs, offline.
type Bundle struct {
	// Entries is the content of entries.jsonl.
	Entries []byte
	// Checkpoints are the signed checkpoint notes, by file name.
	Checkpoints []BundleFile
	// Policy is the content of policy.json.
	Policy []byte
}

// BundleFile is one named file of a bundle.
type BundleFile struct {
	Name string
	Data []byte
}

// ReadBundle reads a bundle directory. Missing parts are errors; their
// contents are judged by [Verify].
func ReadBundle(dir string) (*Bundle, error) {
	var b Bundle
	var err error
	if b.Entries, err = os.ReadFile(filepath.Join(dir, BundleEntries)); err != nil {
		return nil, fmt.Errorf("audit: bundle: %w", err)
	}
	if b.Policy, err = os.ReadFile(filepath.Join(dir, BundlePolicy)); err != nil {
		return nil, fmt.Errorf("audit: bundle: %w", err)
	}
	des, err := os.ReadDir(filepath.Join(dir, BundleCheckpoints))
	if err != nil {
		return nil, fmt.Errorf("audit: bundle: %w", err)
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			return nil, fmt.Errorf("audit: bundle: %s/%s is not a regular file", BundleCheckpoints, de.Name())
		}
		data, err := os.ReadFile(filepath.Join(dir, BundleCheckpoints, de.Name()))
		if err != nil {
			return nil, fmt.Errorf("audit: bundle: %w", err)
		}
		b.Checkpoints = append(b.Checkpoints, BundleFile{Name: de.Name(), Data: data})
	}
	sort.Slice(b.Checkpoints, func(i, j int) bool { return b.Checkpoints[i].Name < b.Checkpoints[j].Name })
	return &b, nil
}

// Write writes the bundle into dir, which must not exist or be empty.
func (b *Bundle) Write(dir string) error {
	if des, err := os.ReadDir(dir); err == nil && len(des) > 0 {
		return fmt.Errorf("audit: bundle directory %s is not empty", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("audit: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, BundleCheckpoints), 0o755); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := writeFileSync(filepath.Join(dir, BundleEntries), b.Entries); err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(dir, BundlePolicy), b.Policy); err != nil {
		return err
	}
	for _, c := range b.Checkpoints {
		if c.Name == "" || c.Name != filepath.Base(c.Name) || c.Name[0] == '.' {
			return fmt.Errorf("audit: bad checkpoint file name %q", c.Name)
		}
		if err := writeFileSync(filepath.Join(dir, BundleCheckpoints, c.Name), c.Data); err != nil {
			return err
		}
	}
	return nil
}

// CheckpointFileName is the bundle file name of a checkpoint of the given size.
func CheckpointFileName(size uint64) string { return fmt.Sprintf("%020d.note", size) }

// EntryLines splits entries.jsonl into lines. A final line without a
// newline is returned as well, with ok false.
func EntryLines(data []byte) (lines [][]byte, complete bool) {
	if len(data) == 0 {
		return nil, true
	}
	complete = data[len(data)-1] == '\n'
	if complete {
		data = data[:len(data)-1]
	}
	return bytes.Split(data, []byte{'\n'}), complete
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("audit: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: syncing %s: %w", path, err)
	}
	return f.Close()
}
