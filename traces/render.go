package traces

import (
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// RenderOptions configures Render.
type RenderOptions struct {
	Width int // columns per line (the terminal's width); 0 means 100
}

// Column limits of the waterfall.
const (
	defaultWidth      = 100
	maxNameWidth      = 40
	maxSvcWidth       = 24
	durWidth          = 7
	minBarWidth       = 10
	barWidthWithAttrs = 20
	minAttrWidth      = 12
	maxValueLen       = 24 // runes of one attribute value
)

// orphanMark prefixes a span whose parent is not in the trace.
const orphanMark = "^ "

// Render writes a terminal waterfall of a trace: one line per span in tree
// order (parent before children, siblings by start time), indented by depth,
// with its service (and node), duration, a bar on the trace's common time
// axis, and its key attributes (labctl.*, network.*, server.*; the labctl.
// prefix is dropped) and error status. Spans whose parent is missing (not
// exported yet, or its process died) are shown at top level, marked "^".
func Render(w io.Writer, rss []*tracepb.ResourceSpans, opts RenderOptions) error {
	items := collect(rss)
	if len(items) == 0 {
		_, err := io.WriteString(w, "no spans\n")
		return err
	}
	rows := treeOrder(items)
	width := opts.Width
	if width <= 0 {
		width = defaultWidth
	}

	t0, t1 := uint64(math.MaxUint64), uint64(0)
	for _, it := range items {
		t0 = min(t0, it.span.StartTimeUnixNano)
		t1 = max(t1, it.span.StartTimeUnixNano, it.span.EndTimeUnixNano)
	}
	total := max(t1-t0, 1)

	nameW, svcW, attrMax := len("span"), len("service"), 0
	for i := range rows {
		r := &rows[i]
		r.label = strings.Repeat("  ", r.depth) + r.span.Name
		if r.orphan {
			r.label = orphanMark + r.label
		}
		r.attrs = keyAttributes(r.span)
		nameW = max(nameW, runes(r.label))
		svcW = max(svcW, runes(r.service))
		attrMax = max(attrMax, runes(r.attrs))
	}
	nameW, svcW = min(nameW, maxNameWidth), min(svcW, maxSvcWidth)
	// name, service, duration, then the bar between two '|'.
	avail := width - (nameW + 1 + svcW + 1 + durWidth + 1 + 2)
	// Beside attributes the bar keeps a third of the room, at least
	// barWidthWithAttrs columns; attributes, after a space, get the rest:
	// they say more than a finer bar. A column too narrow to show one
	// attribute is left out, and the bar takes all.
	attrW := min(attrMax, avail-1-max(barWidthWithAttrs, avail/3))
	if attrW < minAttrWidth {
		attrW = 0
	}
	barW := avail
	if attrW > 0 {
		barW -= attrW + 1
	}
	barW = max(barW, minBarWidth)

	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d spans from %s, %s, started %s\n",
		traceIDs(items), len(items), strings.Join(services(items), ", "),
		formatDuration(time.Duration(total)),
		time.Unix(0, int64(t0)).UTC().Format("2006-01-02 15:04:05.000 UTC"))
	axisEnd := formatDuration(time.Duration(total))
	axis := "0" + strings.Repeat(" ", max(barW-1-runes(axisEnd), 1)) + axisEnd
	line := pad("span", nameW) + " " + pad("service", svcW) + " " + padLeft("time", durWidth) + " |" + pad(axis, barW) + "|"
	if attrW > 0 {
		line += " attributes"
	}
	b.WriteString(line + "\n")

	orphans := false
	for _, r := range rows {
		s := r.span
		start := s.StartTimeUnixNano
		end := max(s.EndTimeUnixNano, start)
		from := int((start - t0) * uint64(barW) / total)
		to := int(((end-t0)*uint64(barW) + total - 1) / total)
		from = min(from, barW-1)
		to = min(max(to, from+1), barW)
		bar := strings.Repeat(" ", from) + strings.Repeat("█", to-from) + strings.Repeat(" ", barW-to)
		line := pad(trim(r.label, nameW), nameW) + " " + pad(trim(r.service, svcW), svcW) + " " +
			padLeft(formatDuration(time.Duration(end-start)), durWidth) + " |" + bar + "|"
		if attrW > 0 && r.attrs != "" {
			line += " " + trim(r.attrs, attrW)
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
		orphans = orphans || r.orphan
	}
	if orphans {
		b.WriteString(strings.TrimSpace(orphanMark) + " parent span not in this trace: not exported yet, or its process ended before exporting\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// item is one span with the service that sent it.
type item struct {
	span    *tracepb.Span
	service string // service.name, with "/node" for agents
}

// row is an item placed in the waterfall.
type row struct {
	item
	depth  int
	orphan bool
	label  string
	attrs  string
}

// collect flattens the resource and scope levels; a span id seen twice is
// kept once.
func collect(rss []*tracepb.ResourceSpans) []item {
	var items []item
	seen := map[string]bool{}
	for _, rs := range rss {
		svc := serviceLabel(rs.GetResource())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				id := hex.EncodeToString(s.GetSpanId())
				if seen[id] {
					continue
				}
				seen[id] = true
				items = append(items, item{span: s, service: svc})
			}
		}
	}
	return items
}

func treeOrder(items []item) []row {
	byID := make(map[string]int, len(items))
	for i, it := range items {
		byID[hex.EncodeToString(it.span.SpanId)] = i
	}
	children := map[int][]int{}
	var tops []int
	orphan := map[int]bool{}
	for i, it := range items {
		if len(it.span.ParentSpanId) == 0 {
			tops = append(tops, i)
			continue
		}
		p, ok := byID[hex.EncodeToString(it.span.ParentSpanId)]
		if !ok || p == i {
			tops = append(tops, i)
			orphan[i] = true
			continue
		}
		children[p] = append(children[p], i)
	}
	byStart := func(ids []int) {
		sort.SliceStable(ids, func(a, b int) bool {
			x, y := items[ids[a]].span, items[ids[b]].span
			if x.StartTimeUnixNano != y.StartTimeUnixNano {
				return x.StartTimeUnixNano < y.StartTimeUnixNano
			}
			return x.Name < y.Name
		})
	}
	var rows []row
	visited := make([]bool, len(items))
	var walk func(i, depth int)
	walk = func(i, depth int) {
		if visited[i] {
			return
		}
		visited[i] = true
		rows = append(rows, row{item: items[i], depth: depth, orphan: orphan[i]})
		kids := children[i]
		byStart(kids)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	byStart(tops)
	for _, i := range tops {
		walk(i, 0)
	}
	// Spans in a parent cycle (only malformed input has them) are not
	// reachable from a top span; show them rather than drop them.
	var rest []int
	for i := range items {
		if !visited[i] {
			rest = append(rest, i)
		}
	}
	byStart(rest)
	for _, i := range rest {
		if !visited[i] {
			orphan[i] = true
			walk(i, 0)
		}
	}
	return rows
}

func serviceLabel(res *resourcepb.Resource) string {
	var svc, node string
	for _, kv := range res.GetAttributes() {
		switch kv.Key {
		case "service.name":
			svc = kv.GetValue().GetStringValue()
		case string(KeyNode):
			node = kv.GetValue().GetStringValue()
		}
	}
	if svc == "" {
		svc = "?"
	}
	if node != "" {
		svc += "/" + node
	}
	return svc
}

func services(items []item) []string {
	seen := map[string]bool{}
	var out []string
	for _, it := range items {
		if !seen[it.service] {
			seen[it.service] = true
			out = append(out, it.service)
		}
	}
	sort.Strings(out)
	return out
}

func traceIDs(items []item) string {
	seen := map[string]bool{}
	var ids []string
	for _, it := range items {
		id := hex.EncodeToString(it.span.TraceId)
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) == 1 {
		return "trace " + ids[0]
	}
	return "traces " + strings.Join(ids, ", ")
}

// keyAttributes is the attribute column: the error status, then labctl.*,
// network.* and server.* attributes in key order.
func keyAttributes(s *tracepb.Span) string {
	var parts []string
	if s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		part := "error"
		if msg := s.GetStatus().GetMessage(); msg != "" {
			part += "=" + formatString(msg)
		}
		parts = append(parts, part)
	}
	var kvs []*commonpb.KeyValue
	for _, kv := range s.GetAttributes() {
		if strings.HasPrefix(kv.Key, "labctl.") || strings.HasPrefix(kv.Key, "network.") || strings.HasPrefix(kv.Key, "server.") {
			kvs = append(kvs, kv)
		}
	}
	sort.SliceStable(kvs, func(a, b int) bool { return kvs[a].Key < kvs[b].Key })
	for _, kv := range kvs {
		parts = append(parts, strings.TrimPrefix(kv.Key, "labctl.")+"="+trim(formatValue(kv.GetValue()), maxValueLen))
	}
	return strings.Join(parts, " ")
}

func formatValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return formatString(x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return formatFloat(x.DoubleValue)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		elems := make([]string, len(x.ArrayValue.GetValues()))
		for i, e := range x.ArrayValue.GetValues() {
			elems[i] = formatValue(e)
		}
		return "[" + strings.Join(elems, ",") + "]"
	case *commonpb.AnyValue_KvlistValue:
		elems := make([]string, len(x.KvlistValue.GetValues()))
		for i, kv := range x.KvlistValue.GetValues() {
			elems[i] = kv.Key + "=" + formatValue(kv.GetValue())
		}
		return "{" + strings.Join(elems, ",") + "}"
	default:
		return ""
	}
}

// formatString quotes a string only when it would not read as one word.
func formatString(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return strconv.Quote(s)
	}
	return s
}

