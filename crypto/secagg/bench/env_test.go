package bench

import (
	"encoding/json"
	"os"
	"testing"
)

// TestEnvBenchmark runs a full-size measurement when FEDTUNE_BENCH_SECAGG
// holds a JSON Config, e.g.
//
//	FEDTUNE_BENCH_SECAGG='{"Sites":50,"Params":1048576,"PQ":true}' go test -run TestEnvBenchmark -v ./crypto/secagg/bench
//
// and prints the Result as JSON. It is skipped otherwise (the sizes that
// matter take minutes). `fedtune bench secagg` is the usual entry point.
func TestEnvBenchmark(t *testing.T) {
	spec := os.Getenv("FEDTUNE_BENCH_SECAGG")
	if spec == "" {
		t.Skip("FEDTUNE_BENCH_SECAGG not set")
	}
	var c Config
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatalf("FEDTUNE_BENCH_SECAGG: %v", err)
	}
	r, err := Run(c)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(r)
	t.Logf("RESULT %s", b)
	if !r.Exact {
		t.Fatal("sum not exact")
	}
}
