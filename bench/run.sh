#!/usr/bin/env bash
# Teleread's benchmarks: speed and memory figures, each against a reference tool measured in the same run.
#
#   bash bench/run.sh                      all of them (about 5 minutes on the 2-core machine)
#   bash bench/run.sh imaging pathology    some of them: upload, dicom, imaging, pathology, ecg, worklist
#                                          (slide is the former name of pathology and runs it)
#
# Results: bench/results/<date>.json (gitignored), and the Markdown table on stdout.
# Exit status: 0 all good, 3 a budget failed (e.g. API RSS over 250 MB), 1 a benchmark did not finish.
# Everything runs on loopback; temporary files, the upload database and queue keys are removed afterwards.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"

ALL=(upload dicom imaging pathology ecg worklist)
# Wall-clock limit per benchmark, in seconds; `timeout` sends SIGTERM and the benchmark cleans up after itself.
limit_of() {
  case $1 in
  upload) echo 240 ;;
  dicom) echo 180 ;;
  imaging) echo 420 ;;
  pathology | slide) echo 260 ;;
  ecg) echo 60 ;;
  worklist) echo 240 ;;
  esac
}
file_of() {
  case $1 in
  upload) echo bench/upload-rss.ts ;;
  dicom) echo bench/render-dicom.ts ;;
  imaging) echo bench/imaging.ts ;;
  pathology | slide) echo bench/pathology.ts ;;
  ecg) echo bench/render-ecg.ts ;;
  worklist) echo bench/worklist.ts ;;
  esac
}

die() {
  echo "bench: $*" >&2
  exit 1
}

selected=("$@")
if ((${#selected[@]} == 0)); then selected=("${ALL[@]}"); fi
for name in "${selected[@]}"; do
  [[ -n $(file_of "$name") ]] || die "unknown benchmark '$name' (choose from: ${ALL[*]})"
done

[[ -f node_modules/tsx/dist/loader.mjs ]] || die "dependencies are missing; run 'npm ci' first"

is_debian_root() { [[ $(id -u) -eq 0 && -f /etc/debian_version ]] && command -v apt-get >/dev/null; }

# Installs a Debian package when its command is missing (as scripts/services.sh does for Redis).
need_tool() {
  local cmd=$1 package=$2
  command -v "$cmd" >/dev/null && return 0
  is_debian_root || die "$cmd is missing: install $package (apt-get install $package)"
  echo "bench: installing $package for $cmd" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >&2
  command -v "$cmd" >/dev/null || die "apt-get installed $package but $cmd is still missing"
}

for name in "${selected[@]}"; do
  case $name in
  dicom) need_tool dcmj2pnm dcmtk ;;
  imaging)
    need_tool dcmj2pnm dcmtk
    need_tool dcml2pnm dcmtk
    need_tool /usr/sbin/Orthanc orthanc
    bash scripts/services.sh >&2 # Redis and PostgreSQL answer (reused, or private ones started)
    ;;
  pathology | slide)
    need_tool vips libvips-tools
    need_tool vipsthumbnail libvips-tools
    need_tool openslide-write-png openslide-tools
    ;;
  upload | worklist) bash scripts/services.sh >&2 ;; # Redis and PostgreSQL answer (reused, or private ones started)
  esac
done

parts=$(mktemp -d "${TMPDIR:-/tmp}/teleread-bench-parts-XXXXXX")
trap 'rm -rf "$parts"' EXIT

# How fast the cores are before the first benchmark (bench/cpu-probe.ts); report.ts times them again at the end.
BENCH_CPU_PROBE_START_MS=$(node --import ./node_modules/tsx/dist/loader.mjs bench/cpu-probe.ts)
export BENCH_CPU_PROBE_START_MS

statuses=()
for name in "${selected[@]}"; do
  echo "bench: $name (limit $(limit_of "$name") s)" >&2
  rc=0
  BENCH_OUT="$parts/$name.json" timeout --kill-after=20 "$(limit_of "$name")" \
    node --import ./node_modules/tsx/dist/loader.mjs "$(file_of "$name")" || rc=$?
  statuses+=("$name:$rc")
done

node --import ./node_modules/tsx/dist/loader.mjs bench/report.ts "$parts" "${statuses[@]}"