// formatFloat shows large values (nanoseconds, bytes, rates) as integers and
// small ones with four significant digits.
func formatFloat(f float64) string {
	if math.Abs(f) >= 1000 || f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 4, 64)
}

// formatDuration prints three significant digits: 850ns, 12.3µs, 1.23s,
// 2m05s.
func formatDuration(d time.Duration) string {
	sig := func(v float64, unit string) string {
		switch {
		case v >= 99.95:
			return strconv.FormatFloat(v, 'f', 0, 64) + unit
		case v >= 9.995:
			return strconv.FormatFloat(v, 'f', 1, 64) + unit
		default:
			return strconv.FormatFloat(v, 'f', 2, 64) + unit
		}
	}
	switch {
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond:
		return sig(float64(d)/1e3, "µs")
	case d < time.Second:
		return sig(float64(d)/1e6, "ms")
	case d < time.Minute:
		return sig(d.Seconds(), "s")
	default:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	}
}

func runes(s string) int { return utf8.RuneCountInString(s) }

// trim shortens s to n runes, ending in "…" when it cut.
func trim(s string, n int) string {
	if runes(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func pad(s string, n int) string     { return s + strings.Repeat(" ", max(n-runes(s), 0)) }
func padLeft(s string, n int) string { return strings.Repeat(" ", max(n-runes(s), 0)) + s }
