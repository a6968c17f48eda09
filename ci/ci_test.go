// Package ci_test checks the CI packaging without Docker: the GitHub
// Actions composite action and an example workflow with actionlint, the
// action's and the GitLab template's structure, the Dockerfile and its
// build context, and ci/scripts/agentsso-ci.sh against the reference
// gateway.
package ci_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/rhysd/actionlint"
	"go.yaml.in/yaml/v3"

	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

const root = ".."

// actionOutputs are the outputs the action promises (docs/CI.md).
var actionOutputs = []string{"verdict", "exit-code", "total", "pass", "fail", "warn", "skip", "error",
	"report-dir", "report-json", "report-junit", "report-markdown", "report-html"}

// actionInputs maps each input to the script's environment variable
// ("" for inputs the action uses itself).
var actionInputs = map[string]string{
	"target": "AGENTSSO_TARGET", "out": "AGENTSSO_OUT", "image": "AGENTSSO_IMAGE", "args": "AGENTSSO_ARGS",
	"expected-failures": "AGENTSSO_EXPECTED_FAILURES", "artifact-name": "",
}

func lint(t *testing.T, name string, content []byte) []*actionlint.Error {
	t.Helper()
	proj, err := actionlint.NewProject(root)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	l, err := actionlint.NewLinter(&out, &actionlint.LinterOptions{Oneline: true, WorkingDir: root})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.Lint(name, content, proj)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Logf("actionlint %s:\n%s", name, out.String())
	}
	return errs
}

// useAction is a workflow that uses the local action with every input and
// reads every output, as actionlint checks both against action.yml.
func useAction(inputs map[string]string, outputs []string) []byte {
	var b strings.Builder
	b.WriteString("name: agentsso action\non: [push]\njobs:\n  conformance:\n    runs-on: ubuntu-latest\n    steps:\n")
	b.WriteString("      - uses: actions/checkout@v4\n      - id: agentsso\n        uses: ./ci/github\n        with:\n")
	keys := make([]string, 0, len(inputs))
	for k := range inputs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "          %s: %q\n", k, inputs[k])
	}
	b.WriteString("      - if: always()\n        env:\n")
	for i, o := range outputs {
		fmt.Fprintf(&b, "          OUT_%d: ${{ steps.agentsso.outputs.%s }}\n", i, o)
	}
	b.WriteString("        run: env | grep ^OUT_\n")
	return []byte(b.String())
}

// TestActionlint lints the example workflow and a workflow using the
// composite action with all its inputs and outputs; a wrong input, a
// missing required one and an unknown output must be reported, which shows
// that actionlint did read ci/github/action.yml.
func TestActionlint(t *testing.T) {
	example, err := os.ReadFile(filepath.Join(root, "ci", "github", "example-workflow.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := lint(t, "ci/github/example-workflow.yml", example); len(errs) > 0 {
		t.Errorf("example workflow: %d actionlint errors", len(errs))
	}
	all := map[string]string{"target": "t.yaml", "out": "r", "image": "agentsso:ci", "args": "--strict",
		"expected-failures": "gaps.yaml", "artifact-name": "agentsso"}
	if errs := lint(t, "uses-action.yml", useAction(all, actionOutputs)); len(errs) > 0 {
		t.Errorf("workflow using ./ci/github: %d actionlint errors", len(errs))
	}
	bad := map[string]string{"targets": "t.yaml"}
	errs := lint(t, "bad-use.yml", useAction(bad, []string{"passes"}))
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Message)
	}
	joined := strings.Join(msgs, "\n")
	for _, want := range []string{`input "targets" is not defined`, `missing input "target"`, `property "passes" is not defined`} {
		if !strings.Contains(joined, want) {
			t.Errorf("actionlint did not report %s; it said:\n%s", want, joined)
		}
	}
}

