package synth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestDeterministic(t *testing.T) {
	o := Options{Domain: Medical, Site: "st-marys", Records: 200, Seed: 7}
	var a, b bytes.Buffer
	ra, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := Generate(o)
	Write(&a, ra)
	Write(&b, rb)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same options gave different output")
	}
	o.Seed = 8
	rc, _ := Generate(o)
	var c bytes.Buffer
	Write(&c, rc)
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Fatal("different seeds gave identical output")
	}
}

func TestJSONLShapeAndNoPlaceholders(t *testing.T) {
	for _, d := range Domains() {
		recs, err := Generate(Options{Domain: d, Site: "s", Records: 500, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Write(&buf, recs); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(&buf)
		n := 0
		for sc.Scan() {
			n++
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s line %d: %v", d, n, err)
			}
			if len(m) != 1 {
				t.Fatalf("%s line %d: keys %v, want only text", d, n, m)
			}
			s, _ := m["text"].(string)
			if s == "" || strings.ContainsAny(s, "{}") {
				t.Fatalf("%s line %d: bad text %q", d, n, s)
			}
		}
		if n != 500 {
			t.Fatalf("%s: %d lines, want 500", d, n)
		}
	}
}

// Sites differ in their topic mix, and the empirical mix follows Mix.
func TestNonIID(t *testing.T) {
	const n = 20000
	ma, _ := Mix(Finance, "bank-a", 1)
	mb, _ := Mix(Finance, "bank-b", 1)
	if ma[0].Topic == mb[0].Topic && ma[1].Topic == mb[1].Topic {
		t.Fatalf("two sites have the same leading topics: %v %v", ma[:2], mb[:2])
	}
	sum := 0.0
	for _, w := range ma {
		sum += w.Weight
	}
	if math.Abs(sum-1) > 1e-12 {
		t.Fatalf("weights sum to %v", sum)
	}
	recs, _ := Generate(Options{Domain: Finance, Site: "bank-a", Records: n, Seed: 1})
	count := map[string]int{}
	for _, r := range recs {
		count[r.Topic]++
	}
	for _, w := range ma {
		got := float64(count[w.Topic]) / n
		sd := math.Sqrt(w.Weight * (1 - w.Weight) / n)
		if math.Abs(got-w.Weight) > 5*sd+1e-9 {
			t.Errorf("topic %s: share %.4f, want %.4f ± %.4f", w.Topic, got, w.Weight, 5*sd)
		}
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Domain: "legal", Site: "a", Records: 1},
		{Domain: Medical, Site: "", Records: 1},
		{Domain: Medical, Site: "a", Records: 0},
	} {
		if _, err := Generate(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestEveryTemplateSlotDefined(t *testing.T) {
	for d, ts := range domains {
		for _, tp := range ts {
			for _, tmpl := range tp.templates {
				s := tmpl
				for {
					i := strings.IndexByte(s, '{')
					if i < 0 {
						break
					}
					j := strings.IndexByte(s[i:], '}')
					if j < 0 {
						t.Fatalf("%s/%s: unclosed slot in %q", d, tp.name, tmpl)
					}
					if _, ok := slots[s[i+1:i+j]]; !ok {
						t.Fatalf("%s/%s: unknown slot %q", d, tp.name, s[i+1:i+j])
					}
					s = s[i+j+1:]
				}
			}
		}
	}
}
