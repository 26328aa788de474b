#!/usr/bin/env bash
# Bootstrapper: restores the repository's dotnet tools (Cake, PowerShell) and runs build.cake.
#   ./build.sh --target=Test      unit + Pester + MSBuild tests
#   ./build.sh --target=Demo      the end-to-end demo on real models
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet tool restore >/dev/null
exec dotnet cake build.cake "$@"
