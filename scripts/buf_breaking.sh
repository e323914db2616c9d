#!/usr/bin/env bash
# The wire contract holds: the protos are checked with `buf breaking` against the commit before
# this one and against the latest release tag (v*), so that a removed rpc, a renamed message or a
# changed field fails lint. A clone without either (a shallow one) fails too: nothing was checked.
set -euo pipefail
buf="${1:-node_modules/.bin/buf}"
checked=0
if git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then
    echo "buf breaking against the previous commit ($(git rev-parse --short HEAD~1))"
    "$buf" breaking --against '.git#ref=HEAD~1'
    checked=1
fi
if tag="$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null)"; then
    echo "buf breaking against the latest release, $tag"
    "$buf" breaking --against ".git#tag=$tag"
    checked=1
fi
if [ "$checked" = 0 ]; then
    echo "buf breaking: no previous commit and no release tag to compare the protos with (a shallow clone?)" >&2
    exit 1
fi
