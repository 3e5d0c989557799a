package experiments

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labctl/labctl/internal/units"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"google.golang.org/protobuf/proto"
)

// An experiment declares its parameters as a struct, one field each, and
// reads them as fields (As); the spec's parameter list is made from the
// struct (Declare), so the two cannot disagree. A field is a parameter when
// it has a param tag:
//
//	Size  experiments.Size `param:"size" min:"1" max:"1MiB" help:"bytes per request"`
//	Model string           `param:"model" choices:"blocking,epoll" help:"..."`
//
// The kind follows from the field's type: int, time.Duration, Size, bool,
// string (an enum with choices, free text without), or a slice of one of
// them (a comma-separated list). min and max are written as values are;
// the default is the field's value in the struct Declare is given. Struct
// fields without a tag are groups of parameters many experiments share
// (Timing, Rounds), flattened where they are embedded, so that a shared
// parameter has one name, help and bounds everywhere, and each experiment
// its own default.

// Size is a byte count parameter, written 64, 4KiB or 1MiB.
type Size int64

func (s Size) String() string { return units.FormatSize(int64(s)) }

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// kindOf is the parameter kind of a Go type, or 0 for none.
func kindOf(t reflect.Type, choices bool) experimentv1.ParamKind {
	switch {
	case t == durationType:
		return experimentv1.ParamKind_PARAM_KIND_DURATION
	case t == sizeType:
		return experimentv1.ParamKind_PARAM_KIND_SIZE
	case t.Kind() == reflect.Int:
		return experimentv1.ParamKind_PARAM_KIND_INT
	case t.Kind() == reflect.Bool:
		return experimentv1.ParamKind_PARAM_KIND_BOOL
	case t.Kind() == reflect.String && choices:
		return experimentv1.ParamKind_PARAM_KIND_ENUM
	case t.Kind() == reflect.String:
		return experimentv1.ParamKind_PARAM_KIND_STRING
	}
	return 0
}

// field is one parameter of a struct: where it is, and its spec.
type field struct {
	index []int
	spec  *experimentv1.ParamSpec
}

// fieldCache holds fields' answer per struct type: As and Set run for
// every step a run plans and every role an agent runs.
var fieldCache sync.Map // reflect.Type -> cachedFields

type cachedFields struct {
	fs  []field
	err error
}

// fields walks a parameter struct, groups flattened; the specs it returns
// are shared: copy one before changing it.
func fields(t reflect.Type) ([]field, error) {
	if c, ok := fieldCache.Load(t); ok {
		return c.(cachedFields).fs, c.(cachedFields).err
	}
	fs, err := walk(t)
	fieldCache.Store(t, cachedFields{fs, err})
	return fs, err
}

func walk(t reflect.Type) ([]field, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("parameters must be a struct, not %s", t)
	}
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, ok := f.Tag.Lookup("param")
		if !ok {
			if f.Type.Kind() != reflect.Struct || !f.IsExported() {
				return nil, fmt.Errorf("field %s of %s has no param tag", f.Name, t)
			}
			group, err := walk(f.Type)
			if err != nil {
				return nil, err
			}
			for _, g := range group {
				g.index = append([]int{i}, g.index...)
				out = append(out, g)
			}
			continue
		}
		ps := &experimentv1.ParamSpec{Name: name, Help: f.Tag.Get("help"), Min: f.Tag.Get("min"), Max: f.Tag.Get("max")}
		if c := f.Tag.Get("choices"); c != "" {
			ps.Choices = strings.Split(c, ",")
		}
		elem := f.Type
		if elem.Kind() == reflect.Slice {
			ps.Kind = experimentv1.ParamKind_PARAM_KIND_LIST
			elem = elem.Elem()
			ps.Element = kindOf(elem, len(ps.Choices) > 0)
			if ps.Element == 0 {
				return nil, fmt.Errorf("parameter %s: a list of %s is no parameter kind", name, elem)
			}
		} else if ps.Kind = kindOf(elem, len(ps.Choices) > 0); ps.Kind == 0 {
			return nil, fmt.Errorf("parameter %s: %s is no parameter kind", name, elem)
		}
		if name == "" || strings.ToLower(name) != name || strings.ContainsAny(name, " ,=.-") {
			return nil, fmt.Errorf("field %s: parameter name %q is not lower_snake_case", f.Name, name)
		}
		if ps.Help == "" {
			return nil, fmt.Errorf("parameter %s has no help", name)
		}
		out = append(out, field{index: []int{i}, spec: ps})
	}
	return out, nil
}

