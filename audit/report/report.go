// Package report renders a verified audit bundle for people: a rounds
// timeline, the participants, each site's privacy ledger (with a chart in
// HTML), the published models with their digests, and the denials and
// anomalies, in Markdown, HTML or CSV.
//
// A report always starts with the verification verdict: a report of a
// bundle that did not verify says so before anything else.
package report

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/fedtune/fedtune/audit"
)

// Formats lists the supported formats.
var Formats = []string{"md", "html", "csv"}

// Render writes the report of r (the result of audit.Verify, whose Parsed
// entries it reads) in format md, html or csv.
func Render(w io.Writer, format string, r *audit.Result) error {
	m := build(r)
	switch format {
	case "md":
		return renderMarkdown(w, m)
	case "html":
		return renderHTML(w, m)
	case "csv":
		return renderCSV(w, r)
	}
	return fmt.Errorf("report: unknown format %q (want md, html or csv)", format)
}

type roundRow struct {
	Round        uint64
	Opened       string
	Closed       string
	Status       string
	Participants []string
	Refused      []string
	Dropouts     int
	Aggregate    string
}

type eventRow struct {
	Entry   int
	Time    string
	Kind    string
	Actor   string
	Outcome string
	Detail  string
}

type siteRow struct {
	ID       string
	Enrolled string
	Revoked  string
	Spends   int
	Epsilon  string
	Cap      string
}

type ledgerRow struct {
	Site       string
	Entry      int64
	Round      uint64
	Time       string
	Epsilon    string
	Recomputed string
	Cap        string
}

type model struct {
	OK           bool
	Entries      int
	TreeSize     uint64
	Root         string
	Cosigners    string
	Quorum       int
	PolicySource string
	Problems     []string
	Notes        []string
	Rounds       []roundRow
	Sites        []siteRow
	Ledger       []ledgerRow
	Models       []eventRow
	Denials      []eventRow
	Reviews      []eventRow
	Chart        template.HTML
}

