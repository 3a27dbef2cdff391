#!/usr/bin/env bash
# Runs shellcheck on every shell script in the repository (ctest ShellScriptsPassShellcheck):
# files named *.sh and files whose first line is an sh or bash shebang, outside build trees,
# .git and node_modules.
# Usage: tests/deploy/shellcheck_all.sh [REPOSITORY_ROOT]
set -euo pipefail
cd "${1:-$(dirname "$0")/../..}"

scripts=()
while IFS= read -r -d '' file; do
    shebang=$(head -n 1 "$file" | tr -d '\0')
    if [[ $file == *.sh || $shebang =~ ^#!\ ?(/usr)?/bin/(env\ +)?(ba|da)?sh(\ |$) ]]; then
        scripts+=("$file")
    fi
done < <(find . \( -path './build*' -o -path ./.cache -o -name .git -o -name node_modules \) \
    -prune -o -type f -print0 | sort -z)

if [[ ${#scripts[@]} -eq 0 ]]; then
    echo "no shell scripts found under $PWD" >&2
    exit 1
fi
echo "shellcheck ${scripts[*]}"
shellcheck -x "${scripts[@]}"
