package main

import (
	"fmt"
	"runtime/debug"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// knownGroups are the API groups of the built-in kinds registered below: a
// kind of one of them that the scheme does not know is an unknown kind,
// not a missing CRD.
var knownGroups = map[string]bool{
	"": true, "apps": true, "batch": true, "policy": true,
	"networking.k8s.io": true, "rbac.authorization.k8s.io": true,
	"autoscaling": true,
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme, rbacv1.AddToScheme,
		autoscalingv2.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

func apiModuleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "k8s.io/api" {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return "unknown"
}

// validateBuiltin applies the API server's metadata rules and a subset of
// its per-kind rules to a decoded object.
func validateBuiltin(obj runtime.Object) []string {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	om := func(m *metav1.ObjectMeta, name apivalidation.ValidateNameFunc) {
		errs = append(errs, apivalidation.ValidateObjectMeta(m, m.Namespace != "", name, meta)...)
	}
	dns := apivalidation.NameIsDNSSubdomain
	switch o := obj.(type) {
	case *appsv1.Deployment:
		om(&o.ObjectMeta, dns)
		spec := field.NewPath("spec")
		if o.Spec.Replicas != nil && *o.Spec.Replicas < 0 {
			errs = append(errs, field.Invalid(spec.Child("replicas"), *o.Spec.Replicas, "must be >= 0"))
		}
		switch o.Spec.Strategy.Type {
		case "", appsv1.RollingUpdateDeploymentStrategyType:
		case appsv1.RecreateDeploymentStrategyType:
			if o.Spec.Strategy.RollingUpdate != nil {
				errs = append(errs, field.Forbidden(spec.Child("strategy", "rollingUpdate"),
					"may not be specified when strategy `type` is 'Recreate'"))
			}
		default:
			errs = append(errs, field.NotSupported(spec.Child("strategy", "type"), o.Spec.Strategy.Type,
				[]string{"Recreate", "RollingUpdate"}))
		}
		errs = append(errs, selectorMatchesTemplate(o.Spec.Selector, &o.Spec.Template, spec)...)
	case *appsv1.StatefulSet:
		om(&o.ObjectMeta, dns)
		errs = append(errs, selectorMatchesTemplate(o.Spec.Selector, &o.Spec.Template, field.NewPath("spec"))...)
	case *appsv1.DaemonSet:
		om(&o.ObjectMeta, dns)
		errs = append(errs, selectorMatchesTemplate(o.Spec.Selector, &o.Spec.Template, field.NewPath("spec"))...)
	case *batchv1.Job:
		om(&o.ObjectMeta, dns)
		errs = append(errs, validatePodSpec(&o.Spec.Template.Spec, field.NewPath("spec", "template", "spec"))...)
	case *batchv1.CronJob:
		om(&o.ObjectMeta, dns)
		errs = append(errs, validatePodSpec(&o.Spec.JobTemplate.Spec.Template.Spec,
			field.NewPath("spec", "jobTemplate", "spec", "template", "spec"))...)
	case *corev1.Pod:
		om(&o.ObjectMeta, dns)
		errs = append(errs, validatePodSpec(&o.Spec, field.NewPath("spec"))...)
	case *corev1.Service:
		om(&o.ObjectMeta, apivalidation.NameIsDNS1035Label)
		errs = append(errs, validateService(o)...)
	case *corev1.ConfigMap:
		om(&o.ObjectMeta, dns)
		for k := range o.Data {
			for _, m := range validation.IsConfigMapKey(k) {
				errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, m))
			}
		}
	case *corev1.Secret:
		om(&o.ObjectMeta, dns)
		for k := range o.Data {
			for _, m := range validation.IsConfigMapKey(k) {
				errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, m))
			}
		}
		for k := range o.StringData {
			for _, m := range validation.IsConfigMapKey(k) {
				errs = append(errs, field.Invalid(field.NewPath("stringData").Key(k), k, m))
			}
		}
	case *policyv1.PodDisruptionBudget:
		om(&o.ObjectMeta, dns)
		spec := field.NewPath("spec")
		if o.Spec.MinAvailable != nil && o.Spec.MaxUnavailable != nil {
			errs = append(errs, field.Invalid(spec, o.Spec, "minAvailable and maxUnavailable cannot be both set"))
		}
		errs = append(errs, validateIntOrPercent(o.Spec.MinAvailable, spec.Child("minAvailable"))...)
		errs = append(errs, validateIntOrPercent(o.Spec.MaxUnavailable, spec.Child("maxUnavailable"))...)
		errs = append(errs, metav1validation.ValidateLabelSelector(o.Spec.Selector,
			metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
	case *networkingv1.NetworkPolicy:
		om(&o.ObjectMeta, dns)
		spec := field.NewPath("spec")
		errs = append(errs, metav1validation.ValidateLabelSelector(&o.Spec.PodSelector,
			metav1validation.LabelSelectorValidationOptions{}, spec.Child("podSelector"))...)
		for i, t := range o.Spec.PolicyTypes {
			if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
				errs = append(errs, field.NotSupported(spec.Child("policyTypes").Index(i), t,
					[]string{"Ingress", "Egress"}))
			}
		}
		for i, r := range o.Spec.Ingress {
			errs = append(errs, validateNPPorts(r.Ports, spec.Child("ingress").Index(i).Child("ports"))...)
		}
		for i, r := range o.Spec.Egress {
			errs = append(errs, validateNPPorts(r.Ports, spec.Child("egress").Index(i).Child("ports"))...)
		}
	case interface{ GetObjectMeta() metav1.Object }:
		if m, ok := o.GetObjectMeta().(*metav1.ObjectMeta); ok {
			om(m, dns)
		}
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func selectorMatchesTemplate(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	if sel == nil {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel,
			metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
		if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(spec.Child("selector"), sel, "empty selector is invalid for deployment"))
		} else if s, err := metav1.LabelSelectorAsSelector(sel); err == nil {
			if !s.Matches(labelSet(t.Labels)) {
				errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), t.Labels,
					"`selector` does not match template `labels`"))
			}
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(t.Labels, spec.Child("template", "metadata", "labels"))...)
	errs = append(errs, validatePodSpec(&t.Spec, spec.Child("template", "spec"))...)
	return errs
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