// Declare makes the parameter specs of a parameter struct, with the
// values of defaults as the defaults. A malformed struct is a bug in an
// experiment that every test of it meets, so it panics, as
// regexp.MustCompile does; NewRegistry checks the specs further.
func Declare(defaults any) []*experimentv1.ParamSpec {
	v := reflect.ValueOf(defaults)
	fs, err := fields(v.Type())
	if err != nil {
		panic("experiments: " + err.Error())
	}
	specs := make([]*experimentv1.ParamSpec, len(fs))
	for i, f := range fs {
		ps := proto.CloneOf(f.spec)
		ps.Default = format(v.FieldByIndex(f.index))
		specs[i] = ps
	}
	return specs
}

// format writes a field's value as a parameter's text.
func format(v reflect.Value) string {
	if v.Kind() == reflect.Slice {
		items := make([]string, v.Len())
		for i := range items {
			items[i] = format(v.Index(i))
		}
		return strings.Join(items, ",")
	}
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Type() == sizeType:
		return units.FormatSize(v.Int())
	case v.Kind() == reflect.Int:
		return strconv.FormatInt(v.Int(), 10)
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool())
	}
	return v.String()
}

// parse reads one scalar value (already validated) into v.
func parse(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		v.SetInt(int64(d))
		return err
	case v.Type() == sizeType:
		n, _, err := units.ParseSize(s)
		v.SetInt(n)
		return err
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		v.SetInt(int64(n))
		return err
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		v.SetBool(b)
		return err
	}
	v.SetString(s)
	return nil
}

// As reads validated parameters into the experiment's parameter struct T.
// A T that does not match the spec the parameters were validated against
// (a field the spec lacks, or of another kind) is a bug NewRegistry finds
// by planning each experiment's steps once, so it panics.
func As[T any](p Params) T {
	var out T
	if err := p.decode(reflect.ValueOf(&out).Elem()); err != nil {
		panic(fmt.Sprintf("experiments: %s: %v", p.spec.GetName(), err))
	}
	return out
}

func (p Params) decode(v reflect.Value) error {
	fs, err := fields(v.Type())
	if err != nil {
		return err
	}
	for _, f := range fs {
		ps := find(p.spec, f.spec.GetName())
		if ps == nil {
			return fmt.Errorf("%s has no parameter %q", v.Type(), f.spec.GetName())
		}
		if ps.GetKind() != f.spec.GetKind() || ps.GetElement() != f.spec.GetElement() {
			return fmt.Errorf("parameter %s is a %v (%v) in the spec, a %v (%v) in %s", ps.GetName(), ps.GetKind(), ps.GetElement(), f.spec.GetKind(), f.spec.GetElement(), v.Type())
		}
		fv := v.FieldByIndex(f.index)
		text := p.values[ps.GetName()]
		if fv.Kind() != reflect.Slice {
			if err := parse(fv, text); err != nil {
				return fmt.Errorf("parameter %s: %w", ps.GetName(), err)
			}
			continue
		}
		items := splitList(text)
		fv.Set(reflect.MakeSlice(fv.Type(), len(items), len(items)))
		for i, item := range items {
			if err := parse(fv.Index(i), item); err != nil {
				return fmt.Errorf("parameter %s: %w", ps.GetName(), err)
			}
		}
	}
	return nil
}

// Set returns p with the values of a parameter struct, validated, as a
// step that runs one variant of a run's lists does.
func Set[T any](p Params, values T) (Params, error) {
	v := reflect.ValueOf(values)
	fs, err := fields(v.Type())
	if err != nil {
		return Params{}, err
	}
	m := make(map[string]string, len(fs))
	for _, f := range fs {
		m[f.spec.GetName()] = format(v.FieldByIndex(f.index))
	}
	return p.With(m)
}

// Groups of parameters many experiments share, with the same names and
// meanings everywhere.

// Timing is how long each step measures and warms up first.
type Timing struct {
	Duration time.Duration `param:"duration" min:"100ms" max:"10m" help:"measured time of each step (after warm-up)"`
	Warmup   time.Duration `param:"warmup" min:"0s" max:"1m" help:"time each step runs before measuring"`
}

// Repeats is how many times each variant runs; the spread across repeats
// is what a difference between variants is judged against.
type Repeats struct {
	Repeats int `param:"repeats" min:"1" max:"100" help:"times each variant runs; results report the spread across repeats"`
}

// Pinning pins the measuring threads of the client and server roles; -1
// leaves a thread to the scheduler.
type Pinning struct {
	ClientCPU int `param:"client_cpu" min:"-1" max:"4095" help:"pin the client's measuring thread to this CPU (-1: not pinned)"`
	ServerCPU int `param:"server_cpu" min:"-1" max:"4095" help:"pin the server's measuring thread to this CPU (-1: not pinned)"`
}

// Unpinned leaves both roles to the scheduler.
var Unpinned = Pinning{ClientCPU: -1, ServerCPU: -1}
