// Package synth generates synthetic, non-IID training records for fedtune
// demos and tests: short clinical notes (domain medical) or banking
// messages (domain finance), written as JSONL `{"text": ...}` lines.
//
// # Guarantees
//
// Every name, number and event in a record is drawn from small built-in word
// lists; no record describes a real person and no real personal data is used.
// Output is a pure function of (domain, site, records, seed): the same
// arguments give byte-identical files on every machine.
//
// # Non-IID
//
// Each site sees its own mix of topics: the topics of a domain are put in a
// site-specific order (derived from the site name and the seed) and weighted
// geometrically, so the first topic of a site has half of its records, the
// second a quarter, and so on. Two sites therefore differ mostly in which
// topics dominate, the situation in which a federated model beats every
// site's local one.
//
// The generator uses math/rand/v2's PCG source: it is not security relevant
// (it only shapes public synthetic text).
package synth

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
)

// Domain names a family of synthetic records.
type Domain string

const (
	Medical Domain = "medical"
	Finance Domain = "finance"
)

// Domains lists the supported domains.
func Domains() []Domain { return []Domain{Medical, Finance} }

// Options selects what Generate writes.
type Options struct {
	Domain  Domain
	Site    string
	Records int
	Seed    int64
}

// MaxRecords bounds Options.Records.
const MaxRecords = 10_000_000

func (o Options) validate() error {
	if _, ok := domains[o.Domain]; !ok {
		return fmt.Errorf("synth: unknown domain %q (want medical or finance)", o.Domain)
	}
	if o.Site == "" {
		return fmt.Errorf("synth: site name is empty")
	}
	if o.Records <= 0 || o.Records > MaxRecords {
		return fmt.Errorf("synth: records = %d, want 1..%d", o.Records, MaxRecords)
	}
	return nil
}

// Record is one synthetic training record.
type Record struct {
	Text  string `json:"text"`
	Topic string `json:"-"`
}

// TopicWeight is one topic's share of a site's records.
type TopicWeight struct {
	Topic  string  `json:"topic"`
	Weight float64 `json:"weight"`
}

// Topics returns the topics of a domain in canonical order.
func Topics(d Domain) []string {
	ts := domains[d]
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.name
	}
	return out
}

// Mix returns the topic mix of a site, largest weight first. Weights sum to 1.
func Mix(d Domain, site string, seed int64) ([]TopicWeight, error) {
	ts, ok := domains[d]
	if !ok {
		return nil, fmt.Errorf("synth: unknown domain %q (want medical or finance)", d)
	}
	r := siteRand(site, seed, "mix")
	order := r.Perm(len(ts))
	out := make([]TopicWeight, len(ts))
	total := 0.0
	w := 1.0
	for i, j := range order {
		w /= 2 // geometric weights 1/2, 1/4, ...
		out[i] = TopicWeight{Topic: ts[j].name, Weight: w}
		total += w
	}
	for i := range out {
		out[i].Weight /= total
	}
	return out, nil
}

// Generate returns opts.Records records for one site.
func Generate(opts Options) ([]Record, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	mix, _ := Mix(opts.Domain, opts.Site, opts.Seed)
	byName := map[string]topic{}
	for _, t := range domains[opts.Domain] {
		byName[t.name] = t
	}
	cum := make([]float64, len(mix))
	acc := 0.0
	for i, m := range mix {
		acc += m.Weight
		cum[i] = acc
	}
	r := siteRand(opts.Site, opts.Seed, "records")
	recs := make([]Record, opts.Records)
	for i := range recs {
		u := r.Float64() * acc
		k := sort.SearchFloat64s(cum, u)
		if k >= len(mix) {
			k = len(mix) - 1
		}
		t := byName[mix[k].Topic]
		recs[i] = Record{Text: fill(r, t.templates[r.IntN(len(t.templates))]), Topic: t.name}
	}
	return recs, nil
}

// Write writes records as JSONL, one {"text": ...} object per line.
func Write(w io.Writer, recs []Record) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return fmt.Errorf("synth: record %d: %w", i, err)
		}
	}
	return bw.Flush()
}

func siteRand(site string, seed int64, purpose string) *rand.Rand {
	h := fnv.New64a()
	fmt.Fprintf(h, "fedtune-synth\x00%s\x00%s", site, purpose)
	return rand.New(rand.NewPCG(h.Sum64(), uint64(seed)))
}

