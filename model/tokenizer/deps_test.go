package tokenizer

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: the tokenizer is part of the core and must not pull in
// networking or the drivers (directly or through a dependency).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "net", strings.HasPrefix(dep, "net/"),
			strings.HasPrefix(dep, "google.golang.org/grpc"),
			strings.HasPrefix(dep, "github.com/fedtune/fedtune/server"),
			strings.HasPrefix(dep, "github.com/fedtune/fedtune/client"),
			strings.HasPrefix(dep, "github.com/fedtune/fedtune/proto"):
			t.Errorf("model/tokenizer depends on %s", dep)
		}
	}
}
