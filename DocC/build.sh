#!/usr/bin/env bash
# Builds Keel's DocC documentation with the toolchain's `docc` and `swift-symbolgraph-extract`,
# without the swift-docc-plugin, and fails on any documentation warning or error.
#
#   bash DocC/build.sh                            # every module in MODULES below
#   KEEL_DOC_MODULES=KeelCore bash DocC/build.sh  # only some (space- or comma-separated)
#
# Output (gitignored):
#   DocC/.out/modules/<Module>.doccarchive   one archive per module
#   DocC/.out/Keel.doccarchive               all modules merged, for hosting
#
# Steps:
#   1. `swift build --target <Module>` for each module, in a scratch path of its own (.build-docc)
#      so that it never invalidates the main .build; only these targets are built, so a sample or
#      test that does not compile does not stop the docs.
#   2. `swift-symbolgraph-extract` per module from the built modules: public symbols only, with
#      extension blocks (what `swift package dump-symbol-graph` and the DocC plugin run). The
#      graphs are extracted afresh on every run, so none is ever stale: `<Module>.symbols.json`
#      plus one `<Module>@<Other>.symbols.json` per module it extends.
#   3. `docc convert` per module, in list order, from DocC/<Module>.docc and that module's graphs.
#      Each archive is built with external link support and gets the archives built before it as
#      dependencies, so a module's docs can link to an earlier module's symbols with a leading
#      slash: ``/KeelCore/TraceContext``. (A bare ``TraceContext`` resolves only inside KeelCore.)
#   4. `docc merge` of the module archives into one, with a synthesized landing page.
#
# Environment:
#   KEEL_DOC_MODULES        override the module list
#   KEEL_DOC_SCRATCH_PATH   the SwiftPM scratch path (default: <repo>/.build-docc)
#   SWIFT, DOCC, SYMBOLGRAPH_EXTRACT, SWIFTC
#                           the tools (default: on PATH, else next to `swift`, else `xcrun --find`)
set -euo pipefail

# Modules to document, in dependency order: a module's docs may link only to modules before it.
# Every module needs a catalog DocC/<Module>.docc with a landing page <Module>.md.
MODULES=(KeelCore KeelResilience KeelEventSourcing Keel KeelSagas KeelTesting)

DISPLAY_NAME="Keel"
BUNDLE_ID_PREFIX="org.keel"

if [[ -n "${KEEL_DOC_MODULES:-}" ]]; then
    read -r -a MODULES <<<"${KEEL_DOC_MODULES//,/ }"
