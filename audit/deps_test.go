package audit

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/crypto/keystore"
)

// Every key-store signer is an audit signer.
var _ Signer = keystore.Signer(nil)

// TestCoreDependencies enforces the core rule: the audit core never
// depends on networking (package net, net/http), gRPC or the drivers, not even indirectly.
// (audit/posixlog, the storage driver, is outside the core: tessera's
// POSIX driver links net/http.)
func TestCoreDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	for _, pkg := range []string{".", "./merkle", "./canonjson", "./report"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			// net/url and net/netip are pure parsers (html/template needs them).
			if dep == "net" || strings.HasPrefix(dep, "net/http") || strings.Contains(dep, "grpc") ||
				strings.HasPrefix(dep, "github.com/fedtune/fedtune/server") || strings.HasPrefix(dep, "github.com/fedtune/fedtune/client") ||
				strings.HasPrefix(dep, "github.com/fedtune/fedtune/proto") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
