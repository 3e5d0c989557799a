package experiments

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labctl/labctl/internal/fault"
	"github.com/labctl/labctl/internal/units"
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

// FaultKind: a refused parameter is an invalid request.
func (e *ParamError) FaultKind() fault.Kind { return fault.Invalid }

// ParamErrors lists every refused parameter of a request.
type ParamErrors []*ParamError

// FaultKind: refused parameters are an invalid request.
func (l ParamErrors) FaultKind() fault.Kind { return fault.Invalid }

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
		n, _, err := units.ParseSize(v)
		return n, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("expected an integer, got %q", v)
	}
	return n, nil
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
