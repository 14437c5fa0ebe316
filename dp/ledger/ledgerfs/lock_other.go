//go:build !unix

package ledgerfs

import "os"

// lock creates path but cannot lock it on this platform: run one writer per
// site directory at a time.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}
