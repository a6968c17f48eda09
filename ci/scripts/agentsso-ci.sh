#!/usr/bin/env bash
# agentsso-ci.sh: run the agentsso scenario catalogue in a CI job, publish
# the reports and expose the counts. The GitHub Actions composite action
# (ci/github/action.yml), the GitLab CI template
# (ci/gitlab/agentsso.gitlab-ci.yml) and this repository's .ci/run all run
# this one script; the container image has it as /usr/local/bin/agentsso-ci.
#
#   agentsso-ci.sh --target gateway.yaml [--out DIR] [--expected-failures FILE] [-- EXTRA ARGS]
#   agentsso-ci.sh --demo [--out DIR]      # the reference gateway, in one process
#
# Settings (flags win over the environment):
#   --target FILE              AGENTSSO_TARGET             target file (docs/TARGETS.md)
#   --out DIR                  AGENTSSO_OUT                report directory (default agentsso-report)
#   --expected-failures FILE   AGENTSSO_EXPECTED_FAILURES  known gaps that do not fail the run
#   --image IMAGE              AGENTSSO_IMAGE              run agentsso in this container image
#                                                          (docker run --network host)
#   --bin PATH                 AGENTSSO_BIN                run this agentsso binary
#   -- ARGS...                 AGENTSSO_ARGS               more `agentsso run` flags (--only, --strict, --idp ...)
#   --demo                                                 `agentsso demo` instead of `agentsso run`
#
# Without --image or --bin: `agentsso` on PATH, else a `go build` of the
# checkout this script belongs to.
#
# What it publishes:
#   - report.json, report.xml (JUnit), report.md, report.html in the report directory;
#   - agentsso.env there: AGENTSSO_PASS=… AGENTSSO_FAIL=… (GitLab artifacts:reports:dotenv);
#   - with $GITHUB_OUTPUT: pass, fail, warn, skip, error, total, verdict, exit-code,
#     report-dir, report-json, report-junit, report-markdown, report-html;
#   - with $GITHUB_STEP_SUMMARY: report.md appended.
# Exit status: agentsso's (0 conforms, 1 does not, 2 usage or configuration).
set -euo pipefail
set -f # extra arguments are split on spaces, never globbed

target=${AGENTSSO_TARGET:-}
out=${AGENTSSO_OUT:-agentsso-report}
expected=${AGENTSSO_EXPECTED_FAILURES:-}
image=${AGENTSSO_IMAGE:-}
bin=${AGENTSSO_BIN:-}
demo=0
# shellcheck disable=SC2206 # split on purpose
extra=(${AGENTSSO_ARGS:-})

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
  --target) target=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --expected-failures) expected=$2; shift 2 ;;
  --image) image=$2; shift 2 ;;
  --bin) bin=$2; shift 2 ;;
  --demo) demo=1; shift ;;
  --) shift; extra+=("$@"); break ;;
  -h | --help) usage ;;
  *) echo "agentsso-ci: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$demo" = 0 ] && [ -z "$target" ]; then
  echo "agentsso-ci: a target file is needed: --target FILE or AGENTSSO_TARGET (docs/TARGETS.md); --demo runs the reference gateway" >&2
  exit 2
fi

abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

# add_mount DIR [ro]: bind DIR at the same path in the container, unless the
# working directory's mount covers it already.
mounts=(-v "$PWD:$PWD")
mounted="$PWD/"
add_mount() {
  case "$1/" in "$PWD"/*) return ;; esac
  case " $mounted " in *" $1/ "*) return ;; esac
  mounted="$mounted $1/"
  mounts+=(-v "$1:$1${2:+:$2}")
}

mkdir -p "$out"
out=$(cd "$out" && pwd)
add_mount "$out"
args=()
if [ "$demo" = 1 ]; then
  args=(demo --out "$out")
else
  target=$(abspath "$target")
  [ -r "$target" ] || { echo "agentsso-ci: cannot read the target file $target" >&2; exit 2; }
  args=(run --target "$target" --out "$out")
  add_mount "$(dirname "$target")" ro
  if [ -n "$expected" ]; then
    expected=$(abspath "$expected")
    [ -r "$expected" ] || { echo "agentsso-ci: cannot read the expected failures file $expected" >&2; exit 2; }
    args+=(--expected-failures "$expected")
    add_mount "$(dirname "$expected")" ro
  fi
fi
args+=("${extra[@]}")

# How to run agentsso.
cmd=()
if [ -n "$image" ]; then
  # Host networking: the emulator (127.0.0.1:8080 by default) and the
  # harness's upstream are where a target on the runner expects them.
  cmd=(docker run --rm --network host -u "$(id -u):$(id -g)" "${mounts[@]}" -w "$PWD" "$image")
elif [ -n "$bin" ]; then
  cmd=("$bin")
elif command -v agentsso >/dev/null 2>&1; then
  cmd=(agentsso)
else
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if [ ! -f "$src/cmd/agentsso/main.go" ] || ! command -v go >/dev/null 2>&1; then
    echo "agentsso-ci: no agentsso to run: give --image or --bin, put agentsso on PATH, or install Go" >&2
    exit 2
  fi
  build=$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/agentsso-bin.XXXXXX")
  echo "agentsso-ci: go build $src/cmd/agentsso"
  (cd "$src" && go build -o "$build/agentsso" ./cmd/agentsso)
  cmd=("$build/agentsso")
fi

echo "agentsso-ci: ${cmd[*]} ${args[*]}"
status=0
"${cmd[@]}" "${args[@]}" || status=$?

# The counts, from the report's summary object (integers only).
json="$out/report.json"
summary=""
if [ -r "$json" ]; then
  summary=$(tr -d '\n' <"$json" | grep -o '"summary": *{[^}]*}' | head -n 1 || true)
fi
count() { printf '%s' "$summary" | grep -o "\"$1\": *[0-9]*" | grep -o '[0-9]*$' || echo 0; }
case "$status" in
0) verdict=pass ;;
1) verdict=fail ;;
*) verdict=error ;;
esac
[ -n "$summary" ] || verdict=error

{
  for k in total pass fail warn skip error; do
    echo "AGENTSSO_$(echo "$k" | tr '[:lower:]' '[:upper:]')=$(count "$k")"
  done
  echo "AGENTSSO_VERDICT=$verdict"
  echo "AGENTSSO_EXIT_CODE=$status"
  echo "AGENTSSO_REPORT_DIR=$out"
} >"$out/agentsso.env"

if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    for k in total pass fail warn skip error; do echo "$k=$(count "$k")"; done
    echo "verdict=$verdict"
    echo "exit-code=$status"
    echo "report-dir=$out"
    echo "report-json=$out/report.json"
    echo "report-junit=$out/report.xml"
    echo "report-markdown=$out/report.md"
    echo "report-html=$out/report.html"
  } >>"$GITHUB_OUTPUT"
fi
if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -r "$out/report.md" ]; then
  cat "$out/report.md" >>"$GITHUB_STEP_SUMMARY"
fi

echo "agentsso-ci: $verdict (exit $status): $(count pass) pass, $(count fail) fail, $(count warn) warn, $(count skip) skip, $(count error) error; reports in $out"
exit "$status"
