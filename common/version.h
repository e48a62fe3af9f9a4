/* The version of emserve (all its binaries and GetServerInfo.version). */
#pragma once

#define EMSERVE_VERSION "0.1.0"
