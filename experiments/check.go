package experiments

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/topologies/examples"
)

// exampleLab is an example topology's plan, for checks.
type exampleLab struct {
	name string
	plan *topologies.Plan
}

// exampleLabs plans the embedded example topologies.
func exampleLabs() ([]exampleLab, error) {
	var out []exampleLab
	for _, name := range examples.Names() {
		plan, err := examples.Plan(name)
		if err != nil {
			return nil, err
		}
		out = append(out, exampleLab{name, plan})
	}
	return out, nil
}

// check is NewRegistry's test of one experiment, planned on labs.
func check(e Experiment, labs []exampleLab) error {
	spec := e.Spec()
	if spec.GetName() == "" || spec.GetSummary() == "" {
		return errors.New("a spec needs a name and a summary")
	}
	roles := spec.GetRoles()
	if len(roles) == 0 {
		return errors.New("a spec needs at least one role")
	}
	var errs []error
	seen := map[string]bool{}
	for _, ps := range spec.GetParams() {
		if seen[ps.GetName()] {
			errs = append(errs, fmt.Errorf("two parameters named %s", ps.GetName()))
		}
		seen[ps.GetName()] = true
		if ps.GetHelp() == "" {
			errs = append(errs, fmt.Errorf("parameter %s has no help", ps.GetName()))
		}
		for _, bound := range []string{ps.GetMin(), ps.GetMax()} {
			if bound == "" {
				continue
			}
			kind := ps.GetKind()
			if kind == experimentv1.ParamKind_PARAM_KIND_LIST {
				kind = ps.GetElement()
			}
			if _, err := parseNumber(kind, bound); err != nil {
				errs = append(errs, fmt.Errorf("parameter %s: bound %q: %w", ps.GetName(), bound, err))
			}
		}
	}
	defaults, err := Validate(spec, nil)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("defaults: %w", err))...)
	}
	// One repeat plans every variant once, which is all the check needs.
	if defaults.Has("repeats") {
		if defaults, err = defaults.With(map[string]string{"repeats": "1"}); err != nil {
			return err
		}
	}
	errs = append(errs, checkFigures(e, roles)...)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Plan the defaults on every example lab that can host them: an example
	// that has no path the experiment needs refuses it, which is no bug;
	// refused parameters, unknown roles and panics are.
	planned := map[string]bool{}
	var variants []string
	var refusals []string
	for _, ex := range labs {
		name, plan := ex.name, ex.plan
		lab, err := Place(plan, roles, nil)
		if err != nil {
			refusals = append(refusals, name+": "+err.Error())
			continue
		}
		steps, err := dryRun(e, defaults, lab)
		var pe ParamErrors
		var one *ParamError
		switch {
		case errors.As(err, &pe), errors.As(err, &one), errors.Is(err, errPanic):
			return fmt.Errorf("planning on example %s: %w", name, err)
		case err != nil:
			refusals = append(refusals, name+": "+err.Error())
			continue
		}
		if len(steps) == 0 {
			return fmt.Errorf("planning on example %s: no steps", name)
		}
		for _, st := range steps {
			if st.GetVariant() == "" {
				return fmt.Errorf("planning on example %s: a step has no variant", name)
			}
			variants = append(variants, st.GetVariant())
			if _, err := Validate(spec, st.GetParams()); err != nil {
				return fmt.Errorf("planning on example %s: step %s: %w", name, st.GetVariant(), err)
			}
			for _, ra := range st.GetRoles() {
				if !slices.Contains(roles, ra.GetRole()) {
					return fmt.Errorf("planning on example %s: step %s places role %q, which the spec does not list (roles: %s)",
						name, st.GetVariant(), ra.GetRole(), strings.Join(roles, ", "))
				}
				if _, ok := plan.Node(ra.GetNode()); !ok {
					return fmt.Errorf("planning on example %s: step %s places role %s on %q, no node of the lab", name, st.GetVariant(), ra.GetRole(), ra.GetNode())
				}
				planned[ra.GetRole()] = true
			}
		}
	}
	if len(planned) == 0 {
		return fmt.Errorf("no example lab can host a run with the defaults (%s)", strings.Join(refusals, "; "))
	}
	for _, r := range roles {
		if !planned[r] {
			return fmt.Errorf("role %s of the spec is placed by no step", r)
		}
	}
	if f, ok := e.(Figured); ok {
		for _, fig := range f.Figures() {
			re := regexp.MustCompile(fig.Variants) // checkFigures compiled it
			if fig.Variants != "" && !slices.ContainsFunc(variants, re.MatchString) {
				return fmt.Errorf("figure %q: variants %q match none of the default run's (%s, ...)", fig.Title, fig.Variants, variants[0])
			}
		}
	}
	return nil
}

// checkFigures checks what an experiment's figures name: roles of the
// spec, patterns that compile, with the groups their kind needs.
func checkFigures(e Experiment, roles []string) []error {
	f, ok := e.(Figured)
	if !ok {
		return nil
	}
	var errs []error
	for _, fig := range f.Figures() {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("figure %q: "+format, append([]any{fig.Title}, args...)...))
		}
		re, err := regexp.Compile(fig.Variants)
		if err != nil {
			bad("variants: %v", err)
			continue
		}
		metrics := slices.Clone(fig.Metrics)
		if fig.X != "" {
			metrics = append(metrics, fig.X)
		}
		for _, m := range metrics {
			if role, _, _ := strings.Cut(m, "."); !slices.Contains(roles, role) {
				bad("metric %q: no role %q (roles: %s)", m, role, strings.Join(roles, ", "))
			}
		}
		switch fig.Kind {
		case LatencyCDF:
			if !slices.Contains(roles, fig.Role) {
				bad("no role %q (roles: %s)", fig.Role, strings.Join(roles, ", "))
			}
		case Bars, Sweep, Fit:
			if len(fig.Metrics) == 0 {
				bad("no metrics")
			}
			if fig.Kind != Bars && re.SubexpIndex("x") < 0 {
				bad("variants %q has no group (?P<x>...)", fig.Variants)
			}
		default:
			bad("unknown kind %d", fig.Kind)
		}
	}
	return errs
}

var errPanic = errors.New("panic")

// dryRun plans a run and judges it with no steps, turning a panic (As on
// a struct the spec does not match) into an error.
func dryRun(e Experiment, p Params, lab Lab) (steps []*experimentv1.Step, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %v", errPanic, v)
		}
	}()
	steps, err = e.Steps(p, lab)
	if err != nil {
		return nil, err
	}
	e.Judge(p, nil)
	return steps, nil
}
