package main

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"path"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The published CRDs of the custom resources the manifests use; each file
// says where it comes from.
//
//go:embed crds/*.yaml
var crdFiles embed.FS

type crdSchema struct {
	source     string
	validator  validation.SchemaValidator
	structural *structuralschema.Structural
	cel        *cel.Validator // nil: the schema has no x-kubernetes-validations
}

// The API server's limits for CEL rules (k8s.io/apiserver/pkg/apis/cel:
// PerCallLimit, RuntimeCELCostBudget).
const (
	celPerCallLimit = 1000000
	celCostBudget   = 10000000
)

func loadCRDs() (map[schema.GroupVersionKind]*crdSchema, error) {
	out := map[schema.GroupVersionKind]*crdSchema{}
	ents, err := crdFiles.ReadDir("crds")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		name := path.Join("crds", e.Name())
		b, err := crdFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &crd); err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(
				v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("%s %s: %v", name, v.Name, err)
			}
			sv, _, err := validation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %v", name, v.Name, err)
			}
			st, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %v", name, v.Name, err)
			}
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
			out[gvk] = &crdSchema{source: name, validator: sv, structural: st,
				cel: cel.NewValidator(st, true, celPerCallLimit)}
		}
	}
	return out, nil
}

// validate checks a custom resource as the API server does on create with
// fieldValidation=Strict: object metadata, the OpenAPI schema, and fields
// the structural schema would prune (unknown fields).
func (c *crdSchema) validate(doc []byte) []string {
	var errs field.ErrorList
	// Integers as int64, as the API server decodes custom resources (CEL
	// rules compare them as int).
	var obj map[string]interface{}
	if err := utiljson.Unmarshal(doc, &obj); err != nil {
		return []string{err.Error()}
	}
	var meta metav1.ObjectMeta
	if m, ok := obj["metadata"]; ok {
		b, _ := json.Marshal(m)
		strict, err := kjson.UnmarshalStrict(b, &meta, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err != nil {
			return []string{"metadata: " + cleanJSONError(err)}
		}
		for _, e := range strict {
			errs = append(errs, field.Invalid(field.NewPath("metadata"), "", e.Error()))
		}
	}
	errs = append(errs, apivalidation.ValidateObjectMeta(&meta, meta.Namespace != "",
		apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	errs = append(errs, validation.ValidateCustomResource(nil, obj, c.validator)...)
	if c.cel != nil && len(errs) == 0 {
		celErrs, _ := c.cel.Validate(context.Background(), nil, c.structural, obj, nil, celCostBudget)
		errs = append(errs, celErrs...)
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	unknown := pruning.PruneWithOptions(obj, c.structural, true,
		structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, u := range unknown {
		out = append(out, fmt.Sprintf("%s: unknown field (not in %s)", u, c.source))
	}
	return out
}