// fill replaces every {slot} of a template with a word from that slot's list.
func fill(r *rand.Rand, tmpl string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		j := strings.IndexByte(tmpl[i:], '}')
		b.WriteString(tmpl[:i])
		slot := tmpl[i+1 : i+j]
		words := slots[slot]
		b.WriteString(words[r.IntN(len(words))])
		tmpl = tmpl[i+j+1:]
	}
}

type topic struct {
	name      string
	templates []string
}

var domains = map[Domain][]topic{
	Medical: {
		{"cardiology", []string{
			"Patient {pid}, age {age}, presents with chest pain radiating to the left arm. ECG shows {ecg}. Plan: troponin series and {cardio_rx}.",
			"Follow-up for atrial fibrillation in patient {pid}. Heart rate {hr} bpm. Continue {cardio_rx} and review in {weeks} weeks.",
			"Patient {pid} reports palpitations for {days} days. Blood pressure {bp}. Echocardiogram ordered; start {cardio_rx}.",
		}},
		{"diabetes", []string{
			"Patient {pid}, age {age}, type 2 diabetes. HbA1c {a1c} percent. Adjust metformin and recheck in {weeks} weeks.",
			"Routine diabetic review for {pid}: fasting glucose {glucose} mg/dL, foot exam normal. Continue insulin {insulin} units nightly.",
			"Patient {pid} reports thirst and frequent urination for {days} days. Glucose {glucose} mg/dL. Start metformin.",
		}},
		{"respiratory", []string{
			"Patient {pid}, age {age}, cough and fever for {days} days. Oxygen saturation {spo2} percent. Chest X-ray shows {cxr}.",
			"Asthma follow-up for {pid}: peak flow {pef} L/min. Continue inhaled steroid and review in {weeks} weeks.",
			"COPD exacerbation in patient {pid}. Saturation {spo2} percent on room air. Start prednisolone and {abx}.",
		}},
		{"orthopedics", []string{
			"Patient {pid}, age {age}, fell and injured the {joint}. X-ray shows {fracture}. Immobilise and refer to orthopedics.",
			"Post-operative review of {joint} replacement for {pid}. Wound clean, range of motion {rom} degrees. Physiotherapy twice weekly.",
			"Patient {pid} reports {joint} pain for {weeks} weeks after running. Exam suggests strain; rest and ibuprofen.",
		}},
		{"pediatrics", []string{
			"Child {pid}, age {child_age}, fever {temp} C for {days} days. Ears {ears}. Advise fluids and paracetamol.",
			"Well-child visit for {pid}, age {child_age}: weight {weight} kg, vaccinations up to date. Next visit in {weeks} weeks.",
			"Child {pid} with rash and fever {temp} C. Throat swab taken; start {abx} if positive.",
		}},
		{"oncology", []string{
			"Patient {pid}, age {age}, cycle {cycle} of chemotherapy. Neutrophils {anc}. Proceed with treatment as planned.",
			"Oncology review for {pid}: CT shows {ct}. Discuss options at tumour board in {weeks} weeks.",
			"Patient {pid} reports fatigue after cycle {cycle}. Hemoglobin {hb} g/dL. Consider transfusion if below 8.",
		}},
	},
	Finance: {
		{"mortgage", []string{
			"Customer {cid} requests a mortgage of {amount} EUR over {years} years. Income {income} EUR per year. Loan to value {ltv} percent.",
			"Mortgage renewal for customer {cid}: fixed rate {rate} percent for {years} years, remaining balance {amount} EUR.",
			"Customer {cid} asks to overpay the mortgage by {small} EUR this month without penalty.",
		}},
		{"fraud", []string{
			"Alert: card of customer {cid} used in {city} and {city2} within {minutes} minutes. Amount {small} EUR. Card blocked pending review.",
			"Customer {cid} reports an unknown transfer of {small} EUR to account {acct}. Dispute opened, reference {ref}.",
			"Suspicious login for customer {cid} from a new device in {city}. Two-factor check failed {count} times.",
		}},
		{"savings", []string{
			"Customer {cid} opens a savings account with {small} EUR at {rate} percent interest, monthly deposit {tiny} EUR.",
			"Customer {cid} moves {small} EUR from current to savings. New savings balance {amount} EUR.",
			"Interest of {tiny} EUR credited to savings account of customer {cid} for the quarter.",
		}},
		{"credit_card", []string{
			"Customer {cid} requests a credit limit increase from {small} to {small2} EUR. Payment history: {history}.",
			"Statement for customer {cid}: balance {small} EUR, minimum payment {tiny} EUR due in {days} days.",
			"Customer {cid} missed the card payment of {tiny} EUR. Late fee applied; reminder sent.",
		}},
		{"business_loan", []string{
			"Company {company} applies for a loan of {amount} EUR to buy {asset}. Annual revenue {income} EUR.",
			"Business loan review for {company}: debt service coverage {dscr}, collateral {asset}. Recommend approval.",
			"Company {company} asks to defer loan repayments for {months} months due to {reason}.",
		}},
		{"investments", []string{
			"Customer {cid} buys {shares} shares of the {fund} fund at {price} EUR. Risk profile {risk}.",
			"Portfolio review for customer {cid}: {pct} percent equities, rest bonds. Rebalance toward {fund}.",
			"Customer {cid} sells {shares} units of {fund} for {small} EUR, realised gain {tiny} EUR.",
		}},
	},
}

