// manifest-check validates berth's Kubernetes manifests offline, as the API
// server of the release in go.mod would on create, with no cluster at hand:
//
//	manifest-check FILE...
//
// It links k8s.io/kubernetes itself rather than checking against a schema, so
// the rules are the API server's own: strict decoding (unknown and duplicate
// fields, wrong types), defaulting, conversion to the internal type, then the
// registry strategy's create validation, which is the hand-written
// pkg/apis/<group>/validation function plus object-meta and declarative
// validation. One line per problem, `FILE: KIND/NAME: field.path: message`,
// and exit status 1 if there was any; `FILE: KIND/NAME: ok` otherwise.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	"k8s.io/kubernetes/pkg/capabilities"
	"k8s.io/kubernetes/pkg/registry/apps/daemonset"
	"k8s.io/kubernetes/pkg/registry/core/configmap"
	"k8s.io/kubernetes/pkg/registry/core/namespace"
	"k8s.io/kubernetes/pkg/registry/core/serviceaccount"
	"k8s.io/kubernetes/pkg/registry/node/runtimeclass"
	"k8s.io/kubernetes/pkg/registry/rbac/clusterrole"
	"k8s.io/kubernetes/pkg/registry/rbac/clusterrolebinding"
	"k8s.io/kubernetes/pkg/registry/rbac/role"
	"k8s.io/kubernetes/pkg/registry/rbac/rolebinding"
	"sigs.k8s.io/yaml"

	// The registry packages validate internal types but install nothing:
	// these register the versioned types, their defaults and conversions.
	_ "k8s.io/kubernetes/pkg/apis/apps/install"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	_ "k8s.io/kubernetes/pkg/apis/node/install"
	_ "k8s.io/kubernetes/pkg/apis/rbac/install"
)

// The API server's create strategies for the kinds a deployment of berth
// uses. A kind the scheme knows but this map does not is refused rather than
// passed unchecked; supporting one more is one line here.
var strategies = map[schema.GroupKind]rest.RESTCreateStrategy{
	{Group: "apps", Kind: "DaemonSet"}:                               daemonset.Strategy,
	{Kind: "ConfigMap"}:                                              configmap.Strategy,
	{Kind: "Namespace"}:                                              namespace.Strategy,
	{Kind: "ServiceAccount"}:                                         serviceaccount.Strategy,
	{Group: "node.k8s.io", Kind: "RuntimeClass"}:                     runtimeclass.Strategy,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:        clusterrole.Strategy,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}: clusterrolebinding.Strategy,
	{Group: "rbac.authorization.k8s.io", Kind: "Role"}:               role.Strategy,
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}:        rolebinding.Strategy,
}

// UniversalDecoder decodes into the versioned type, defaults it and converts
// it to the internal one, as the API server's request decoding does; with
// EnableStrict it also reports unknown and duplicate fields, alongside a
// still usable object.
var decoder = serializer.NewCodecFactory(legacyscheme.Scheme, serializer.EnableStrict).UniversalDecoder()

// The decoders name the offending field inside their messages; these move it
// to the front, where validation errors have theirs, and fold the YAML
// parser's multi-line messages onto one line.
var rewrites = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`^(unknown|duplicate) field "(.*)"$`), `$2: $1 field`},
	{regexp.MustCompile(`^json: cannot unmarshal (\S+) into Go struct field \w+\.(\S+) of type (\S+)$`), `$2: cannot unmarshal $1 into $3`},
	{regexp.MustCompile(`\s*\n\s*`), ` `},
}

func tidy(message string) string {
	for _, r := range rewrites {
		message = r.re.ReplaceAllString(message, r.with)
	}
	return message
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: manifest-check FILE...")
		os.Exit(2)
	}
	// kube-apiserver forbids privileged containers unless started with
	// --allow-privileged=true, as kubeadm, kind and k3s all start it; berth's
	// DaemonSet needs one.
	capabilities.Setup(true, 0)
	failed := false
	for _, file := range os.Args[1:] {
		if !checkFile(file) {
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// checkFile checks every document of a multi-document YAML file and says
// whether all were valid.
func checkFile(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		fmt.Printf("%s: %v\n", file, err)
		return false
	}
	defer f.Close()
	ok := true
	reader := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return ok
		}
		if err != nil {
			fmt.Printf("%s: %v\n", file, err)
			return false
		}
		if j, err := yaml.YAMLToJSON(doc); err == nil && string(j) == "null" {
			continue // only comments or blank lines between two `---`
		}
		label, problems, warnings := check(doc)
		for _, p := range problems {
			fmt.Printf("%s: %s: %s\n", file, label, tidy(p))
		}
		// The API server lets an object with warnings in, and so does this.
		for _, w := range warnings {
			fmt.Printf("%s: %s: warning: %s\n", file, label, w)
		}
		if len(problems) == 0 {
			fmt.Printf("%s: %s: ok\n", file, label)
		}
		ok = ok && len(problems) == 0
	}
}

// check validates one document and returns its KIND/NAME, its problems and
// the API server's warnings about it.
func check(doc []byte) (label string, problems, warnings []string) {
	// Read loosely first, so that a document the typed decoding rejects
	// outright is still named in the report.
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return "?/?", []string{err.Error()}, nil
	}
	label = head.Kind + "/" + head.Metadata.Name

	obj, gvk, err := decoder.Decode(doc, nil, nil)
	if strict, isStrict := runtime.AsStrictDecodingError(err); isStrict {
		for _, e := range strict.Errors() {
			problems = append(problems, e.Error())
		}
	} else if runtime.IsMissingKind(err) {
		return label, []string{"kind: Required value"}, nil
	} else if runtime.IsMissingVersion(err) {
		return label, []string{"apiVersion: Required value"}, nil
	} else if runtime.IsNotRegisteredError(err) {
		return label, []string{fmt.Sprintf("kind: Unsupported value: %q: no such kind in %s", head.Kind, head.APIVersion)}, nil
	} else if err != nil {
		return label, []string{err.Error()}, nil
	}

	// The scheme still holds long-retired versions (apps/v1beta2, say) to
	// convert stored objects; a manifest should use the one served.
	if preferred := legacyscheme.Scheme.PrioritizedVersionsForGroup(gvk.Group)[0]; gvk.GroupVersion() != preferred {
		problems = append(problems, fmt.Sprintf("apiVersion: %s is not served, use %s", gvk.GroupVersion(), preferred))
	}
	strategy, known := strategies[gvk.GroupKind()]
	if !known {
		return label, append(problems, fmt.Sprintf("kind: %s is not one manifest-check knows how to validate", gvk.GroupKind())), nil
	}

	// kubectl sends a namespaced object without a namespace to the
	// context's, and object-meta validation requires one.
	accessor, err := meta.Accessor(obj)
	if err != nil {
		return label, append(problems, err.Error()), nil
	}
	if strategy.NamespaceScoped() && accessor.GetNamespace() == "" {
		accessor.SetNamespace("default")
	}

	// Declarative validation finds the API version to validate in the
	// request's info, as it would in the API server's handler.
	ctx := request.WithNamespace(context.Background(), accessor.GetNamespace())
	ctx = request.WithRequestInfo(ctx, &request.RequestInfo{
		IsResourceRequest: true, Verb: "create", APIGroup: gvk.Group, APIVersion: gvk.Version,
	})
	strategy.PrepareForCreate(ctx, obj)
	for _, e := range rest.ValidateCreate(ctx, obj, strategy) {
		problems = append(problems, e.Error())
	}
	return label, problems, strategy.WarningsOnCreate(ctx, obj)
}
