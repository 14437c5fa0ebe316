//go:build !unix

package keystore

// lockFile is a no-op where flock(2) is missing: concurrent writers from
// several processes are then not serialized (writes stay atomic).
func lockFile(path string) (func(), error) { return func() {}, nil }