var slots = map[string][]string{
	"pid": {"P-1041", "P-2203", "P-3177", "P-4410", "P-5092", "P-6624", "P-7315", "P-8858", "P-9901"},
	"cid": {"C-1180", "C-2394", "C-3057", "C-4721", "C-5563", "C-6649", "C-7702", "C-8136", "C-9218"},
	"age": {"34", "41", "47", "52", "58", "63", "67", "71", "76", "82"}, "child_age": {"2", "4", "6", "8", "11", "14"},
	"ecg":       {"ST elevation in leads II and III", "sinus rhythm", "atrial fibrillation", "T wave inversion"},
	"cardio_rx": {"aspirin", "a beta blocker", "an anticoagulant", "a statin"},
	"hr":        {"58", "72", "88", "104", "126"}, "bp": {"118/76", "135/88", "152/94", "168/102"},
	"weeks": {"2", "4", "6", "8", "12"}, "days": {"2", "3", "5", "7", "10", "14"},
	"a1c": {"6.1", "6.8", "7.4", "8.2", "9.0"}, "glucose": {"96", "132", "178", "214", "260"},
	"insulin": {"10", "14", "18", "22"}, "spo2": {"88", "91", "94", "97"},
	"cxr": {"right lower lobe consolidation", "clear lungs", "bilateral infiltrates", "hyperinflation"},
	"pef": {"280", "350", "420", "510"}, "abx": {"amoxicillin", "doxycycline", "azithromycin"},
	"joint":    {"wrist", "knee", "hip", "ankle", "shoulder"},
	"fracture": {"a distal radius fracture", "no fracture", "a hairline fracture", "a displaced fracture"},
	"rom":      {"60", "85", "100", "120"}, "temp": {"37.8", "38.4", "39.1", "39.7"},
	"ears": {"normal", "red and bulging", "with fluid behind the drum"}, "weight": {"12", "17", "23", "31", "45"},
	"cycle": {"1", "2", "3", "4", "6"}, "anc": {"0.9", "1.4", "2.1", "3.5"},
	"ct":     {"stable disease", "partial response", "a new lesion in the liver", "no evidence of disease"},
	"hb":     {"7.6", "8.9", "10.2", "11.8"},
	"amount": {"85000", "150000", "240000", "320000", "410000"}, "years": {"10", "15", "20", "25", "30"},
	"income": {"38000", "52000", "67000", "95000", "140000"}, "ltv": {"60", "70", "80", "90"},
	"rate": {"1.9", "2.6", "3.4", "4.1", "5.2"}, "small": {"250", "900", "1500", "3200", "7800"},
	"small2": {"5000", "8000", "12000"}, "tiny": {"15", "40", "75", "120"},
	"city": {"Lisbon", "Oslo", "Vienna", "Dublin", "Prague"}, "city2": {"Singapore", "Lagos", "Lima", "Manila"},
	"minutes": {"5", "12", "30", "45"}, "acct": {"DE00-1111", "FR00-2222", "NL00-3333"},
	"ref": {"D-551", "D-672", "D-893"}, "count": {"2", "3", "5"},
	"history": {"always on time", "two late payments", "one missed payment"},
	"company": {"Alder Tools", "Birch Foods", "Cedar Logistics", "Dune Textiles"},
	"asset":   {"delivery vans", "a warehouse", "packaging machines", "solar panels"},
	"dscr":    {"1.1", "1.4", "1.8", "2.3"}, "months": {"3", "6", "9"},
	"reason": {"a supplier failure", "seasonal demand", "a flood at the plant"},
	"shares": {"10", "25", "50", "120"}, "fund": {"Global Equity", "Euro Bond", "Green Energy", "Tech Growth"},
	"price": {"12.40", "48.10", "103.75"}, "risk": {"low", "medium", "high"}, "pct": {"20", "40", "60", "80"},
}
