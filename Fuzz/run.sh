#!/usr/bin/env bash
# Fuzzes the file stores' record decoders (event log and state store) with libFuzzer and AddressSanitizer.
#
#   bash Fuzz/run.sh [seconds]      # default 30
#
# Builds KeelRecordFuzzer with `--sanitize=fuzzer --sanitize=address -DKEEL_FUZZING`, warnings as
# errors, into .build-fuzz and runs it for the given time over Fuzz/.corpus (kept between runs,
# ignored by git), starting from the valid frames in Fuzz/Seeds (regenerate them with
# `swift run KeelRecordFuzzer --write-seeds Fuzz/Seeds` when the record format changes). A crash
# leaves its input as Fuzz/.artifacts/crash-* and makes the script fail; replay it with
# `swift run KeelRecordFuzzer Fuzz/.artifacts/crash-…`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_TO_RUN=${1:-30}
CORPUS=Fuzz/.corpus
ARTIFACTS=Fuzz/.artifacts
SEEDS=Fuzz/Seeds
mkdir -p "$CORPUS" "$ARTIFACTS"

swift build --product KeelRecordFuzzer --build-path .build-fuzz \
    --sanitize=fuzzer --sanitize=address -Xswiftc -DKEEL_FUZZING -Xswiftc -warnings-as-errors
FUZZER="$(swift build --build-path .build-fuzz --show-bin-path)/KeelRecordFuzzer"

"$FUZZER" -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$ARTIFACTS/" "$CORPUS" "$SEEDS"
