package model

import (
	"math"
	"os/exec"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/model/hf"
)

// FuzzTrainerInputs feeds arbitrary batches to a trainer: every batch is
// either rejected with an error or yields finite losses and gradients, and
// per-example gradients always sum to the batch gradient.
func FuzzTrainerInputs(f *testing.F) {
	f.Add([]byte{3, 1, 2, 3, 4, 5, 6})
	f.Add([]byte{0})
	f.Add([]byte{2, 200, 1, 0xff, 0x9c, 7})
	f.Add([]byte{9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	m := tinyModel(f, tinyConfig(hf.ArchLlama, 4, 2, 0), 51)
	a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"q_proj", "v_proj", "up_proj"}})
	randomizeB(a, 1)
	tr := m.NewTrainer(a, TrainerOptions{MaxBatch: 3, MaxSeq: 6})
	per := newGrads(3, a.NumTrainable())
	sum := make([]float32, a.NumTrainable())
	l1, l2 := make([]float64, 8), make([]float64, 8)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Byte 0 of each example is its length; the following bytes are
		// (id, label) pairs, as signed bytes so that -100 and other
		// negatives occur.
		var batch []Example
		for len(data) > 0 && len(batch) < 8 {
			n := int(data[0] % 9)
			data = data[1:]
			ex := Example{}
			for i := 0; i < n && len(data) >= 2; i++ {
				ex.InputIDs = append(ex.InputIDs, int(int8(data[0])))
				lab := int(int8(data[1]))
				if lab == -128 {
					lab = -100
				}
				ex.Labels = append(ex.Labels, lab)
				data = data[2:]
			}
			batch = append(batch, ex)
		}
		err1 := tr.PerExampleGrads(batch, per, l1)
		err2 := tr.BatchGrad(batch, sum, l2)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("PerExampleGrads error %v, BatchGrad error %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		for j := range sum {
			var s float64
			for i := range batch {
				s += float64(per[i][j])
			}
			if math.IsNaN(s) || math.Abs(s-float64(sum[j])) > 1e-5*math.Max(1, math.Abs(s)) {
				t.Fatalf("parameter %d: Σ per-example %v, batch %v", j, s, sum[j])
			}
		}
		for i := range batch {
			if math.IsNaN(l1[i]) || math.IsInf(l1[i], 0) || l1[i] < 0 {
				t.Fatalf("loss %d = %v", i, l1[i])
			}
		}
	})
}

// TestCoreDependencies enforces the layering rule: the model and kernels
// packages never depend on drivers, RPC or the network.
func TestCoreDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/fedtune/fedtune/model", "github.com/fedtune/fedtune/kernels").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/fedtune/fedtune/server", "github.com/fedtune/fedtune/client", "github.com/fedtune/fedtune/proto", "google.golang.org/grpc", "net"} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("core package depends on %s", dep)
			}
		}
	}
}
