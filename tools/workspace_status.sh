#!/bin/sh
# Bazel's workspace status command (.bazelrc): the git commit the binaries are built from, for
# emserve_build_info on /metrics and GetServerInfo.build (common:build_info). "unknown" outside
# a git checkout; "-dirty" when tracked files differ from the commit.
commit=$(git rev-parse --short=12 HEAD 2>/dev/null) || commit=unknown
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then
    commit="$commit-dirty"
fi
echo "STABLE_EMSERVE_GIT $commit"