fi
if [[ ${#MODULES[@]} -eq 0 ]]; then
    echo "error: no modules to document" >&2
    exit 1
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SCRATCH_PATH="${KEEL_DOC_SCRATCH_PATH:-$REPO_ROOT/.build-docc}"
GRAPHS_DIR="$SCRATCH_PATH/symbol-graphs"
OUT_DIR="$REPO_ROOT/DocC/.out"
MODULE_ARCHIVES="$OUT_DIR/modules"
MERGED_ARCHIVE="$OUT_DIR/$DISPLAY_NAME.doccarchive"

# --- Tools ---------------------------------------------------------------------------------------

SWIFT="${SWIFT:-$(command -v swift || true)}"
if [[ -z "$SWIFT" && -x /opt/swift/usr/bin/swift ]]; then
    SWIFT=/opt/swift/usr/bin/swift
fi
if [[ -z "$SWIFT" ]]; then
    echo "error: swift not found on PATH; set SWIFT" >&2
    exit 1
fi
TOOLCHAIN_BIN="$(dirname "$(readlink -f "$SWIFT")")"

# Prints the path of toolchain tool $1: on PATH, else beside `swift`, else from xcrun.
find_tool() {
    local name=$1
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
    elif [[ -x "$TOOLCHAIN_BIN/$name" ]]; then
        echo "$TOOLCHAIN_BIN/$name"
    elif command -v xcrun >/dev/null 2>&1 && xcrun --find "$name" 2>/dev/null; then
        :
    else
        echo "error: $name not found on PATH nor next to $SWIFT" >&2
        return 1
    fi
}

DOCC="${DOCC:-$(find_tool docc)}"
SYMBOLGRAPH_EXTRACT="${SYMBOLGRAPH_EXTRACT:-$(find_tool swift-symbolgraph-extract)}"
SWIFTC="${SWIFTC:-$(find_tool swiftc)}"

for module in "${MODULES[@]}"; do
    if [[ ! -f "DocC/$module.docc/$module.md" ]]; then
        echo "error: DocC/$module.docc/$module.md is missing: every documented module needs a catalog" >&2
        echo "       with a landing page titled \`\`$module\`\`" >&2
        exit 1
    fi
done

# Runs a documentation command, showing its output, and fails if it failed or said `warning:`
# (a backstop: `--warnings-as-errors` already turns docc's warnings into errors).
run_docc() {
    local log status=0
    log="$(mktemp)"
    "$DOCC" "$@" >"$log" 2>&1 || status=$?
    if grep -q '[^[:space:]]' "$log"; then
        cat "$log"
    fi
    if [[ $status -ne 0 ]]; then
        rm -f "$log"
        echo "error: docc $1 failed (exit $status)" >&2
        return 1
    fi
    if grep -q 'warning:' "$log"; then
        rm -f "$log"
        echo "error: docc $1 reported warnings" >&2
        return 1
    fi
    rm -f "$log"
}

# --- 1. Build ------------------------------------------------------------------------------------

echo "==> swift build ${MODULES[*]} (scratch path: $SCRATCH_PATH)"
for module in "${MODULES[@]}"; do
    "$SWIFT" build --scratch-path "$SCRATCH_PATH" --target "$module"
done

# --- 2. Extract symbol graphs --------------------------------------------------------------------

BIN_PATH="$("$SWIFT" build --scratch-path "$SCRATCH_PATH" --show-bin-path)"
MODULES_PATH="$BIN_PATH/Modules" # SwiftPM 6 keeps .swiftmodule files here; earlier ones in BIN_PATH
if [[ ! -d "$MODULES_PATH" ]]; then
    MODULES_PATH="$BIN_PATH"
fi
TARGET_TRIPLE="$("$SWIFTC" -print-target-info | sed -n 's/^ *"triple": *"\([^"]*\)".*/\1/p' | head -n 1)"
if [[ -z "$TARGET_TRIPLE" ]]; then
    echo "error: could not read the target triple from '$SWIFTC -print-target-info'" >&2
    exit 1
fi
SDK_FLAGS=()
if [[ "$(uname -s)" == Darwin ]] && command -v xcrun >/dev/null 2>&1; then
    SDK_FLAGS=(-sdk "$(xcrun --show-sdk-path)")
fi

echo "==> swift-symbolgraph-extract ${MODULES[*]}"
for module in "${MODULES[@]}"; do
    rm -rf "${GRAPHS_DIR:?}/$module"
    mkdir -p "$GRAPHS_DIR/$module"
    "$SYMBOLGRAPH_EXTRACT" \
        -module-name "$module" \
        -target "$TARGET_TRIPLE" \
        "${SDK_FLAGS[@]+"${SDK_FLAGS[@]}"}" \
        -I "$MODULES_PATH" \
        -module-cache-path "$BIN_PATH/ModuleCache" \
        -minimum-access-level public \
        -emit-extension-block-symbols \
        -output-dir "$GRAPHS_DIR/$module"
    if [[ ! -f "$GRAPHS_DIR/$module/$module.symbols.json" ]]; then
        echo "error: no symbol graph was extracted for $module" >&2
        exit 1
    fi
done

# --- 3. Convert each module ----------------------------------------------------------------------

mkdir -p "$MODULE_ARCHIVES"
archives=()
for module in "${MODULES[@]}"; do
    echo "==> docc convert $module"
    archive="$MODULE_ARCHIVES/$module.doccarchive"
    rm -rf "$archive"
    dependencies=()
    for built in "${archives[@]+"${archives[@]}"}"; do
        dependencies+=(--dependency "$built")
    done
    run_docc convert "DocC/$module.docc" \
        --additional-symbol-graph-dir "$GRAPHS_DIR/$module" \
        --fallback-display-name "$module" \
        --fallback-bundle-identifier "$BUNDLE_ID_PREFIX.$module" \
        --output-path "$archive" \
        --enable-experimental-external-link-support \
        "${dependencies[@]+"${dependencies[@]}"}" \
        --warnings-as-errors
    archives+=("$archive")
done

# --- 4. Merge ------------------------------------------------------------------------------------

echo "==> docc merge ${MODULES[*]}"
rm -rf "$MERGED_ARCHIVE"
run_docc merge "${archives[@]}" \
    --synthesized-landing-page-name "$DISPLAY_NAME" \
    --synthesized-landing-page-kind Package \
    --output-path "$MERGED_ARCHIVE"

echo
echo "Documentation built without warnings."
for archive in "${archives[@]}"; do
    echo "  module: $archive"
done
echo "  merged: $MERGED_ARCHIVE"
echo "Browse it with, for example:"
echo "  python3 -m http.server --directory '$MERGED_ARCHIVE' 8000"
echo "  then open http://localhost:8000/documentation/$(echo "${MODULES[0]}" | tr '[:upper:]' '[:lower:]')"
