/* What the binaries were built from: the version (version.h) and the git commit (stamped at
 * build time by tools/workspace_status.sh; "unknown" without git, "-dirty" with local changes). */
#pragma once

#include "common/version.h" /* EMSERVE_VERSION */

const char *em_build_git(void);