type actionFile struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description"`
	Author      string            `yaml:"author"`
	Branding    map[string]string `yaml:"branding"`
	Inputs      map[string]struct {
		Description string  `yaml:"description"`
		Required    bool    `yaml:"required"`
		Default     *string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Description string `yaml:"description"`
		Value       string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Using string `yaml:"using"`
		Steps []struct {
			ID    string            `yaml:"id"`
			If    string            `yaml:"if"`
			Shell string            `yaml:"shell"`
			Run   string            `yaml:"run"`
			Uses  string            `yaml:"uses"`
			Env   map[string]string `yaml:"env"`
			With  map[string]string `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"runs"`
}

func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestActionMetadata checks ci/github/action.yml against what the script
// reads and writes: every input reaches it, every output is one it writes
// to $GITHUB_OUTPUT, and the run step calls it.
func TestActionMetadata(t *testing.T) {
	var a actionFile
	decodeStrict(t, filepath.Join(root, "ci", "github", "action.yml"), &a)
	var md actionlint.ActionMetadata // actionlint's own reading of the file
	b, _ := os.ReadFile(filepath.Join(root, "ci", "github", "action.yml"))
	if err := yaml.Unmarshal(b, &md); err != nil {
		t.Fatalf("actionlint.ActionMetadata: %v", err)
	}
	if a.Name == "" || a.Description == "" || a.Runs.Using != "composite" || md.Runs.Using != "composite" {
		t.Fatalf("name %q, description %q, runs.using %q: want a named composite action", a.Name, a.Description, a.Runs.Using)
	}
	script, err := os.ReadFile(filepath.Join(root, "ci", "scripts", "agentsso-ci.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(root, "ci", "scripts", "agentsso-ci.sh")); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("ci/scripts/agentsso-ci.sh must be executable (%v)", err)
	}
	if len(a.Runs.Steps) == 0 || a.Runs.Steps[0].ID != "run" || a.Runs.Steps[0].Shell != "bash" ||
		!strings.Contains(a.Runs.Steps[0].Run, "$GITHUB_ACTION_PATH/../scripts/agentsso-ci.sh") {
		t.Fatalf("the first step must be id run, shell bash, calling $GITHUB_ACTION_PATH/../scripts/agentsso-ci.sh: %+v", a.Runs.Steps)
	}
	run := a.Runs.Steps[0]
	for name, in := range a.Inputs {
		if in.Description == "" {
			t.Errorf("input %s: no description", name)
		}
		if !in.Required && in.Default == nil {
			t.Errorf("input %s: optional without a default", name)
		}
		env, ok := actionInputs[name]
		if !ok {
			t.Errorf("input %s: not in the documented set", name)
			continue
		}
		if env == "" {
			continue
		}
		if run.Env[env] != "${{ inputs."+name+" }}" {
			t.Errorf("input %s: step env %s = %q, want ${{ inputs.%s }}", name, env, run.Env[env], name)
		}
		if !bytes.Contains(script, []byte("${"+env)) {
			t.Errorf("input %s: the script never reads %s", name, env)
		}
	}
	for name := range actionInputs {
		if _, ok := a.Inputs[name]; !ok {
			t.Errorf("input %s missing", name)
		}
	}
	if !a.Inputs["target"].Required {
		t.Error("input target must be required")
	}
	written := scriptOutputs(string(script))
	for _, name := range actionOutputs {
		o, ok := a.Outputs[name]
		if !ok {
			t.Errorf("output %s missing", name)
			continue
		}
		if o.Description == "" || o.Value != "${{ steps.run.outputs."+name+" }}" {
			t.Errorf("output %s: description %q, value %q", name, o.Description, o.Value)
		}
		if !written[name] {
			t.Errorf("output %s: the script never writes it to $GITHUB_OUTPUT", name)
		}
	}
	if len(a.Outputs) != len(actionOutputs) {
		t.Errorf("%d outputs, want %d", len(a.Outputs), len(actionOutputs))
	}
}

// scriptOutputs are the names the script writes as name=value to
// $GITHUB_OUTPUT: literal ones and those of the counts loop.
func scriptOutputs(script string) map[string]bool {
	i := strings.Index(script, `if [ -n "${GITHUB_OUTPUT:-}" ]`)
	j := strings.Index(script[i:], `>>"$GITHUB_OUTPUT"`)
	block := script[i : i+j]
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`echo "([a-z-]+)=`).FindAllStringSubmatch(block, -1) {
		out[m[1]] = true
	}
	if m := regexp.MustCompile(`for k in ([a-z ]+); do echo "\$k=`).FindStringSubmatch(block); m != nil {
		for _, k := range strings.Fields(m[1]) {
			out[k] = true
		}
	}
	return out
}

// GitLab CI keywords, from docs.gitlab.com/ee/ci/yaml: a structure check
// of the template without the network.
var (
	gitlabJobKeys = []string{"after_script", "allow_failure", "artifacts", "before_script", "cache", "coverage",
		"dast_configuration", "dependencies", "environment", "extends", "hooks", "id_tokens", "identity", "image",
		"inherit", "interruptible", "manual_confirmation", "needs", "pages", "parallel", "release", "resource_group",
		"retry", "rules", "run", "script", "secrets", "services", "stage", "tags", "timeout", "trigger", "variables", "when"}
	gitlabArtifactKeys = []string{"access", "exclude", "expire_in", "expose_as", "name", "paths", "public", "reports", "untracked", "when"}
	gitlabReportKeys   = []string{"accessibility", "annotations", "api_fuzzing", "browser_performance", "coverage_report",
		"codequality", "container_scanning", "coverage_fuzzing", "cyclonedx", "dast", "dependency_scanning", "dotenv",
		"junit", "license_scanning", "load_performance", "metrics", "requirements", "repository_xray", "sast",
		"secret_detection", "terraform"}
	gitlabImageKeys = []string{"name", "entrypoint", "docker", "pull_policy", "kubernetes"}
)

func keysIn(t *testing.T, what string, m map[string]any, allowed []string) {
	t.Helper()
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s: unknown GitLab CI keyword %q", what, k)
		}
	}
}

