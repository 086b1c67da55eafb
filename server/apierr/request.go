package apierr

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// BoundOf returns the bound of a request field by its full protobuf name: n is the most bytes of a
// string or bytes field, or the most values of a repeated field; each is the most bytes of one value of
// a repeated string field. ok is false for a field without a bound.
type BoundOf func(name protoreflect.FullName) (n, each int, ok bool)

// CheckRequest refuses a request with a field beyond its bound, naming the field (with its path, e.g.
// "requests[3].entry_id"); a string, bytes or repeated field without a bound is refused too. Every
// handler of both APIs calls it first, before anything is logged.
func CheckRequest(m proto.Message, bound BoundOf) error {
	return checkMessage(m.ProtoReflect(), "", bound)
}

func checkMessage(m protoreflect.Message, path string, bound BoundOf) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := path + string(fd.Name())
		isMsg := fd.Kind() == protoreflect.MessageKind
		n, each, ok := bound(fd.FullName())
		if !ok && NeedsBound(fd) {
			err = fmt.Errorf("%s: %w: a field this server does not accept", name, ErrInvalidArgument)
			return false
		}
		switch {
		case fd.IsList():
			l := v.List()
			if l.Len() > n {
				err = fmt.Errorf("%s: %w: %d values, at most %d", name, ErrInvalidArgument, l.Len(), n)
				return false
			}
			for i := 0; i < l.Len() && err == nil; i++ {
				el := fmt.Sprintf("%s[%d]", name, i)
				if isMsg {
					err = checkMessage(l.Get(i).Message(), el+".", bound)
				} else {
					err = checkLen(el, fd, l.Get(i), each)
				}
			}
		case isMsg:
			err = checkMessage(v.Message(), name+".", bound)
		default:
			err = checkLen(name, fd, v, n)
		}
		return err == nil
	})
	return err
}

// NeedsBound reports whether fd must have a bound: strings, bytes and lists.
func NeedsBound(fd protoreflect.FieldDescriptor) bool {
	return fd.IsList() || fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind
}

// RequestFields calls f for every field of the requests of sd that needs a bound (NeedsBound), nested
// messages included, once each: what a service's table of bounds must cover.
func RequestFields(sd protoreflect.ServiceDescriptor, f func(protoreflect.FieldDescriptor)) {
	seen := map[protoreflect.FullName]bool{}
	for i := 0; i < sd.Methods().Len(); i++ {
		requestFields(sd.Methods().Get(i).Input(), seen, f)
	}
}

func requestFields(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool, f func(protoreflect.FieldDescriptor)) {
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		if NeedsBound(fd) {
			f(fd)
		}
		if fd.Kind() == protoreflect.MessageKind {
			requestFields(fd.Message(), seen, f)
		}
	}
}

// checkLen bounds a string or bytes value (other scalars need no bound).
func checkLen(name string, fd protoreflect.FieldDescriptor, v protoreflect.Value, n int) error {
	var l int
	switch fd.Kind() {
	case protoreflect.StringKind:
		l = len(v.String())
	case protoreflect.BytesKind:
		l = len(v.Bytes())
	default:
		return nil
	}
	if l > n {
		return fmt.Errorf("%s: %w: %d bytes, at most %d", name, ErrInvalidArgument, l, n)
	}
	return nil
}

// BoundsProblems lists what is wrong with a service's table of bounds, whose keys are names: a field of
// sd's requests without a bound, or with one of zero, and a bound that names no such field. Each API's
// tests keep its table complete with it.
func BoundsProblems(sd protoreflect.ServiceDescriptor, bound BoundOf, names []protoreflect.FullName) []string {
	var out []string
	covered := map[protoreflect.FullName]bool{}
	RequestFields(sd, func(fd protoreflect.FieldDescriptor) {
		n, each, ok := bound(fd.FullName())
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s has no bound", fd.FullName()))
		case n <= 0, fd.IsList() && fd.Kind() != protoreflect.MessageKind && each <= 0:
			out = append(out, fmt.Sprintf("%s: bound n=%d each=%d", fd.FullName(), n, each))
		}
		covered[fd.FullName()] = true
	})
	for _, name := range names {
		if !covered[name] {
			out = append(out, fmt.Sprintf("the bounds name %s, not a field of any request of %s", name, sd.FullName()))
		}
	}
	return out
}
