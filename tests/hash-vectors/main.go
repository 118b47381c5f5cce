// Command hash-vectors prints the status.version test vectors (vectors.txt) asserted in
// host/src/api/vectors.rs. It follows upstream's ObjectHasher byte layout (reference 1.8 of
// shared/reference/upstream-kfp-operator.md) but takes the Go-specific encodings from the
// libraries upstream itself uses: encoding/json for canonical JSON, time.Time.String() for
// schedule times and github.com/distribution/reference for image tags. The test suite runs it
// and compares its output with vectors.txt (host/tests/it/hash_vectors.rs).
package main

import (
	"crypto/sha1"
	_ "crypto/sha256" // registers sha256 with go-digest, as the operator binary does
	"encoding/json"
	"fmt"
	"hash"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
)

type hasher struct{ h hash.Hash }

func newHasher() hasher        { return hasher{sha1.New()} }
func (o hasher) str(s string)  { o.h.Write([]byte(s)); o.h.Write([]byte{0}) }
func (o hasher) sep()          { o.h.Write([]byte{0}) }
func (o hasher) short() string { return fmt.Sprintf("%x", o.h.Sum(nil)[:3]) }

type kv struct{ k, v string }

func (o hasher) kvList(pairs []kv) {
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	for _, p := range pairs {
		o.str(p.k)
		o.str(p.v)
	}
	o.sep()
}

func (o hasher) jsonMap(m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		o.str(k)
		if m[k] == "null" {
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(m[k]), &v); err != nil {
			o.str(m[k])
			continue
		}
		canonical, _ := json.Marshal(v)
		o.str(string(canonical))
	}
}

type param struct {
	name, value    string
	ref            bool
	refNs, refName string
	output         string
	optional       bool
}

func (o hasher) params(ps []param) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.name != b.name {
			return a.name < b.name
		}
		if a.value != b.value {
			return a.value < b.value
		}
		if a.ref != b.ref {
			return !a.ref
		}
		if a.refName != b.refName {
			return a.refName < b.refName
		}
		if a.refNs != b.refNs {
			return a.refNs < b.refNs
		}
		if a.output != b.output {
			return a.output < b.output
		}
		return !a.optional && b.optional
	})
	for _, p := range ps {
		o.str(p.name)
		o.str(p.value)
		if p.ref {
			o.str(p.refName)
			o.str(p.refNs)
			o.str(p.output)
			o.str(fmt.Sprint(p.optional))
		}
	}
	o.sep()
}

func imageTag(image string) (string, bool) {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", false
	}
	tagged, ok := reference.TagNameOnly(ref).(reference.NamedTagged)
	if !ok {
		return "", false
	}
	return tagged.Tag(), true
}

func pipelineVersion(image string, env []kv, framework string, params map[string]string) string {
	o := newHasher()
	o.str(image)
	o.kvList(env)
	o.str(framework)
	o.jsonMap(params)
	if tag, ok := imageTag(image); ok {
		return tag + "-" + o.short()
	}
	return o.short()
}

func runSpec(o hasher, pipeline, experiment string, ps []param, artifacts []kv) {
	o.str(pipeline)
	o.str(experiment)
	o.params(ps)
	o.kvList(artifacts)
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func main() {
	fmt.Println("pipeline_full", pipelineVersion("ghcr.io/team/penguin:v1.2",
		[]kv{{"b", "2"}, {"a", "1"}, {"a", "0"}}, "tfx", map[string]string{
			"components":         `"penguin.create_components"`,
			"beamArgs":           `[{"value":"DirectRunner","name":"--runner"}]`,
			"usePipelineSpec2_1": `true`,
			"threshold":          `0.50`,
			"big":                `1e21`,
			"html":               `"<a&b> \u2028"`,
			"nothing":            `null`,
		}))
	digest := "sha256:" + strings.Repeat("a", 64)
	fmt.Println("pipeline_digest", pipelineVersion("image@"+digest, nil, "kfpsdk", map[string]string{}))
	fmt.Println("pipeline_latest", pipelineVersion("image", nil, "tfx", map[string]string{"pipeline": `"m.p"`}))

	o := newHasher()
	o.str("An experiment <with> html & stuff")
	fmt.Println("experiment", o.short())

	ps := []param{
		{name: "b", value: "x"},
		{name: "a", ref: true, refNs: "ns", refName: "rc", output: "model", optional: true},
		{name: "a", ref: true, refName: "another-rc", output: "model"},
		{name: "a", value: "lit"},
		{name: "c", ref: true, refNs: "ns", refName: "rc", output: "model", optional: true},
		{name: "c", ref: true, refNs: "ns", refName: "rc", output: "model"},
	}
	artifacts := []kv{{"pushed", "Pusher:pushed_model:0[pushed == 1]"}, {"examples", "CsvExampleGen:examples:0"}}
	o = newHasher()
	runSpec(o, "penguin:v1-abc123", "exp", append([]param{}, ps...), append([]kv{}, artifacts...))
	fmt.Println("run_spec", o.short())
	o = newHasher()
	runSpec(o, "penguin:v1-abc123", "exp", append([]param{}, ps...), append([]kv{}, artifacts...))
	o.str("v1-abc123")
	fmt.Println("run", o.short())
	o = newHasher()
	runSpec(o, "", "", nil, nil)
	o.str("")
	fmt.Println("run_empty", o.short())

	o = newHasher()
	o.str("penguin:v1-abc123")
	o.str("")
	o.kvList([]kv{{"b", "2"}, {"a", "1"}})
	o.kvList(append([]kv{}, artifacts...))
	o.str("0 0 * * *")
	o.str(mustTime("2024-01-01T00:00:00Z").String())
	o.str(mustTime("2024-06-30T13:30:00.25+01:00").String())
	fmt.Println("run_schedule", o.short())
	fmt.Println("time_string", mustTime("2024-06-30T13:30:00.25+01:00").String())
}