var protocols = []string{"TCP", "UDP", "SCTP"}

func validProtocol(p corev1.Protocol) bool {
	return p == "" || p == corev1.ProtocolTCP || p == corev1.ProtocolUDP || p == corev1.ProtocolSCTP
}

func validatePodSpec(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	vols := map[string]bool{}
	for i, v := range s.Volumes {
		vp := p.Child("volumes").Index(i)
		for _, m := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(vp.Child("name"), v.Name, m))
		}
		if vols[v.Name] {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		vols[v.Name] = true
	}
	switch s.RestartPolicy {
	case "", corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), s.RestartPolicy,
			[]string{"Always", "OnFailure", "Never"}))
	}
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), ""))
	}
	names := map[string]bool{}
	check := func(c *corev1.Container, cp *field.Path) {
		for _, m := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(cp.Child("name"), c.Name, m))
		}
		if names[c.Name] {
			errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
		}
		names[c.Name] = true
		if c.Image == "" {
			errs = append(errs, field.Required(cp.Child("image"), ""))
		}
		switch c.ImagePullPolicy {
		case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		default:
			errs = append(errs, field.NotSupported(cp.Child("imagePullPolicy"), c.ImagePullPolicy,
				[]string{"Always", "IfNotPresent", "Never"}))
		}
		portNames := map[string]bool{}
		for i, port := range c.Ports {
			pp := cp.Child("ports").Index(i)
			if port.Name != "" {
				for _, m := range validation.IsValidPortName(port.Name) {
					errs = append(errs, field.Invalid(pp.Child("name"), port.Name, m))
				}
				portNames[port.Name] = true
			}
			for _, m := range validation.IsValidPortNum(int(port.ContainerPort)) {
				errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, m))
			}
			if !validProtocol(port.Protocol) {
				errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, protocols))
			}
		}
		for _, pr := range []struct {
			name string
			p    *corev1.Probe
		}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
			if pr.p == nil {
				continue
			}
			pp := cp.Child(pr.name)
			n := 0
			h := pr.p.ProbeHandler
			if h.Exec != nil {
				n++
			}
			if h.HTTPGet != nil {
				n++
				errs = append(errs, validatePortRef(h.HTTPGet.Port, portNames, pp.Child("httpGet", "port"))...)
			}
			if h.TCPSocket != nil {
				n++
				errs = append(errs, validatePortRef(h.TCPSocket.Port, portNames, pp.Child("tcpSocket", "port"))...)
			}
			if h.GRPC != nil {
				n++
			}
			if n != 1 {
				errs = append(errs, field.Required(pp, "must specify exactly one handler type"))
			}
		}
		for k, lim := range c.Resources.Limits {
			if req, ok := c.Resources.Requests[k]; ok && req.Cmp(lim) > 0 {
				errs = append(errs, field.Invalid(cp.Child("resources", "requests").Key(string(k)), req.String(),
					fmt.Sprintf("must be less than or equal to %s limit of %s", k, lim.String())))
			}
		}
		for i, m := range c.VolumeMounts {
			if !vols[m.Name] {
				errs = append(errs, field.NotFound(cp.Child("volumeMounts").Index(i).Child("name"), m.Name))
			}
		}
	}
	for i := range s.InitContainers {
		check(&s.InitContainers[i], p.Child("initContainers").Index(i))
	}
	for i := range s.Containers {
		check(&s.Containers[i], p.Child("containers").Index(i))
	}
	return errs
}

