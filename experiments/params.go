package experiments

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Params are an experiment's parameters after validation: every parameter of
// the spec has a value (given or default), every value has the right kind
// and lies within its bounds. Values stay text, as typed, so that they
// travel and are stored unchanged; the accessors read them.
type Params struct {
	spec   *experimentv1.ExperimentSpec
	values map[string]string
}

// ParamError is one refused parameter.
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return "parameter " + e.Param + ": " + e.Msg }

// ParamErrors lists every refused parameter of a request.
type ParamErrors []*ParamError

func (l ParamErrors) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// maxList bounds list parameters, so a request cannot ask for an unbounded
// number of variants.
const maxList = 64

// Validate checks given against spec and fills in defaults.
func Validate(spec *experimentv1.ExperimentSpec, given map[string]string) (Params, error) {
	p := Params{spec: spec, values: map[string]string{}}
	var errs ParamErrors
	names := make([]string, 0, len(given))
	for name := range given {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if find(spec, name) == nil {
			known := make([]string, len(spec.GetParams()))
			for i, ps := range spec.GetParams() {
				known[i] = ps.GetName()
			}
			errs = append(errs, &ParamError{name, fmt.Sprintf("%s has no such parameter (it has %s)", spec.GetName(), strings.Join(known, ", "))})
		}
	}
	for _, ps := range spec.GetParams() {
		v, ok := given[ps.GetName()]
		if !ok {
			v = ps.GetDefault()
		}
		if err := checkValue(ps, v); err != nil {
			errs = append(errs, &ParamError{ps.GetName(), err.Error()})
			continue
		}
		p.values[ps.GetName()] = v
	}
	if len(errs) > 0 {
		return Params{}, errs
	}
	return p, nil
}

func find(spec *experimentv1.ExperimentSpec, name string) *experimentv1.ParamSpec {
	for _, ps := range spec.GetParams() {
		if ps.GetName() == name {
			return ps
		}
	}
	return nil
}

func checkValue(ps *experimentv1.ParamSpec, v string) error {
	if ps.GetKind() != experimentv1.ParamKind_PARAM_KIND_LIST {
		return checkScalar(ps.GetKind(), ps, v)
	}
	items := splitList(v)
	if len(items) == 0 {
		return fmt.Errorf("needs at least one value")
	}
	if len(items) > maxList {
		return fmt.Errorf("has %d values; at most %d are allowed", len(items), maxList)
	}
	for _, item := range items {
		if err := checkScalar(ps.GetElement(), ps, item); err != nil {
			return err
		}
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func checkScalar(kind experimentv1.ParamKind, ps *experimentv1.ParamSpec, v string) error {
	switch kind {
	case experimentv1.ParamKind_PARAM_KIND_INT, experimentv1.ParamKind_PARAM_KIND_DURATION, experimentv1.ParamKind_PARAM_KIND_SIZE:
		n, err := parseNumber(kind, v)
		if err != nil {
			return err
		}
		if ps.GetMin() != "" {
			if lo, _ := parseNumber(kind, ps.GetMin()); n < lo {
				return fmt.Errorf("%s is below the minimum %s", v, ps.GetMin())
			}
		}
		if ps.GetMax() != "" {
			if hi, _ := parseNumber(kind, ps.GetMax()); n > hi {
				return fmt.Errorf("%s is above the maximum %s", v, ps.GetMax())
			}
		}
	case experimentv1.ParamKind_PARAM_KIND_BOOL:
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("expected true or false, got %q", v)
		}
	case experimentv1.ParamKind_PARAM_KIND_ENUM:
		if !slices.Contains(ps.GetChoices(), v) {
			return fmt.Errorf("expected one of %s, got %q", strings.Join(ps.GetChoices(), ", "), v)
		}
	case experimentv1.ParamKind_PARAM_KIND_STRING:
		if len(v) > 256 {
			return fmt.Errorf("is longer than 256 characters")
		}
	default:
		return fmt.Errorf("has no valid kind (%v): a bug in the experiment's spec", kind)
	}
	return nil
}

// parseNumber reads ints, durations (as ns) and sizes (as bytes).
func parseNumber(kind experimentv1.ParamKind, v string) (int64, error) {
	switch kind {
	case experimentv1.ParamKind_PARAM_KIND_DURATION:
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("expected a duration such as 500ms or 10s, got %q", v)
		}
		return int64(d), nil
	case experimentv1.ParamKind_PARAM_KIND_SIZE:
		return ParseSize(v)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("expected an integer, got %q", v)
	}
	return n, nil
}

