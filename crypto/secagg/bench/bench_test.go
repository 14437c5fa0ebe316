package bench

import "testing"

func TestRunSmall(t *testing.T) {
	for _, pq := range []bool{false, true} {
		r, err := Run(Config{Sites: 6, Params: 5000, Dropouts: 1, PQ: pq, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Exact || r.Survivors != 5 || r.Threshold != 5 {
			t.Fatalf("result %+v", r)
		}
		if r.ClientMaskS <= 0 || r.KeystreamS <= 0 || r.ServerUnmaskS <= 0 || r.BytesPerClient < 4*5000 {
			t.Fatalf("implausible measurements %+v", r)
		}
		if r.ServerMaskWords != (5+1*5)*5000 {
			t.Fatalf("server mask words %d", r.ServerMaskWords)
		}
	}
	if _, err := Run(Config{Sites: 4, Params: 10, Dropouts: 2}); err == nil {
		t.Fatal("threshold above the remaining sites accepted")
	}
}