func validatePortRef(port intstr.IntOrString, names map[string]bool, p *field.Path) field.ErrorList {
	if port.Type == intstr.String {
		if !names[port.StrVal] {
			return field.ErrorList{field.Invalid(p, port.StrVal, "not a port name of the container")}
		}
		return nil
	}
	var errs field.ErrorList
	for _, m := range validation.IsValidPortNum(port.IntValue()) {
		errs = append(errs, field.Invalid(p, port.IntValue(), m))
	}
	return errs
}

func validateService(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	switch s.Spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
		if len(s.Spec.Ports) == 0 && s.Spec.ClusterIP != corev1.ClusterIPNone {
			errs = append(errs, field.Required(spec.Child("ports"), ""))
		}
	case corev1.ServiceTypeExternalName:
	default:
		errs = append(errs, field.NotSupported(spec.Child("type"), s.Spec.Type,
			[]string{"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}))
	}
	errs = append(errs, metav1validation.ValidateLabels(s.Spec.Selector, spec.Child("selector"))...)
	for i, p := range s.Spec.Ports {
		pp := spec.Child("ports").Index(i)
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), "when more than one port"))
		}
		if p.Name != "" {
			for _, m := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, m))
			}
		}
		for _, m := range validation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), p.Port, m))
		}
		if !validProtocol(p.Protocol) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, protocols))
		}
		if p.TargetPort.Type == intstr.String {
			for _, m := range validation.IsValidPortName(p.TargetPort.StrVal) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), p.TargetPort.StrVal, m))
			}
		} else if p.TargetPort.IntVal != 0 {
			for _, m := range validation.IsValidPortNum(int(p.TargetPort.IntVal)) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), p.TargetPort.IntVal, m))
			}
		}
	}
	return errs
}

func validateIntOrPercent(v *intstr.IntOrString, p *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return field.ErrorList{field.Invalid(p, v.IntVal, "must be greater than or equal to 0")}
		}
		return nil
	}
	if _, err := intstr.GetScaledValueFromIntOrPercent(v, 100, false); err != nil {
		return field.ErrorList{field.Invalid(p, v.StrVal, "must be an integer or percentage (e.g '5%')")}
	}
	return nil
}

func validateNPPorts(ports []networkingv1.NetworkPolicyPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, port := range ports {
		pp := p.Index(i)
		if port.Protocol != nil && !validProtocol(*port.Protocol) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), *port.Protocol, protocols))
		}
		if port.Port != nil {
			if port.Port.Type == intstr.Int {
				for _, m := range validation.IsValidPortNum(int(port.Port.IntVal)) {
					errs = append(errs, field.Invalid(pp.Child("port"), port.Port.IntVal, m))
				}
			} else {
				for _, m := range validation.IsValidPortName(port.Port.StrVal) {
					errs = append(errs, field.Invalid(pp.Child("port"), port.Port.StrVal, m))
				}
			}
		}
	}
	return errs
}