// TestGitLabTemplate checks ci/gitlab/agentsso.gitlab-ci.yml: only hidden
// jobs (including it adds no job), GitLab keywords only, the image's
// agentsso-ci as the script, the JUnit and dotenv reports where the script
// writes them, and no AGENTSSO_IMAGE (which would make the script run
// Docker inside the job).
func TestGitLabTemplate(t *testing.T) {
	var doc map[string]any
	decodeStrict(t, filepath.Join(root, "ci", "gitlab", "agentsso.gitlab-ci.yml"), &doc)
	for k := range doc {
		if !strings.HasPrefix(k, ".") {
			t.Errorf("top-level key %q: a template defines hidden jobs only", k)
		}
	}
	job, ok := doc[".agentsso"].(map[string]any)
	if !ok {
		t.Fatal("no .agentsso job")
	}
	keysIn(t, ".agentsso", job, gitlabJobKeys)
	for _, k := range []string{"image", "variables", "script", "artifacts"} {
		if _, ok := job[k]; !ok {
			t.Errorf(".agentsso: no %s", k)
		}
	}
	img, _ := job["image"].(map[string]any)
	keysIn(t, ".agentsso.image", img, gitlabImageKeys)
	if img["name"] != "$AGENTSSO_CI_IMAGE" || fmt.Sprint(img["entrypoint"]) != "[]" {
		t.Errorf("image %v: want name $AGENTSSO_CI_IMAGE and entrypoint [\"\"]", img)
	}
	vars, _ := job["variables"].(map[string]any)
	for _, v := range []string{"AGENTSSO_CI_IMAGE", "AGENTSSO_TARGET", "AGENTSSO_OUT", "AGENTSSO_ARGS", "AGENTSSO_EXPECTED_FAILURES"} {
		if _, ok := vars[v]; !ok {
			t.Errorf("variables: no %s", v)
		}
	}
	if _, ok := vars["AGENTSSO_IMAGE"]; ok {
		t.Error("variables: AGENTSSO_IMAGE would make agentsso-ci run docker inside the job; the job image is AGENTSSO_CI_IMAGE")
	}
	if s := fmt.Sprint(job["script"]); s != "[agentsso-ci]" {
		t.Errorf("script %s: want [agentsso-ci]", s)
	}
	out, _ := vars["AGENTSSO_OUT"].(string)
	art, _ := job["artifacts"].(map[string]any)
	keysIn(t, ".agentsso.artifacts", art, gitlabArtifactKeys)
	rep, _ := art["reports"].(map[string]any)
	keysIn(t, ".agentsso.artifacts.reports", rep, gitlabReportKeys)
	if art["when"] != "always" || rep["junit"] != out+"/report.xml" || rep["dotenv"] != out+"/agentsso.env" ||
		!slices.Contains(art["paths"].([]any), any(out+"/")) {
		t.Errorf("artifacts %v: want when always, paths %s/, reports junit %s/report.xml and dotenv %s/agentsso.env", art, out, out, out)
	}
}