func fnum(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

func objects(e *audit.Entry) string {
	var parts []string
	for _, o := range e.Objects {
		s := o.Type + " " + o.ID
		if o.Digest != "" {
			s += " (" + o.Digest + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func build(r *audit.Result) *model {
	m := &model{OK: r.OK, Entries: r.Entries, TreeSize: r.TreeSize, Root: r.RootHash, Cosigners: strings.Join(r.Cosigners, ", "),
		Quorum: r.Quorum, PolicySource: r.PolicySource, Notes: r.Notes}
	for _, p := range r.Problems {
		m.Problems = append(m.Problems, p.String())
	}
	rounds := map[uint64]*roundRow{}
	round := func(n uint64) *roundRow {
		if rounds[n] == nil {
			rounds[n] = &roundRow{Round: n, Status: "open"}
		}
		return rounds[n]
	}
	sites := map[string]*siteRow{}
	site := func(id string) *siteRow {
		if sites[id] == nil {
			sites[id] = &siteRow{ID: id}
		}
		return sites[id]
	}
	for i, e := range r.Parsed {
		if e == nil {
			continue
		}
		ev := eventRow{Entry: i, Time: e.Time, Kind: string(e.Kind), Actor: e.Actor.ID, Outcome: string(e.Outcome)}
		ev.Detail = strings.TrimSpace(strings.Join([]string{e.Reason, objects(e), e.Message}, " "))
		switch e.Kind {
		case audit.RoundOpened:
			round(*e.Round).Opened = e.Time
		case audit.RoundClosed:
			rr := round(*e.Round)
			rr.Closed, rr.Status = e.Time, "closed"
		case audit.RoundAborted:
			rr := round(*e.Round)
			rr.Closed, rr.Status = e.Time, "aborted: "+e.Reason
			m.Denials = append(m.Denials, ev)
		case audit.RoundRefused:
			round(*e.Round).Refused = append(round(*e.Round).Refused, e.Actor.ID)
			m.Denials = append(m.Denials, ev)
		case audit.SecAggDropout:
			round(*e.Round).Dropouts++
			m.Denials = append(m.Denials, ev)
		case audit.DPSpendKind:
			rr := round(*e.Round)
			rr.Participants = append(rr.Participants, e.DP.Site)
			s := site(e.DP.Site)
			s.Spends++
			s.Epsilon, s.Cap = fnum(e.DP.EpsilonCumulative), fnum(e.DP.EpsilonCap)
		case audit.AggregateProduced:
			round(*e.Round).Aggregate = objects(e)
		case audit.SiteAdded, audit.SiteEnrolled:
			if site(e.Site.ID).Enrolled == "" {
				site(e.Site.ID).Enrolled = e.Time
			}
		case audit.SiteRevoked:
			site(e.Site.ID).Revoked = e.Time
		case audit.ModelPublished, audit.ModelWithdrawn:
			m.Models = append(m.Models, ev)
		case audit.AccessDenied, audit.UpdateRejected:
			m.Denials = append(m.Denials, ev)
		case audit.ReviewPerformed, audit.ExportPerformed:
			m.Reviews = append(m.Reviews, ev)
		}
	}
	for _, rr := range rounds {
		m.Rounds = append(m.Rounds, *rr)
	}
	sort.Slice(m.Rounds, func(i, j int) bool { return m.Rounds[i].Round < m.Rounds[j].Round })
	for _, s := range sites {
		m.Sites = append(m.Sites, *s)
	}
	sort.Slice(m.Sites, func(i, j int) bool { return m.Sites[i].ID < m.Sites[j].ID })
	var ids []string
	for id := range r.Ledger {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		for _, p := range r.Ledger[id] {
			lr := ledgerRow{Site: id, Entry: p.Entry, Round: p.Round, Time: p.Time, Epsilon: fnum(p.EpsilonCumulative), Cap: fnum(p.EpsilonCap), Recomputed: "not recomputed"}
			if p.EpsilonRecomputed != nil {
				lr.Recomputed = fnum(*p.EpsilonRecomputed)
			}
			m.Ledger = append(m.Ledger, lr)
		}
	}
	m.Chart = chart(r.Ledger, ids)
	return m
}

// mdCell escapes a Markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	if s == "" {
		return "—"
	}
	return s
}

func mdTable(w io.Writer, header []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat(" --- |", len(header)))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = mdCell(c)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}

func verdict(ok bool) string {
	if ok {
		return "VERIFIED"
	}
	return "FAILED VERIFICATION"
}

func renderMarkdown(w io.Writer, m *model) error {
	fmt.Fprintf(w, "# Audit report\n\n**%s** — %d entries; newest checkpoint: size %d, root `%s`; cosigned by %s (quorum %d); keys from the %s policy.\n\n",
		verdict(m.OK), m.Entries, m.TreeSize, m.Root, mdCell(m.Cosigners), m.Quorum, m.PolicySource)
	if len(m.Problems) > 0 {
		fmt.Fprintf(w, "## Problems\n\n")
		for _, p := range m.Problems {
			fmt.Fprintf(w, "- %s\n", mdCell(p))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "## Rounds\n\n")
	var rows [][]string
	for _, r := range m.Rounds {
		rows = append(rows, []string{fmt.Sprint(r.Round), r.Opened, r.Closed, r.Status, strings.Join(r.Participants, ", "), strings.Join(r.Refused, ", "), fmt.Sprint(r.Dropouts), r.Aggregate})
	}
	mdTable(w, []string{"round", "opened", "closed", "status", "participants", "refused", "drop-outs", "aggregate"}, rows)
	fmt.Fprintf(w, "## Participants\n\n")
	rows = nil
	for _, s := range m.Sites {
		rows = append(rows, []string{s.ID, s.Enrolled, s.Revoked, fmt.Sprint(s.Spends), s.Epsilon, s.Cap})
	}
	mdTable(w, []string{"site", "enrolled", "revoked", "spends", "cumulative ε", "ε cap"}, rows)
	fmt.Fprintf(w, "## Privacy ledger\n\n")
	rows = nil
	for _, l := range m.Ledger {
		rows = append(rows, []string{l.Site, fmt.Sprint(l.Entry), fmt.Sprint(l.Round), l.Time, l.Epsilon, l.Recomputed, l.Cap})
	}
	mdTable(w, []string{"site", "entry", "round", "time", "cumulative ε (recorded)", "cumulative ε (recomputed)", "ε cap"}, rows)
	for _, sec := range []struct {
		title string
		rows  []eventRow
	}{{"Published models", m.Models}, {"Denials and refusals", m.Denials}, {"Reviews and exports", m.Reviews}} {
		fmt.Fprintf(w, "## %s\n\n", sec.title)
		rows = nil
		for _, e := range sec.rows {
			rows = append(rows, []string{fmt.Sprint(e.Entry), e.Time, e.Kind, e.Actor, e.Outcome, e.Detail})
		}
		mdTable(w, []string{"entry", "time", "kind", "actor", "outcome", "detail"}, rows)
	}
	fmt.Fprintf(w, "## Anomalies\n\n")
	if len(m.Notes) == 0 {
		fmt.Fprintf(w, "None.\n")
	}
	for _, n := range m.Notes {
		fmt.Fprintf(w, "- %s\n", mdCell(n))
	}
	return nil
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}

// chart draws each site's cumulative ε against entry index as an inline
// SVG, with its cap as a dashed line.
func chart(ledger map[string][]audit.LedgerPoint, ids []string) template.HTML {
	if len(ids) == 0 {
		return ""
	}
	const W, H, left, right, top, bottom = 640.0, 320.0, 50.0, 150.0, 20.0, 40.0
	maxX, maxY := 1.0, 0.0
	for _, id := range ids {
		for _, p := range ledger[id] {
			maxX = math.Max(maxX, float64(p.Entry))
			maxY = math.Max(maxY, math.Max(p.EpsilonCumulative, p.EpsilonCap))
		}
	}
	if maxY <= 0 {
		maxY = 1
	}
	maxY *= 1.1
	x := func(v float64) float64 { return left + v/maxX*(W-left-right) }
	y := func(v float64) float64 { return H - bottom - v/maxY*(H-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" role="img" aria-label="cumulative epsilon per site">`, W, H, W, H)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#000"/>`, left, H-bottom, W-right, H-bottom)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#000"/>`, left, top, left, H-bottom)
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10" text-anchor="end">%s</text>`, left-4, y(v)+3, template.HTMLEscapeString(fnum(v)))
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="11" text-anchor="middle">audit entry index</text>`, (left+W-right)/2, H-8)
	fmt.Fprintf(&b, `<text x="12" y="%g" font-size="11" transform="rotate(-90 12 %g)" text-anchor="middle">cumulative ε</text>`, (top+H-bottom)/2, (top+H-bottom)/2)
	for k, id := range ids {
		c := palette[k%len(palette)]
		var pts []string
		for _, p := range ledger[id] {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(p.Entry)), y(p.EpsilonCumulative)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		for _, p := range ledger[id] {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s entry %d: ε %s</title></circle>`, x(float64(p.Entry)), y(p.EpsilonCumulative), c,
				template.HTMLEscapeString(id), p.Entry, fnum(p.EpsilonCumulative))
		}
		last := ledger[id][len(ledger[id])-1]
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`, left, y(last.EpsilonCap), W-right, y(last.EpsilonCap), c)
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="11" fill="%s">%s (cap %s)</text>`, W-right+8, top+14*float64(k+1), c, template.HTMLEscapeString(id), fnum(last.EpsilonCap))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var htmlTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Audit report</title>
<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}.ok{color:#1a7f37}.bad{color:#b00020}code{font-size:90%}</style>
</head><body>
<h1>Audit report</h1>
<p class="{{if .OK}}ok{{else}}bad{{end}}"><strong>{{if .OK}}VERIFIED{{else}}FAILED VERIFICATION{{end}}</strong> — {{.Entries}} entries; newest checkpoint: size {{.TreeSize}}, root <code>{{.Root}}</code>; cosigned by {{or .Cosigners "no witness"}} (quorum {{.Quorum}}); keys from the {{.PolicySource}} policy.</p>
{{if .Problems}}<h2>Problems</h2><ul>{{range .Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
<h2>Rounds</h2>
<table><tr><th>round</th><th>opened</th><th>closed</th><th>status</th><th>participants</th><th>refused</th><th>drop-outs</th><th>aggregate</th></tr>
{{range .Rounds}}<tr><td>{{.Round}}</td><td>{{.Opened}}</td><td>{{.Closed}}</td><td>{{.Status}}</td><td>{{range $i, $p := .Participants}}{{if $i}}, {{end}}{{$p}}{{end}}</td><td>{{range $i, $p := .Refused}}{{if $i}}, {{end}}{{$p}}{{end}}</td><td>{{.Dropouts}}</td><td>{{.Aggregate}}</td></tr>
{{end}}</table>
<h2>Participants</h2>
<table><tr><th>site</th><th>enrolled</th><th>revoked</th><th>spends</th><th>cumulative ε</th><th>ε cap</th></tr>
{{range .Sites}}<tr><td>{{.ID}}</td><td>{{.Enrolled}}</td><td>{{.Revoked}}</td><td>{{.Spends}}</td><td>{{.Epsilon}}</td><td>{{.Cap}}</td></tr>
{{end}}</table>
<h2>Privacy ledger</h2>
{{.Chart}}
<table><tr><th>site</th><th>entry</th><th>round</th><th>time</th><th>cumulative ε (recorded)</th><th>cumulative ε (recomputed)</th><th>ε cap</th></tr>
{{range .Ledger}}<tr><td>{{.Site}}</td><td>{{.Entry}}</td><td>{{.Round}}</td><td>{{.Time}}</td><td>{{.Epsilon}}</td><td>{{.Recomputed}}</td><td>{{.Cap}}</td></tr>
{{end}}</table>
{{define "events"}}<table><tr><th>entry</th><th>time</th><th>kind</th><th>actor</th><th>outcome</th><th>detail</th></tr>
{{range .}}<tr><td>{{.Entry}}</td><td>{{.Time}}</td><td>{{.Kind}}</td><td>{{.Actor}}</td><td>{{.Outcome}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>{{end}}
<h2>Published models</h2>
{{template "events" .Models}}
<h2>Denials and refusals</h2>
{{template "events" .Denials}}
<h2>Reviews and exports</h2>
{{template "events" .Reviews}}
<h2>Anomalies</h2>
{{if .Notes}}<ul>{{range .Notes}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>None.</p>{{end}}
</body></html>
`))

func renderHTML(w io.Writer, m *model) error { return htmlTmpl.Execute(w, m) }

// csvSafe keeps spreadsheet programs from reading a cell as a formula
// (OWASP CSV injection guidance): text starting with = + - @ or a control
// character gets a leading apostrophe.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func renderCSV(w io.Writer, r *audit.Result) error {
	cw := csv.NewWriter(w)
	header := []string{"entry", "time", "kind", "federation", "round", "actor", "auth", "outcome", "reason", "site", "epsilon_cumulative", "epsilon_recomputed", "epsilon_cap", "objects", "message"}
	if err := cw.Write(header); err != nil {
		return err
	}
	recomputed := map[int64]string{}
	for _, pts := range r.Ledger {
		for _, p := range pts {
			if p.EpsilonRecomputed != nil {
				recomputed[p.Entry] = strconv.FormatFloat(*p.EpsilonRecomputed, 'g', -1, 64)
			}
		}
	}
	for i, e := range r.Parsed {
		if e == nil {
			continue
		}
		row := []string{strconv.Itoa(i), e.Time, string(e.Kind), e.Federation, "", e.Actor.ID, e.Actor.Auth, string(e.Outcome), csvSafe(e.Reason), "", "", "", "", csvSafe(objects(e)), csvSafe(e.Message)}
		if e.Round != nil {
			row[4] = strconv.FormatUint(*e.Round, 10)
		}
		if e.Site != nil {
			row[9] = e.Site.ID
		}
		if e.DP != nil {
			row[9] = e.DP.Site
			row[10] = strconv.FormatFloat(e.DP.EpsilonCumulative, 'g', -1, 64)
			row[11] = recomputed[int64(i)]
			row[12] = strconv.FormatFloat(e.DP.EpsilonCap, 'g', -1, 64)
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
