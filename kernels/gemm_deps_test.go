package kernels

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCoreImports enforces the dependency rule of the core packages for
// this package and its subpackages: no drivers, no wire protocol, no
// network. It reads the import lists of every non-test Go file, whatever
// its build tags.
func TestCoreImports(t *testing.T) {
	for p, want := range map[string]bool{
		"net": true, "net/http": true, "google.golang.org/grpc/codes": true,
		"github.com/fedtune/fedtune/proto/fedtunepb": true, "github.com/fedtune/fedtune/server": true,
		"math": false, "netip": false, "golang.org/x/sys/cpu": false,
		"github.com/fedtune/fedtune/kernels/openblas": false, "github.com/fedtune/fedtune/serverless": false,
	} {
		if got := forbiddenImport(p); got != want {
			t.Errorf("forbiddenImport(%q) = %v, want %v", p, got, want)
		}
	}
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if forbiddenImport(p) {
				t.Errorf("%s imports %q: core packages must not depend on drivers, protocols or the network", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no Go files found")
	}
}

// forbiddenImport reports whether a core package may not import path: the
// network, process execution, gRPC, and the driver and protocol packages.
func forbiddenImport(path string) bool {
	for _, bad := range []string{
		"net", "os/exec", "google.golang.org/grpc",
		"github.com/fedtune/fedtune/server", "github.com/fedtune/fedtune/client",
		"github.com/fedtune/fedtune/proto",
	} {
		if path == bad || strings.HasPrefix(path, bad+"/") {
			return true
		}
	}
	return false
}
