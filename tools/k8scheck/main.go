// Command k8scheck checks rendered Kubernetes manifests against the API
// types of one Kubernetes release, the way the API server would read them.
//
//	k8scheck [FILE...]    (no FILE or "-": standard input)
//
// Every YAML document becomes one line of JSON on standard output:
//
//	{"apiVersion":..,"kind":..,"namespace":..,"name":..,"errors":[..]}
//
// in input order. Built-in kinds are decoded strictly (unknown and
// duplicate fields, wrong types) into the k8s.io/api types this binary is
// built with, then checked with the apimachinery validation helpers the
// API server uses for object metadata, labels and selectors, plus a few
// rules of the API server's own validation (selectors that match their
// template, ports in range, ...). Custom resources (Strimzi KafkaTopic and
// KafkaUser, Prometheus Operator ServiceMonitor) are checked against the
// OpenAPI schemas of their published CRDs (crds/*.yaml) with the
// apiextensions-apiserver validation, CEL and pruning code: wrong types,
// enums, required fields, x-kubernetes-validations rules and unknown
// fields. A kind with no schema is an error.
//
// The same source is built against the newest supported Kubernetes
// release (go.mod) and the oldest (go.oldest.mod, `go build
// -modfile=go.oldest.mod`); see the Makefile, target lint-deploy.
//
// Exit status: 0 when every object is valid, 1 when one is not, 2 on a
// usage error or an unreadable or unparsable input.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Result is one line of output.
type Result struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Name       string   `json:"name"`
	Errors     []string `json:"errors"`
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func main() {
	args := os.Args[1:]
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Println("usage: k8scheck [FILE...]  (JSON lines: one per object)")
		return
	}
	if len(args) == 1 && args[0] == "--version" {
		fmt.Println(kubeVersion())
		return
	}
	if len(args) == 0 {
		args = []string{"-"}
	}
	crds, err := loadCRDs()
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
		os.Exit(2)
	}
	scheme := newScheme()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	status := 0
	for _, a := range args {
		docs, err := readDocs(a)
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8scheck: %s: %v\n", a, err)
			out.Flush()
			os.Exit(2)
		}
		for _, d := range docs {
			r := check(d, scheme, crds)
			if len(r.Errors) > 0 {
				status = 1
			}
			if err := enc.Encode(r); err != nil {
				fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
				os.Exit(2)
			}
		}
	}
	out.Flush()
	os.Exit(status)
}

// kubeVersion names the Kubernetes release of the k8s.io/api module this
// binary was built with (v0.32.x is Kubernetes 1.32).
func kubeVersion() string {
	v := apiModuleVersion()
	var minor, patch int
	if _, err := fmt.Sscanf(v, "v0.%d.%d", &minor, &patch); err == nil {
		return fmt.Sprintf("1.%d", minor)
	}
	return v
}

// readDocs splits a multi-document YAML stream into JSON documents,
// rejecting duplicate keys. Empty documents are skipped.
func readDocs(name string) ([][]byte, error) {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		b, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(b))) == 0 {
			continue
		}
		j, err := yaml.YAMLToJSONStrict(b)
		if err != nil {
			return nil, fmt.Errorf("document %d: %v", len(docs)+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		docs = append(docs, j)
	}
	return docs, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(l)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) {
			continue
		}
		out = append(out, l...)
		out = append(out, '\n')
	}
	return out
}

func check(doc []byte, scheme *runtime.Scheme, crds map[schema.GroupVersionKind]*crdSchema) Result {
	var h header
	r := Result{Errors: []string{}}
	if err := json.Unmarshal(doc, &h); err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("not an object: %v", err))
		return r
	}
	r.APIVersion, r.Kind = h.APIVersion, h.Kind
	r.Name, r.Namespace = h.Metadata.Name, h.Metadata.Namespace
	if h.APIVersion == "" || h.Kind == "" {
		r.Errors = append(r.Errors, "apiVersion and kind are required")
		return r
	}
	gv, err := schema.ParseGroupVersion(h.APIVersion)
	if err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("apiVersion: %v", err))
		return r
	}
	gvk := gv.WithKind(h.Kind)
	if c, ok := crds[gvk]; ok {
		r.Errors = append(r.Errors, c.validate(doc)...)
		return r
	}
	if scheme.Recognizes(gvk) {
		obj, _ := scheme.New(gvk)
		strict, err := kjson.UnmarshalStrict(doc, obj,
			kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err != nil {
			r.Errors = append(r.Errors, cleanJSONError(err))
			return r
		}
		for _, e := range strict {
			r.Errors = append(r.Errors, e.Error())
		}
		r.Errors = append(r.Errors, validateBuiltin(obj)...)
		return r
	}
	if knownGroups[gv.Group] {
		r.Errors = append(r.Errors, fmt.Sprintf(
			"no kind %s in %s in Kubernetes %s", h.Kind, h.APIVersion, kubeVersion()))
	} else {
		r.Errors = append(r.Errors, fmt.Sprintf(
			"no schema known for %s %s (neither a built-in kind nor one of the CRDs in tools/k8scheck/crds)",
			h.APIVersion, h.Kind))
	}
	return r
}

var typeErrRE = regexp.MustCompile(`cannot unmarshal (.+) into Go struct field [A-Za-z0-9_]+\.(\S+) of type (\S+)`)

// cleanJSONError turns "json: cannot unmarshal string into Go struct field
// ServicePort.spec.ports.port of type int32" into
// "spec.ports.port: expected int32, got string".
func cleanJSONError(err error) string {
	if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Sprintf("%s: wrong type: expected %s, got %s", m[2], m[3], m[1])
	}
	return err.Error()
}
