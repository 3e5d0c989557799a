package netns

import (
	"context"
	"fmt"
	"time"

	"github.com/labctl/labctl/topologies"
)

// checkCNI checks, before anything is made, that the plugins of the
// attachments to create are there and support their lists' versions.
func (a *applier) checkCNI(ctx context.Context, objs []Object) error {
	var atts []topologies.Attachment
	for _, o := range objs {
		if o.Kind == KindCNI {
			atts = append(atts, *o.CNI)
		}
	}
	if len(atts) == 0 {
		return nil
	}
	if a.cni == nil {
		return fmt.Errorf("lab %s: the plan has cni links and no CNI runner was given", a.lab)
	}
	return a.cni.Check(ctx, atts)
}

// attach runs the plugins' ADD for one endpoint and waits until its
// interface is up. The journal's begin comes first: a kill during ADD
// leaves a begin that the next up or down undoes with DEL from the
// journaled attachment (libcni writes its cache only after the whole
// list succeeded).
func (a *applier) attach(ctx context.Context, o Object) error {
	if err := a.begin(o); err != nil {
		return err
	}
	res, err := a.cni.Add(ctx, o.CNI)
	if err != nil {
		// Add took back what the list's plugins made, as far as their DEL
		// could; the rollback runs DEL once more, which the CNI spec
		// requires plugins to tolerate.
		return err
	}
	o.CNI.Result = res
	ent, err := a.ns.get(o.CNI.Namespace)
	if err != nil {
		return err
	}
	end := upEnd{name: o.CNI.Interface, what: o.String()}
	if err := waitNamespaceUp(ctx, ent, []upEnd{end}, time.Now().Add(carrierTimeout), carrierTimeout); err != nil {
		return err
	}
	return a.record(OpDone, o)
}

// detach runs the plugins' DEL for one endpoint. When both namespaces it
// touches are being deleted (down), a DEL that fails (its plugin gone
// from the plugin path, a plugin refusing) does not stop the lab from
// going: what the plugins made in the namespaces goes with them, and their
// state files with the lab's directory; the failure is reported with what
// was removed. A DEL for an attachment removed from a lab that stays must
// succeed.
func (a *applier) detach(ctx context.Context, o Object, withNamespaces bool) error {
	if a.cni == nil {
		// Without plugins nothing can be released; what they made dies
		// with the namespaces.
		return nil
	}
	if err := a.record(OpBegin, o); err != nil {
		return err
	}
	if err := a.cni.Del(ctx, o.CNI); err != nil {
		if !withNamespaces {
			return err
		}
		a.removed(fmt.Sprintf("%s (DEL failed, what the plugins made goes with the namespaces: %v)", o, err))
		return a.record(OpGone, o)
	}
	a.removed(o.String())
	return a.record(OpGone, o)
}