// TestDockerfile checks the Dockerfile's promises without building it.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"ARG GO_IMAGE=golang:1.26-bookworm", "ARG RUNTIME_IMAGE=debian:bookworm-slim",
		"FROM ${GO_IMAGE} AS build", "FROM ${RUNTIME_IMAGE}", "ARG PREBUILT=",
		"bookworm-updates", "bookworm-security", "softhsm2 swtpm",
		"AGENTSSO_ADDR=0.0.0.0:8080", "AGENTSSO_ADMIN_ADDR=0.0.0.0:8081", "AGENTSSO_STATE_DIR=/var/lib/agentsso",
		"AGENTSSO_KEYS_BACKEND=pkcs11", "USER 10001:10001", `VOLUME ["/var/lib/agentsso"]`, "EXPOSE 8080 8081",
		`CMD ["agentsso", "healthcheck"]`, `ENTRYPOINT ["agentsso"]`, `CMD ["serve"]`,
		"COPY ci/scripts/agentsso-ci.sh /usr/local/bin/agentsso-ci",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^HEALTHCHECK .*--start-interval`).MatchString(df) {
		t.Error("HEALTHCHECK --start-interval needs Docker 25; Docker 20.10 refuses the file")
	}
	if strings.Contains(df, "--mount") || strings.HasPrefix(df, "# syntax") {
		t.Error("BuildKit-only syntax: the legacy builder (Docker 20.10 without buildx) must build the file")
	}
}

// TestBuildContext checks that .dockerignore keeps every file the build
// needs: the sources, cgo files and embedded files of every package
// cmd/agentsso links, go.mod, go.sum, and the files the Dockerfile copies.
func TestBuildContext(t *testing.T) {
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}|{{join .GoFiles ","}},{{join .CgoFiles ","}},{{join .EmbedFiles ","}}{{end}}`, "./cmd/agentsso")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, _ := filepath.Abs(root)
	need := []string{"go.mod", "go.sum", "ci/scripts/agentsso-ci.sh", "dist/docker/agentsso"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, _ := strings.Cut(line, "|")
		rel, err := filepath.Rel(abs, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a dependency's module
		}
		for _, f := range strings.Split(files, ",") {
			if f != "" {
				need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(need) < 20 {
		t.Fatalf("only %d files from go list: %s", len(need), out)
	}
	for _, p := range need {
		if excluded, err := pm.MatchesOrParentMatches(p); err != nil || excluded {
			t.Errorf(".dockerignore excludes %s, which the image build needs (%v)", p, err)
		}
	}
	for _, p := range []string{".git", "docs/CI.md", "agentsso", "ci/testcontainers/agentssotc.go", "README.md"} {
		if excluded, _ := pm.MatchesOrParentMatches(p); !excluded {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
}

// TestCIScript runs ci/scripts/agentsso-ci.sh as the GitHub action does,
// against the reference gateway trusting an in-process emulator, and checks
// the reports, $GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY, the dotenv file and the
// exit status, including a stale expected failure failing the run.
func TestCIScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "agentsso")
	build := exec.Command("go", "build", "-o", bin, "./cmd/agentsso")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := emulatortest.New(t, nil)
	gw, err := reference.Start(reference.Options{IdPURL: env.URL, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	tb, err := yaml.Marshal(gw.Target)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target.yaml")
	if err := os.WriteFile(target, tb, 0o644); err != nil {
		t.Fatal(err)
	}
	gaps := filepath.Join(dir, "gaps.yaml")
	if err := os.WriteFile(gaps, []byte("jwt-alg-none: known gap that the reference gateway has not\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs(filepath.Join(root, "ci", "scripts", "agentsso-ci.sh"))

	run := func(t *testing.T, expected string) (int, map[string]string, string, string) {
		out := filepath.Join(dir, "out-"+filepath.Base(t.Name()))
		ghOut, ghSum := filepath.Join(dir, "gh-output-"+filepath.Base(t.Name())), filepath.Join(dir, "gh-summary-"+filepath.Base(t.Name()))
		cmd := exec.CommandContext(context.Background(), script, "--bin", bin)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(),
			"AGENTSSO_TARGET="+target, "AGENTSSO_OUT="+out, "AGENTSSO_EXPECTED_FAILURES="+expected,
			"AGENTSSO_ARGS=--only rs-baseline-control,jwt-alg-none --idp "+env.URL+" --admin-url "+env.AdminURL,
			"AGENTSSO_IMAGE=", "GITHUB_OUTPUT="+ghOut, "GITHUB_STEP_SUMMARY="+ghSum)
		log, err := cmd.CombinedOutput()
		code := 0
		if err != nil {
			ee, ok := err.(*exec.ExitError)
			if !ok {
				t.Fatal(err)
			}
			code = ee.ExitCode()
		}
		t.Logf("agentsso-ci.sh:\n%s", log)
		outputs := map[string]string{}
		b, _ := os.ReadFile(ghOut)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				outputs[k] = v
			}
		}
		sum, _ := os.ReadFile(ghSum)
		dotenv, _ := os.ReadFile(filepath.Join(out, "agentsso.env"))
		return code, outputs, string(sum), string(dotenv)
	}

	t.Run("conforms", func(t *testing.T) {
		code, o, sum, dotenv := run(t, "")
		if code != 0 || o["verdict"] != "pass" || o["pass"] != "2" || o["fail"] != "0" || o["total"] != "2" || o["exit-code"] != "0" {
			t.Errorf("exit %d, outputs %v: want 0, pass with 2 of 2", code, o)
		}
		for _, k := range actionOutputs {
			if _, ok := o[k]; !ok {
				t.Errorf("$GITHUB_OUTPUT lacks %s", k)
			}
		}
		for _, k := range []string{"report-json", "report-junit", "report-markdown", "report-html"} {
			if _, err := os.Stat(o[k]); err != nil {
				t.Errorf("%s: %v", k, err)
			}
		}
		if !strings.Contains(sum, "agentsso conformance") {
			t.Errorf("job summary lacks report.md: %q", sum)
		}
		if !strings.Contains(dotenv, "AGENTSSO_PASS=2\n") || !strings.Contains(dotenv, "AGENTSSO_VERDICT=pass\n") {
			t.Errorf("dotenv: %q", dotenv)
		}
	})
	t.Run("stale-expected-failure", func(t *testing.T) {
		code, o, _, _ := run(t, gaps)
		if code != 1 || o["verdict"] != "fail" || o["exit-code"] != "1" {
			t.Errorf("exit %d, outputs %v: a listed failure that passes must fail the run", code, o)
		}
	})
	t.Run("usage", func(t *testing.T) {
		cmd := exec.Command(script, "--bin", bin)
		cmd.Env = append(os.Environ(), "AGENTSSO_TARGET=", "AGENTSSO_IMAGE=")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "a target file is needed") {
			t.Errorf("without a target: %v: %s", err, out)
		}
	})
}
