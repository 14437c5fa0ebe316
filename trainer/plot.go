package trainer

import (
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writePlot draws the training loss and, for a private run, ε spent over
// steps, one above the other, as a PNG.
func writePlot(path string, r *Report) error {
	loss := plot.New()
	loss.Title.Text = "training loss"
	if !r.Private {
		loss.Title.Text = "training loss (NON-PRIVATE baseline)"
	}
	loss.X.Label.Text = "step"
	loss.Y.Label.Text = "mean loss of the step's batch"
	var pts plotter.XYs
	for i, l := range r.TrainLoss {
		if !math.IsNaN(float64(l)) {
			pts = append(pts, plotter.XY{X: float64(i + 1), Y: float64(l)})
		}
	}
	if len(pts) > 0 {
		ln, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		loss.Add(ln)
	}
	plots := [][]*plot.Plot{{loss}}
	if r.Private && len(r.EpsilonCurve) > 0 {
		ep := plot.New()
		ep.Title.Text = "privacy spent by this run"
		ep.X.Label.Text = "step"
		ep.Y.Label.Text = "ε at δ=" + strconv.FormatFloat(r.Delta, 'g', -1, 64) + " (" + r.Accountant + ")"
		e := plotter.XYs{{X: 0, Y: 0}}
		for _, v := range r.EpsilonCurve {
			e = append(e, plotter.XY{X: float64(v.Step), Y: v.Epsilon})
		}
		ln, err := plotter.NewLine(e)
		if err != nil {
			return err
		}
		ep.Add(ln)
		plots = append(plots, []*plot.Plot{ep})
	}
	img := vgimg.New(8*vg.Inch, vg.Length(4*len(plots))*vg.Inch)
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadX: vg.Points(4), PadY: vg.Points(8)}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
