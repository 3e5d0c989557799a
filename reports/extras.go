package reports

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/labctl/labctl/experiments"
)

// packetPaths draws, for each variant whose packets were traced, the
// median time from stage to stage (the bar) and the p99 (the line's end):
// the "where the time goes" of docs/packet-path.md.
func packetPaths(runs []run) ([]*figure, error) {
	var out []*figure
	for _, r := range runs {
		for _, row := range r.R.GetSummary() {
			pp := row.GetPacketPath()
			if len(pp.GetStages()) == 0 {
				continue
			}
			p := newPlot("Where the time goes: "+r.name(row.GetVariant()), "time from the previous stage (µs)", "")
			n := len(pp.GetStages())
			names := make([]string, n)
			for i, st := range pp.GetStages() {
				y := float64(n - 1 - i)
				names[n-1-i] = st.GetFrom() + " → " + st.GetTo()
				p50, p99 := st.GetP50Ns()/1e3, st.GetP99Ns()/1e3
				chart, err := plotter.NewBarChart(plotter.Values{p50}, vg.Points(10))
				if err != nil {
					return nil, err
				}
				chart.Horizontal, chart.XMin, chart.Color = true, y, colour(0)
				chart.LineStyle.Width = 0
				p.Add(chart)
				eb, err := plotter.NewXErrorBars(spreadBars{XYs: plotter.XYs{{X: p50, Y: y}}, XErrors: plotter.XErrors{{Low: 0, High: math.Max(0, p99-p50)}}})
				if err != nil {
					return nil, err
				}
				eb.CapWidth = vg.Points(6)
				p.Add(eb)
			}
			p.NominalY(names...)
			p.X.Min = 0
			p.X.Max *= 1.05
			p.Y.Tick.Label.Font.Size = vg.Points(8)
			f := experiments.Figure{Title: p.Title.Text}
			text := fmt.Sprintf("%d sampled packets. Each bar is the median time between two stages over the packets that passed both; the line reaches their p99.", pp.GetPackets())
			if d := pp.GetDrops(); len(d) > 0 {
				var drops []string
				for _, x := range d {
					drops = append(drops, fmt.Sprintf("%d %s at %s (%s)", x.GetCount(), x.GetReason(), x.GetLocation(), x.GetNode()))
				}
				text += " Drops: " + strings.Join(drops, "; ") + "."
			}
			fig, err := finish(p, f, text, vg.Inch+vg.Length(n)*16)
			if err != nil {
				return nil, err
			}
			out = append(out, fig)
		}
	}
	return out, nil
}

// topology draws the nodes a run placed roles on, their interfaces and
// the links between them as the run's environment recorded them: two
// nodes are joined when they have addresses in one subnet.
func topology(r run) (*figure, error) {
	type node struct {
		name     string
		roles    []string
		prefixes []netip.Prefix
		ifaces   []string
	}
	var nodes []*node
	get := func(name string) *node {
		for _, n := range nodes {
			if n.name == name {
				return n
			}
		}
		n := &node{name: name}
		nodes = append(nodes, n)
		return n
	}
	for _, role := range slices.Sorted(maps.Keys(r.R.GetNodes())) {
		for _, name := range strings.Split(r.R.GetNodes()[role], "|") {
			n := get(name)
			n.roles = append(n.roles, role)
		}
	}
	for _, s := range r.R.GetSteps() {
		for _, rep := range s.GetReports() {
			env := rep.GetEnvironment()
			if env == nil {
				continue
			}
			n := get(env.GetNode())
			for _, iface := range env.GetInterfaces() {
				desc := iface.GetName()
				if iface.GetKind() != "" {
					desc += " (" + iface.GetKind() + ")"
				}
				if slices.Contains(n.ifaces, desc) {
					continue
				}
				n.ifaces = append(n.ifaces, desc)
				for _, a := range iface.GetAddresses() {
					if p, err := netip.ParsePrefix(a); err == nil && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
						n.prefixes = append(n.prefixes, p)
					}
				}
			}
		}
	}
	if len(nodes) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Topology: " + r.R.GetLab()
	p.HideAxes()
	pos := map[string]plotter.XY{}
	for i, n := range nodes {
		a := math.Pi - 2*math.Pi*float64(i)/float64(len(nodes))
		if len(nodes) == 2 {
			a = math.Pi * float64(1-i)
		}
		pos[n.name] = plotter.XY{X: math.Cos(a), Y: math.Sin(a) * 0.6}
	}
	var edges plotter.XYLabels
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			for _, pa := range a.prefixes {
				for _, pb := range b.prefixes {
					if pa.Masked() != pb.Masked() {
						continue
					}
					l, err := plotter.NewLine(plotter.XYs{pos[a.name], pos[b.name]})
					if err != nil {
						return nil, err
					}
					l.Color = colour(7)
					l.Width = vg.Points(2)
					p.Add(l)
					edges.XYs = append(edges.XYs, plotter.XY{X: (pos[a.name].X + pos[b.name].X) / 2, Y: (pos[a.name].Y+pos[b.name].Y)/2 + 0.05})
					edges.Labels = append(edges.Labels, pa.Masked().String())
				}
			}
		}
	}
	var pts plotter.XYs
	var labels plotter.XYLabels
	for _, n := range nodes {
		pts = append(pts, pos[n.name])
		text := n.name
		if len(n.roles) > 0 {
			text += " [" + strings.Join(n.roles, ", ") + "]"
		}
		for _, pr := range n.prefixes {
			text += "\n" + pr.String()
		}
		labels.XYs = append(labels.XYs, plotter.XY{X: pos[n.name].X, Y: pos[n.name].Y - 0.12})
		labels.Labels = append(labels.Labels, text)
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, err
	}
	sc.Shape = draw.CircleGlyph{}
	sc.Radius = vg.Points(10)
	sc.Color = colour(0)
	p.Add(sc)
	for _, l := range []plotter.XYLabels{labels, edges} {
		if len(l.XYs) == 0 {
			continue
		}
		lb, err := plotter.NewLabels(l)
		if err != nil {
			return nil, err
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].XAlign = draw.XCenter
			lb.TextStyle[i].YAlign = draw.YTop
		}
		p.Add(lb)
	}
	p.X.Min, p.X.Max = -1.5, 1.5
	p.Y.Min, p.Y.Max = -1.1, 1.0
	var ifaces []string
	for _, n := range nodes {
		if len(n.ifaces) > 0 {
			ifaces = append(ifaces, n.name+": "+strings.Join(n.ifaces, ", "))
		}
	}
	text := "The nodes the run placed roles on, joined where they share a subnet."
	if len(ifaces) > 0 {
		text += " Interfaces: " + strings.Join(ifaces, "; ") + "."
	}
	return finish(p, experiments.Figure{Title: p.Title.Text}, text, 3*vg.Inch)
}
