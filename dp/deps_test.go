package dp

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCoreDependencies enforces the layering rule: the DP core never depends
// on drivers, RPC or networking.
func TestCoreDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/fedtune/fedtune/dp", "github.com/fedtune/fedtune/dp/accounting",
		"github.com/fedtune/fedtune/dp/noise", "github.com/fedtune/fedtune/dp/ledger").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/fedtune/fedtune/server", "github.com/fedtune/fedtune/client",
			"github.com/fedtune/fedtune/proto", "google.golang.org/grpc", "net", "os/exec", "math/rand"} {
			if p == bad || strings.HasPrefix(p, bad+"/") && bad != "math/rand" {
				t.Errorf("core DP packages depend on %s", p)
			}
		}
	}
}