var sizeSuffixes = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"k", 1 << 10}, {"B", 1}}

// ParseSize reads a byte count: 64, 4K, 4KiB, 1M, 1MiB (binary multiples:
// message sizes in networking are powers of two).
func ParseSize(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, s := range sizeSuffixes {
		if strings.HasSuffix(v, s.suffix) {
			num, mult = strings.TrimSuffix(v, s.suffix), s.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("expected a size such as 64, 4KiB or 1MiB, got %q", v)
	}
	return n * mult, nil
}

// FormatSize writes a byte count the way ParseSize reads it.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// Map returns every parameter's value, defaults included.
func (p Params) Map() map[string]string {
	out := make(map[string]string, len(p.values))
	for k, v := range p.values {
		out[k] = v
	}
	return out
}

// With returns p with some values replaced, as a step that sets a variant's
// parameters does; the new values are validated like the originals.
func (p Params) With(values map[string]string) (Params, error) {
	merged := p.Map()
	for k, v := range values {
		merged[k] = v
	}
	return Validate(p.spec, merged)
}

// Has reports whether the spec declares parameter name.
func (p Params) Has(name string) bool { return find(p.spec, name) != nil }

func (p Params) raw(name string, kinds ...experimentv1.ParamKind) string {
	ps := find(p.spec, name)
	if ps == nil || !slices.Contains(kinds, ps.GetKind()) {
		panic(fmt.Sprintf("experiments: %s has no %v parameter %q", p.spec.GetName(), kinds, name))
	}
	return p.values[name]
}

// Int returns an int parameter.
func (p Params) Int(name string) int {
	n, _ := strconv.Atoi(p.raw(name, experimentv1.ParamKind_PARAM_KIND_INT))
	return n
}

// Duration returns a duration parameter.
func (p Params) Duration(name string) time.Duration {
	d, _ := time.ParseDuration(p.raw(name, experimentv1.ParamKind_PARAM_KIND_DURATION))
	return d
}

// Size returns a size parameter in bytes.
func (p Params) Size(name string) int {
	n, _ := ParseSize(p.raw(name, experimentv1.ParamKind_PARAM_KIND_SIZE))
	return int(n)
}

// Bool returns a bool parameter.
func (p Params) Bool(name string) bool {
	b, _ := strconv.ParseBool(p.raw(name, experimentv1.ParamKind_PARAM_KIND_BOOL))
	return b
}

// String returns a string or enum parameter.
func (p Params) String(name string) string {
	return p.raw(name, experimentv1.ParamKind_PARAM_KIND_STRING, experimentv1.ParamKind_PARAM_KIND_ENUM)
}

// List returns the elements of a list parameter, as text.
func (p Params) List(name string) []string {
	return splitList(p.raw(name, experimentv1.ParamKind_PARAM_KIND_LIST))
}

// Sizes returns the elements of a list of sizes, in bytes.
func (p Params) Sizes(name string) []int {
	var out []int
	for _, s := range p.List(name) {
		n, _ := ParseSize(s)
		out = append(out, int(n))
	}
	return out
}

// Ints returns the elements of a list of ints.
func (p Params) Ints(name string) []int {
	var out []int
	for _, s := range p.List(name) {
		n, _ := strconv.Atoi(s)
		out = append(out, n)
	}
	return out
}

// Durations returns the elements of a list of durations.
func (p Params) Durations(name string) []time.Duration {
	var out []time.Duration
	for _, s := range p.List(name) {
		d, _ := time.ParseDuration(s)
		out = append(out, d)
	}
	return out
}
